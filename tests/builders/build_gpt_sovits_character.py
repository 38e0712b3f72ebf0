"""Builds tiny random GPT-SoVITS (v1) characters and tiny shared BERT/HuBERT assets with gpt-sovits-infer's own
model classes (and transformers for the two Hugging Face models). Run with the gpt_sovits env's Python:

    python build_gpt_sovits_character.py OUT_DIR [--real-size]

With ``--real-size`` the models have the real v1 layer sizes (for benchmarks), else tiny. The random GPT never
predicts its end token (that row of its output layer is zero), so each piece lasts its ``max_sec`` cap: a piece's
length is known (tiny: 50 tokens, 2 s of audio; real size: 75 tokens, 3 s, about a spoken sentence), and a longer text
makes more pieces.

OUT_DIR/assets/chinese-roberta-wwm-ext-large/   a random BERT (1024 wide: what the GPT's bert_proj takes) + tokenizer
OUT_DIR/assets/chinese-hubert-base/             a random HuBERT (768 wide: the SoVITS ssl_dim) + feature extractor
OUT_DIR/characters/tiny/                        tiny-e1.ckpt (GPT) + tiny_e1_s1.pth (SoVITS) + reference.wav/.txt (4 s)
OUT_DIR/characters/tiny-noref/                  the same weights, no reference recording
OUT_DIR/characters/tiny-v2/                     a tiny random v2 character (gsv-tts-lite's classes; 732 text symbols), saved as
                                                upstream saves them (a plain-zip .pth without config.model.version), its
                                                GPT always ending after the ~10 tokens it must speak (about 0.4 s a piece)
OUT_DIR/unsafe.pth                              a SoVITS checkpoint whose unpickling would create OUT_DIR/pwned
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path

import numpy as np
import soundfile
import torch
import torch.nn.functional

for _name in ("Tuple", "List", "Union", "Optional", "Callable"):  # torch 2.13 no longer re-exports them (the adapter shims it too)
    if not hasattr(torch.nn.functional, _name):
        setattr(torch.nn.functional, _name, getattr(typing, _name))

from gpt_sovits.AR.models.t2s_lightning_module import Text2SemanticLightningModule  # noqa: E402
from gpt_sovits.module.models import SynthesizerTrn  # noqa: E402
from gsv_tts.GPT_SoVITS.GPT.t2s_model import Text2SemanticDecoder  # noqa: E402
from gsv_tts.GPT_SoVITS.SoVITS.models import SynthesizerTrn as SynthesizerTrnV2  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast, HubertConfig, HubertModel, Wav2Vec2FeatureExtractor  # noqa: E402
from unsafe_pickle import RunsOnLoad  # noqa: E402  (a sibling module: these scripts run from their folder)

RATE = 32000
V2_SYMBOLS = 732
SOVITS_DATA = {"filter_length": 2048, "hop_length": 640, "win_length": 2048, "sampling_rate": RATE, "n_speakers": 300,
               "max_wav_value": 32768.0, "n_mel_channels": 128, "mel_fmin": 0.0, "mel_fmax": None}
SOVITS_REAL = {"inter_channels": 192, "hidden_channels": 192, "filter_channels": 768, "n_heads": 2, "n_layers": 6,
               "kernel_size": 3, "p_dropout": 0.1, "resblock": "1", "resblock_kernel_sizes": [3, 7, 11],
               "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "upsample_rates": [10, 8, 2, 2, 2],
               "upsample_initial_channel": 512, "upsample_kernel_sizes": [16, 16, 8, 2, 2], "n_layers_q": 3,
               "use_spectral_norm": False, "gin_channels": 512, "semantic_frame_rate": "25hz", "freeze_quantizer": True}
SOVITS_TINY = dict(SOVITS_REAL, filter_channels=64, n_layers=2, resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]],
                   upsample_initial_channel=64)
"""hidden/inter 192, gin 512 and the 768-wide content are fixed by the package's TextEncoder and MRTE."""
GPT_REAL = {"hidden_dim": 512, "embedding_dim": 512, "head": 16, "n_layer": 24, "vocab_size": 1025, "phoneme_vocab_size": 512,
            "dropout": 0.0, "EOS": 1024}
