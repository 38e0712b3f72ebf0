"""Builds tiny random so-vits-svc characters and a tiny content encoder with so-vits-svc-fork's own
model classes. Run with the sovits env's Python:

    python build_sovits_character.py OUT_DIR [--real-size]

With ``--real-size`` the models have the real configs' layer sizes (for benchmarks), else tiny.

OUT_DIR/assets/contentvec/        a random ContentVec (HuBERT with final_proj), save_pretrained
OUT_DIR/assets/nsf_hifigan/       a random NSF-HiFiGAN enhancer: model + config.json, openvpi's layout and names
OUT_DIR/characters/tiny-41/       G_0.pth + config.json (4.1: 768-style last hidden state), speakers alice, bob
OUT_DIR/characters/tiny-40/       G_0.pth + config.json (4.0: layer 9 + final_proj), one speaker
OUT_DIR/unsafe.pth                a checkpoint whose unpickling would create OUT_DIR/pwned
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import so_vits_svc_fork
import torch
from so_vits_svc_fork.modules.decoders.hifigan._models import NSFHifiGANGenerator
from so_vits_svc_fork.modules.synthesizers import SynthesizerTrn
from so_vits_svc_fork.utils import HubertModelWithFinalProj
from transformers import HubertConfig
from unsafe_pickle import RunsOnLoad  # a sibling module: these scripts run from their folder

HIDDEN = 32  # the content encoder's width: what 4.1 models take (ssl_dim)
PROJECTED = 16  # its final projection: what 4.0 models take
TEMPLATES = Path(so_vits_svc_fork.__file__).parent / "preprocessing" / "config_templates"
TINY_MODEL = {"inter_channels": 16, "hidden_channels": 16, "filter_channels": 32, "n_heads": 2, "n_layers": 1,
              "upsample_initial_channel": 32, "gin_channels": 16}


def content_encoder(folder: Path, real_size: bool = False) -> None:
    if real_size:  # HuBERT base / ContentVec: 12 layers, 768 wide, 256-wide final projection
        config = HubertConfig(classifier_proj_size=256)
    else:
        config = HubertConfig(hidden_size=HIDDEN, num_hidden_layers=9, num_attention_heads=2, intermediate_size=64,
                              conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                              classifier_proj_size=PROJECTED)
    torch.manual_seed(0)
    HubertModelWithFinalProj(config).eval().save_pretrained(str(folder))


def character(folder: Path, template: str, ssl_dim: int, speakers: dict, real_size: bool = False) -> None:
    config = json.loads((TEMPLATES / template).read_text())
    if real_size:
        config["model"].update(n_speakers=max(len(speakers), 1))
    else:
        config["model"].update(TINY_MODEL, ssl_dim=ssl_dim, n_speakers=max(len(speakers), 1))
    config["model"].pop("pretrained", None)
    config["spk"] = speakers
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    data, train = config["data"], config["train"]
    torch.manual_seed(1)
    net = SynthesizerTrn(data["filter_length"] // 2 + 1, train["segment_size"] // data["hop_length"], **config["model"])
    torch.save({"model": net.state_dict(), "iteration": 0, "learning_rate": 1e-4, "optimizer": None}, folder / "G_0.pth")


def cluster_model(folder: Path, ssl_dim: int, speakers: dict) -> None:
    """A kmeans file as so-vits-svc's cluster training writes it: per speaker, sklearn KMeans fields with
    numpy centers (float32, like the content features)."""
    rng = np.random.default_rng(3)
    torch.save({name: {"n_features_in_": ssl_dim, "_n_threads": 1,
                       "cluster_centers_": rng.standard_normal((16, ssl_dim)).astype(np.float32)} for name in speakers},
               folder / "kmeans_10000.pt")


def enhancer(folder: Path, real_size: bool = False) -> None:
    """openvpi's nsf_hifigan_20221211 layout: ``model`` holds {"generator": state_dict} (no speaker input)
    beside its config.json; tiny keeps the mel and hop sizes and shrinks the channels."""
    config = {"resblock": "1", "upsample_rates": [8, 8, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4, 4],
              "upsample_initial_channel": 512 if real_size else 32, "resblock_kernel_sizes": [3, 7, 11],
              "resblock_dilation_sizes": [[1, 3, 5]] * 3, "num_mels": 128, "num_freq": 1025, "n_fft": 2048, "hop_size": 512,
              "win_size": 2048, "sampling_rate": 44100, "fmin": 40, "fmax": 16000, "fmax_for_loss": None}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    torch.manual_seed(4)
    layers = {key: config[key] for key in ("resblock", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
                                           "resblock_kernel_sizes", "resblock_dilation_sizes", "sampling_rate")}
    generator = NSFHifiGANGenerator({**layers, "inter_channels": config["num_mels"], "gin_channels": 1})
    weights = {name: value for name, value in generator.state_dict().items() if not name.startswith("cond.")}
    torch.save({"generator": weights}, folder / "model")


def main() -> None:
    out = Path(sys.argv[1])
    if "--real-size" in sys.argv:
        content_encoder(out / "assets" / "contentvec", real_size=True)
        enhancer(out / "assets" / "nsf_hifigan", real_size=True)
        for name in ("real-a", "real-b"):
            character(out / "characters" / name, "so-vits-svc-4.0v1.json", 768, {"speaker": 0}, real_size=True)
        print("built", out)
        return
    content_encoder(out / "assets" / "contentvec")
    enhancer(out / "assets" / "nsf_hifigan")
    character(out / "characters" / "tiny-41", "so-vits-svc-4.0v1.json", HIDDEN, {"alice": 0, "bob": 1})
    cluster_model(out / "characters" / "tiny-41", HIDDEN, {"alice": 0, "bob": 1})
    character(out / "characters" / "tiny-40", "so-vits-svc-4.0v1-legacy.json", PROJECTED, {"carol": 0})
    torch.save({"model": {}, "iteration": RunsOnLoad(str(out / "pwned")), "learning_rate": 1e-4, "optimizer": None}, out / "unsafe.pth")
    print("built", out)


if __name__ == "__main__":
    main()
