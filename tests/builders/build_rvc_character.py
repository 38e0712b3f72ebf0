"""Builds tiny random RVC characters and a tiny 768-wide HuBERT with infer-rvc-python's own model
classes. Run with the rvc env's Python:

    python build_rvc_character.py OUT_DIR [--real-size]

With ``--real-size`` the models have the real configs' layer sizes (for benchmarks), else tiny.

OUT_DIR/assets/hubert/            a random HuBERT (768 wide, with a 256-wide final projection), save_pretrained
OUT_DIR/characters/tiny-v2/       model.pth (v2, 40 kHz, with pitch) + added.index (a faiss feature index)
OUT_DIR/characters/tiny-v1/       model.pth (v1, 32 kHz, with pitch)
OUT_DIR/unsafe.pth                a checkpoint whose unpickling would create OUT_DIR/pwned
"""

from __future__ import annotations

import sys
from pathlib import Path

import faiss
import numpy as np
import torch
from infer_rvc_python.lib.infer_pack.models import SynthesizerTrnMs256NSFsid, SynthesizerTrnMs768NSFsid
from infer_rvc_python.main import HubertModelWithFinalProj
from transformers import HubertConfig
from unsafe_pickle import RunsOnLoad  # a sibling module: these scripts run from their folder


def hubert(folder: Path, real_size: bool = False) -> None:
    if real_size:  # hubert_base: 12 layers, 768 wide, 256-wide final projection
        config = HubertConfig(classifier_proj_size=256)
    else:
        config = HubertConfig(hidden_size=768, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                              conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                              classifier_proj_size=256)
    torch.manual_seed(0)
    HubertModelWithFinalProj(config).eval().save_pretrained(str(folder))


def character(folder: Path, version: str, rate: int, upsample: list, index: bool, real_size: bool = False) -> None:
    kernels = [2 * r for r in upsample]
    spec_channels = 1025 if rate != 32000 else 513
    if real_size:  # the v2 40k config's layer sizes
        config = [spec_channels, 12800 // 400, 192, 192, 768, 2, 6, 3, 0, "1", [3, 7, 11], [[1, 3, 5]] * 3, upsample, 512,
                  [16, 16, 4, 4], 109, 256, rate]
    else:
        config = [spec_channels, 32, 16, 16, 32, 2, 1, 3, 0, "1", [3, 7, 11], [[1, 3, 5]] * 3, upsample, 32, kernels, 2, 16, rate]
    model_class = SynthesizerTrnMs768NSFsid if version == "v2" else SynthesizerTrnMs256NSFsid
    torch.manual_seed(1)
    net = model_class(*config, is_half=False)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": net.state_dict(), "config": config, "f0": 1, "version": version, "info": "tiny random",
                "sr": "%dk" % (rate // 1000)}, folder / "model.pth")
    if index:
        features = np.random.default_rng(2).standard_normal((64, 768 if version == "v2" else 256)).astype(np.float32)
        flat = faiss.IndexFlatL2(features.shape[1])
        flat.add(features)
        faiss.write_index(flat, str(folder / "added.index"))


def main() -> None:
    out = Path(sys.argv[1])
    if "--real-size" in sys.argv:
        hubert(out / "assets" / "hubert", real_size=True)
        for name in ("real-a", "real-b"):
            character(out / "characters" / name, "v2", 40000, [10, 10, 2, 2], index=False, real_size=True)
        print("built", out)
        return
    hubert(out / "assets" / "hubert")
    character(out / "characters" / "tiny-v2", "v2", 40000, [10, 10, 2, 2], index=True)
    character(out / "characters" / "tiny-v1", "v1", 32000, [10, 8, 2, 2], index=False)
    torch.save({"weight": {}, "config": RunsOnLoad(str(out / "pwned")), "f0": 1, "version": "v2"}, out / "unsafe.pth")
    print("built", out)


if __name__ == "__main__":
    main()