GPT_TINY = dict(GPT_REAL, hidden_dim=32, embedding_dim=32, head=2, n_layer=1)
BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"你好世界我们是的一个中文测试语音合成今天天气很"]


def bert(folder: Path, real_size: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), tokenize_chinese_chars=True).save_pretrained(str(folder))
    size = {"num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096} if real_size else {
        "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    config = BertConfig(vocab_size=len(BERT_VOCAB), hidden_size=1024, **size)
    torch.manual_seed(0)
    BertForMaskedLM(config).eval().save_pretrained(str(folder))


def hubert(folder: Path, real_size: bool) -> None:
    config = HubertConfig() if real_size else HubertConfig(hidden_size=768, num_hidden_layers=1, num_attention_heads=4,
                                                           intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16,
                                                           num_conv_pos_embedding_groups=4)
    torch.manual_seed(0)
    HubertModel(config).eval().save_pretrained(str(folder))
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(str(folder))


def sovits_checkpoint(real_size: bool) -> dict:
    model = dict(SOVITS_REAL if real_size else SOVITS_TINY)
    config = {"data": SOVITS_DATA, "train": {"segment_size": 20480}, "model": model}
    torch.manual_seed(1)
    net = SynthesizerTrn(SOVITS_DATA["filter_length"] // 2 + 1, 20480 // SOVITS_DATA["hop_length"], n_speakers=300, **model)
    weights = {name: value for name, value in net.state_dict().items() if not name.startswith("enc_q.")}  # inference drops enc_q
    for name in [n for n in weights if n.endswith("_codebook.inited")]:  # as trained: else its first use runs k-means (minutes)
        weights[name] = torch.ones_like(weights[name])
    return {"weight": weights, "config": config, "info": "random %s GPT-SoVITS v1 SoVITS" % ("real-size" if real_size else "tiny")}


def gpt_checkpoint(real_size: bool) -> dict:
    config = {"model": dict(GPT_REAL if real_size else GPT_TINY), "data": {"max_sec": 1.5 if real_size else 1}}
    torch.manual_seed(2)
    module = Text2SemanticLightningModule(config, "****", is_train=False)
    weights = module.state_dict()
    weights["model.ar_predict_layer.weight"][config["model"]["EOS"]] = 0.0  # never the likeliest: each piece runs to its cap
    return {"weight": weights, "config": config}


UPSTREAM_BLOCK = {"qkv.weight": "self_attn.in_proj_weight", "qkv.bias": "self_attn.in_proj_bias",
                  "out_proj.weight": "self_attn.out_proj.weight", "out_proj.bias": "self_attn.out_proj.bias",
                  "mlp.0.weight": "linear1.weight", "mlp.0.bias": "linear1.bias", "mlp.2.weight": "linear2.weight",
                  "mlp.2.bias": "linear2.bias", "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
                  "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias"}
"""gsv-tts-lite's GPT block names -> upstream GPT-SoVITS's (what a trained .ckpt holds; its loader maps them back)."""


def sovits_v2_checkpoint() -> dict:
    model = dict(SOVITS_TINY, version="v2")
    torch.manual_seed(3)
    net = SynthesizerTrnV2(SOVITS_DATA["filter_length"] // 2 + 1, 20480 // SOVITS_DATA["hop_length"], n_speakers=300, **model)
    weights = {name: value for name, value in net.state_dict().items() if not name.startswith("enc_q.")}
    assert weights["enc_p.text_embedding.weight"].shape[0] == V2_SYMBOLS
    for name in [n for n in weights if n.endswith("_codebook.inited")]:
        weights[name] = torch.ones_like(weights[name])
    del model["version"]  # as old upstream v2 checkpoints: the loader reads the version from the text embedding
    return {"weight": weights, "config": {"data": SOVITS_DATA, "train": {"segment_size": 20480}, "model": model},
            "info": "random tiny GPT-SoVITS v2 SoVITS"}


def gpt_v2_checkpoint() -> dict:
    config = {"model": dict(GPT_TINY, phoneme_vocab_size=V2_SYMBOLS), "data": {"max_sec": 54}}
    torch.manual_seed(4)
    weights = Text2SemanticDecoder(config).state_dict()
    last = "t2s_transformer.blocks.%d." % (config["model"]["n_layer"] - 1)
    # the last (post-norm) block's output is its norm's bias alone, so the logits are constant with the end token far ahead:
    # each piece ends at the first check after the package's 10 steps that suppress it
    weights[last + "norm2.weight"] = torch.zeros_like(weights[last + "norm2.weight"])
    weights[last + "norm2.bias"] = torch.ones_like(weights[last + "norm2.bias"])
    weights["ar_predict_layer.weight"][config["model"]["EOS"]] = 1.0
    upstream = {}
    for name, value in weights.items():
        parts = name.split(".")
        if name.startswith("t2s_transformer.blocks."):
            name = "h.layers.%s.%s" % (parts[2], UPSTREAM_BLOCK[".".join(parts[3:])])
        upstream["model." + name] = value
    return {"weight": upstream, "config": config}


def precomputed_references() -> dict:
    """As the established app's precomputer saves them: ``Emotion.i.phones1`` (text symbol ids), ``.prompt`` (the
    reference's semantic tokens, 1 x T), ``.ge`` (the SoVITS reference encoder's style, 1 x 512 x 1); random here."""
    torch.manual_seed(5)
    tensors = {}
    for emotion, count in (("Neutral", 1), ("Happy", 2)):
        for index in range(count):
            prefix = "%s.%d." % (emotion, index)
            tensors[prefix + "phones1"] = torch.randint(1, V2_SYMBOLS, (24,))
            tensors[prefix + "prompt"] = torch.randint(0, 1024, (1, 100))
            tensors[prefix + "ge"] = torch.randn(1, 512, 1)
    return tensors


def reference(seconds: float = 4.0, rate: int = 24000) -> np.ndarray:
    """Vowel-like phrases with a moving pitch: a voice for the content encoder to hear."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(150 + 30 * np.sin(2 * np.pi * 1.3 * t)) / rate
    audio = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.25 * (0.55 + 0.45 * np.sin(2 * np.pi * 2.5 * t) ** 2)
    return np.asarray(audio, dtype=np.float32)


def main(out: Path, real_size: bool) -> None:
    assets = out / "assets"
    bert(assets / "chinese-roberta-wwm-ext-large", real_size)
    hubert(assets / "chinese-hubert-base", real_size)
    tiny = out / "characters" / "tiny"
    tiny.mkdir(parents=True)
    torch.save(gpt_checkpoint(real_size), str(tiny / "tiny-e1.ckpt"))
    torch.save(sovits_checkpoint(real_size), str(tiny / "tiny_e1_s1.pth"))
    soundfile.write(str(tiny / "reference.wav"), reference(), 24000)
    (tiny / "reference.txt").write_text("The quick brown fox jumps over the lazy dog.\n", encoding="utf-8")
    noref = out / "characters" / "tiny-noref"
    noref.mkdir()
    for name in ("tiny-e1.ckpt", "tiny_e1_s1.pth"):  # links, as a shared model's files appear in many folders
        (noref / name).symlink_to(Path("..") / "tiny" / name)
    v2 = out / "characters" / "tiny-v2"
    v2.mkdir()
    torch.save(gpt_v2_checkpoint(), str(v2 / "tiny-v2-e1.ckpt"))
    torch.save(sovits_v2_checkpoint(), str(v2 / "tiny-v2_e1_s1.pth"))
    for name in ("reference.wav", "reference.txt"):
        (v2 / name).symlink_to(Path("..") / "tiny" / name)
    precomputed = out / "characters" / "tiny-v2-precomp"  # no recording: the established app's precomputed references only
    precomputed.mkdir()
    for name in ("tiny-v2-e1.ckpt", "tiny-v2_e1_s1.pth"):
        (precomputed / name).symlink_to(Path("..") / "tiny-v2" / name)
    save_file(precomputed_references(), str(precomputed / "tiny-v2_precomp.safetensors"))
    torch.save({"weight": {}, "config": {}, "info": RunsOnLoad(str(out / "pwned"))}, str(out / "unsafe.pth"))
    (out / "facts.json").write_text(json.dumps({"sample_rate": RATE, "real_size": real_size}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--real-size" in sys.argv[2:])
