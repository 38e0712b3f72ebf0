"""Builds tiny random F5-TTS shared assets with the f5-tts, vocos and transformers packages' own classes. Run with the
f5_tts env's Python:

    python build_f5_tts_character.py OUT_DIR [--real-size]

F5-TTS has no characters of its own (its voices are saved reference recordings, written by the tests); what it needs
are its shared assets, laid out as upstream publishes them on Hugging Face:

OUT_DIR/assets/f5_tts_v1_base/   model_1250000.safetensors (the CFM's weights under 'ema_model.', with the EMA's
                                 'initted' and 'step', as SWivid/F5-TTS's F5TTS_v1_Base/ file has them), vocab.txt (the
                                 wheel's), config.yaml (upstream's F5TTS_v1_Base.yaml with a tiny DiT: dim 64, depth 2)
OUT_DIR/assets/vocos_mel_24khz/  config.yaml + pytorch_model.bin (a tiny Vocos: backbone dim 32, one layer), as
                                 charactr/vocos-mel-24khz has them
OUT_DIR/assets/asr_whisper/      a tiny random Whisper (WhisperForConditionalGeneration + processor, save_pretrained)
                                 with a byte-level vocabulary of its own (Whisper's is not on PyPI); it is biased to say
                                 " la" until its length runs out, so what it transcribes is known and not empty
OUT_DIR/unsafe.pt                a checkpoint whose unpickling would create OUT_DIR/pwned

With ``--real-size`` (benchmarks) the DiT has upstream's v1 Base size (dim 1024, depth 22: 336 M parameters, 1.35 GB) and no
config.yaml (the adapter then reads the wheel's F5TTS_v1_Base.yaml, as with the published file), and the Vocos has
charactr/vocos-mel-24khz's (dim 512, 8 layers).
"""

from __future__ import annotations

import json
import shutil
import sys
from importlib.resources import files
from pathlib import Path

import torch
import yaml
from f5_tts.model import CFM, DiT
from f5_tts.model.utils import get_tokenizer
from omegaconf import OmegaConf
from safetensors.torch import save_file
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode
from unsafe_pickle import RunsOnLoad  # a sibling module: these scripts run from their folder
from vocos import Vocos

TINY_DIT = {"dim": 64, "depth": 2, "heads": 2, "dim_head": 32, "ff_mult": 2, "text_dim": 32, "conv_layers": 1}
TINY_VOCOS = {"dim": 32, "intermediate_dim": 64, "num_layers": 1}
REAL_VOCOS = {"dim": 512, "intermediate_dim": 1536, "num_layers": 8}
MEL = {"n_fft": 1024, "hop_length": 256, "win_length": 1024, "n_mel_channels": 100, "target_sample_rate": 24000, "mel_spec_type": "vocos"}
WHISPER_SPECIALS = ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
                    "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>")
SAID = "Ġla"
"""The one word the tiny recognizer says (byte-level: Ġ is the space before it)."""
SAID_TOKENS = 6


def f5_model(folder: Path, real_size: bool) -> None:
    config = OmegaConf.to_container(OmegaConf.load(str(files("f5_tts").joinpath("configs/F5TTS_v1_Base.yaml"))))
    assert isinstance(config, dict)
    if not real_size:
        config["model"]["arch"].update(TINY_DIT)
        config["model"]["name"] = "F5TTS_v1_tiny"
    vocab = str(files("f5_tts").joinpath("infer/examples/vocab.txt"))
    vocab_map, vocab_size = get_tokenizer(vocab, "custom")
    torch.manual_seed(0)
    model = CFM(transformer=DiT(**config["model"]["arch"], text_num_embeds=vocab_size, mel_dim=MEL["n_mel_channels"]),
                mel_spec_kwargs=MEL, vocab_char_map=vocab_map)
    weights = {"ema_model." + name: value.contiguous() for name, value in model.state_dict().items()}
    weights.update({"initted": torch.tensor([True]), "step": torch.tensor([1250000])})
    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(folder / "model_1250000.safetensors"))
    shutil.copy(vocab, folder / "vocab.txt")
    if not real_size:
        (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def vocos(folder: Path, real_size: bool) -> None:
    size = REAL_VOCOS if real_size else TINY_VOCOS
    config = {
        "feature_extractor": {"class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
                              "init_args": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100, "padding": "center"}},
        "backbone": {"class_path": "vocos.models.VocosBackbone", "init_args": dict(input_channels=100, **size)},
        "head": {"class_path": "vocos.heads.ISTFTHead",
                 "init_args": {"dim": size["dim"], "n_fft": 1024, "hop_length": 256, "padding": "center"}},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    torch.manual_seed(1)
    model = Vocos.from_hparams(str(folder / "config.yaml"))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")


def whisper(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {char: index for index, char in enumerate(bytes_to_unicode().values())}
    vocab.update({"la": len(vocab), SAID: len(vocab) + 1})
    scratch = folder / "scratch"
    scratch.mkdir()
    (scratch / "vocab.json").write_text(json.dumps(vocab))
    (scratch / "merges.txt").write_text("#version: 0.2\nl a\nĠ la\n")
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[("l", "a"), ("Ġ", "la")], pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": list(WHISPER_SPECIALS[1:])})
    shutil.rmtree(scratch)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in WHISPER_SPECIALS}
    said = tokenizer.convert_tokens_to_ids(SAID)
    assert tokenizer.decode([said, said]) == " la la", tokenizer.decode([said, said])
    config = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                           max_source_positions=1500, max_target_positions=32, pad_token_id=ids["<|endoftext|>"],
                           bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"],
                           decoder_start_token_id=ids["<|startoftranscript|>"], begin_suppress_tokens=None, suppress_tokens=None)
    torch.manual_seed(2)
    model = WhisperForConditionalGeneration(config)
    with torch.no_grad():  # the decoder's last norm outputs the word's embedding whatever it reads: greedy search says it
        decoder = model.model.decoder
        decoder.layer_norm.weight.zero_()
        decoder.layer_norm.bias.copy_(decoder.embed_tokens.weight[said] * 10)
    generation = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"], max_length=SAID_TOKENS + 4, is_multilingual=True, lang_to_id={"<|en|>": ids["<|en|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"], suppress_tokens=[],
        begin_suppress_tokens=[], forced_decoder_ids=None, return_timestamps=False)
    model.generation_config = generation
    model.save_pretrained(str(folder))
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(str(folder))


def main(out: Path, real_size: bool) -> None:
    f5_model(out / "assets" / "f5_tts_v1_base", real_size)
    vocos(out / "assets" / "vocos_mel_24khz", real_size)
    whisper(out / "assets" / "asr_whisper")
    torch.save({"ema_model_state_dict": {"step": RunsOnLoad(str(out / "pwned"))}}, out / "unsafe.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--real-size" in sys.argv[2:])
