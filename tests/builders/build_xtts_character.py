"""Builds a tiny random XTTS v2 model with coqui-tts's own classes (``Xtts``, ``XttsConfig``) and a tokenizer file of
the kind upstream's vocab.json is (a ``tokenizers`` BPE with XTTS's special and language tokens). Run with the xtts env's
Python:

    python build_xtts_character.py OUT_DIR

The GPT has one layer of 256 channels (the real one: 30 of 1024) with XTTS v2's audio-token layout (1026 tokens, its
perceiver resampler); the HiFi-GAN decoder and the speaker encoder keep their fixed sizes (23 M parameters of the 28 M).
Its config lists XTTS v2's languages but Hindi ("hi"), so a language the manifest offers and a model lacks can be
tried. The random GPT's stop token is biased so that a sentence ends after tens of audio tokens (about a second), not at
upstream's cap of 605 (26 s). Saved as upstream's loader reads it after converting the original checkpoint:
``{"model": state_dict, "config": dict}``.

OUT_DIR/assets/xtts_v2/        config.json, model.pth, vocab.json, speakers_xtts.pth (one random studio voice):
                               upstream's coqui/XTTS-v2 layout
OUT_DIR/unsafe.pth             a checkpoint whose unpickling would create OUT_DIR/pwned
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, models
from TTS.tts.configs.xtts_config import XttsConfig
from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
from TTS.tts.models.xtts import Xtts
from unsafe_pickle import RunsOnLoad  # a sibling module: these scripts run from their folder

CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789'.,!?-:;\"()"
UNSPOKEN = "hi"
STOP_TOKEN_BIAS = 1.5
"""Added to the random mel head's stop logit: about 30 audio tokens (1.4 s) a sentence on average."""


def tokenizer(path: Path, languages: list) -> None:
    special = ["[STOP]", "[UNK]", "[SPACE]", "[START]"] + ["[%s]" % language for language in languages]
    vocab = {token: index for index, token in enumerate(special + list(CHARACTERS))}
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    bpe.add_special_tokens(special)
    bpe.save(str(path))


def main(out: Path) -> None:
    folder = out / "assets" / "xtts_v2"
    folder.mkdir(parents=True)
    config = XttsConfig()
    tokenizer(folder / "vocab.json", list(config.languages))
    config.languages = [language for language in config.languages if language != UNSPOKEN]
    args = config.model_args
    args.gpt_layers, args.gpt_n_model_channels, args.gpt_n_heads, args.decoder_input_dim = 1, 256, 4, 256
    args.gpt_num_audio_tokens, args.gpt_start_audio_token, args.gpt_stop_audio_token = 1026, 1024, 1025
    args.gpt_use_perceiver_resampler = True
    config.temperature, config.repetition_penalty, config.gpt_cond_len, config.gpt_cond_chunk_len, config.max_ref_len = 0.75, 5.0, 30, 4, 30
    torch.manual_seed(0)
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(str(folder / "vocab.json"))
    model.init_models()  # the GPT's text tokens from the tokenizer, as upstream's load_checkpoint does
    with torch.no_grad():
        model.gpt.mel_head.bias[args.gpt_stop_audio_token] += STOP_TOKEN_BIAS
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, folder / "model.pth")
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    latent = torch.randn(1, 32, args.gpt_n_model_channels) * 0.1
    embedding = torch.nn.functional.normalize(torch.randn(1, args.d_vector_dim, 1), dim=1)
    torch.save({"Tiny Studio": {"gpt_cond_latent": latent, "speaker_embedding": embedding}}, folder / "speakers_xtts.pth")
    torch.save({"model": {"weight": torch.zeros(1)}, "config": RunsOnLoad(str(out / "pwned"))}, out / "unsafe.pth")
    print("parameters: %.1f M" % (sum(p.numel() for p in model.parameters()) / 1e6))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
