"""Build tiny random so-vits-svc 5.0 characters and shared assets with OUR model classes (run inside the sovits5
env; there is no upstream package): ``python build_sovits5_character.py OUT_DIR``.

OUT_DIR/assets/whisper-large-v2.pt        an openai-whisper checkpoint ({dims, model_state_dict}) of a tiny Whisper
OUT_DIR/assets/whisper-medium.pt          another (v1 characters keep all its blocks)
OUT_DIR/assets/hubert-soft-0d54a1f4.pt    a hubert-soft state dict ("module." prefixed, as bshall's release) of a tiny HuBERT
OUT_DIR/characters/tiny/                  exported layout: sovits5.0.pth ({'model_g': ...}) + base.yaml + singer/{Alto,Bass}.spk.npy
OUT_DIR/characters/tiny-training/         the established app's layout: a training checkpoint sovits5.0_0001.pt (model_g with
                                          training-only weights, model_d, hp_str, step, epoch), no base.yaml, singer/Tiny.spk.npy
OUT_DIR/characters/tiny-v1/               a first-generation (v1: no hubert units, HiFi-GAN blocks) training checkpoint + singer/V1.spk.npy
OUT_DIR/characters/no-config/             a v2 sovits5.0.pth with neither base.yaml nor hp_str (upstream's v2 config applies: misfit)
OUT_DIR/characters/sovits4/               a so-vits-svc 4 folder (G_0.pth + config.json)
OUT_DIR/characters/no-singer/             sovits5.0.pth + base.yaml, no singer file
OUT_DIR/characters/pickled-singer/        a singer .npy holding a pickled object array
OUT_DIR/unsafe.pth                        a checkpoint whose unpickling would create OUT_DIR/pwned
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from unsafe_pickle import RunsOnLoad  # a sibling module: these scripts run from their folder

from runtimes.adapters.sovits5.content import HubertSoft
from runtimes.adapters.sovits5.synthesizer import SynthesizerInfer

WHISPER_WIDTH = 32
UNITS = 16
SPK_DIM = 8
HP = {
    "data": {"sampling_rate": 32000, "hop_length": 320, "filter_length": 1024, "segment_size": 8000, "max_wav_value": 32768.0},
    "vits": {"ppg_dim": WHISPER_WIDTH, "vec_dim": UNITS, "spk_dim": SPK_DIM, "gin_channels": SPK_DIM, "inter_channels": 8,
             "hidden_channels": 8, "filter_channels": 16},
    "gen": {"upsample_input": 8, "upsample_rates": [10, 8, 4], "upsample_kernel_sizes": [20, 16, 8], "upsample_initial_channel": 16,
            "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]]},
}


def randomize(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            scale = 0.3 if parameter.dim() <= 1 else 0.5 / max(1.0, float(np.sqrt(parameter[0].numel())))
            parameter.copy_(torch.randn(parameter.shape) * scale)
            if name.endswith("weight_g"):
                parameter.abs_().add_(0.2)


def whisper_asset(path: Path) -> None:
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=WHISPER_WIDTH, n_audio_head=2, n_audio_layer=4, n_vocab=64,
                           n_text_ctx=8, n_text_state=WHISPER_WIDTH, n_text_head=2, n_text_layer=1)
    model = Whisper(dims)
    torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, path)


def hubert_asset(path: Path) -> None:
    model = HubertSoft(channels=16, hidden=64, layers=2, ffn=64, units=UNITS)
    weights = {"module." + k: v for k, v in model.state_dict().items()}
    weights["module.label_embedding.weight"] = torch.randn(100, UNITS)  # in the release, unused by units()
    weights["module.masked_spec_embed"] = torch.rand(64)
    torch.save(weights, path)


def synthesizer_weights() -> dict:
    model = SynthesizerInfer(HP)
    randomize(model)
    return model.state_dict()


def singer(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.random.default_rng(seed).normal(0, 0.3, SPK_DIM).astype(np.float32))


def main(out: Path) -> None:
    torch.manual_seed(5)
    (out / "assets").mkdir(parents=True)
    whisper_asset(out / "assets" / "whisper-large-v2.pt")
    whisper_asset(out / "assets" / "whisper-medium.pt")
    hubert_asset(out / "assets" / "hubert-soft-0d54a1f4.pt")
    characters = out / "characters"
    weights = synthesizer_weights()

    tiny = characters / "tiny"
    tiny.mkdir(parents=True)
    torch.save({"model_g": weights}, tiny / "sovits5.0.pth")
    (tiny / "base.yaml").write_text(yaml.safe_dump(HP))
    singer(tiny / "singer" / "Alto.spk.npy", 1)
    singer(tiny / "singer" / "Bass.spk.npy", 2)

    training = characters / "tiny-training"
    training.mkdir(parents=True)
    model_g = dict(weights, **{"emb_g.weight": torch.randn(SPK_DIM, SPK_DIM), "enc_q.pre.weight": torch.randn(8, 513, 1)})
    torch.save({"model_g": model_g, "model_d": {"mpd.discriminators.0.convs.0.weight": torch.randn(2, 1, 5, 1)},
                "optim_g": {"state": {}, "param_groups": [{"lr": 5e-5, "params": [0]}]}, "step": 1300, "epoch": 1,
                "hp_str": yaml.safe_dump(HP)}, training / "sovits5.0_0001.pt")
    singer(training / "singer" / "Tiny.spk.npy", 3)

    v1_hp = {section: dict(values) for section, values in HP.items()}
    del v1_hp["vits"]["vec_dim"]
    v1 = SynthesizerInfer(v1_hp)
    randomize(v1)
    (characters / "tiny-v1").mkdir(parents=True)
    torch.save({"model_g": v1.state_dict(), "hp_str": yaml.safe_dump(v1_hp), "step": 1}, characters / "tiny-v1" / "sovits5.0_0440.pt")
    singer(characters / "tiny-v1" / "singer" / "V1.spk.npy", 4)

    (characters / "no-config").mkdir(parents=True)
    shutil.copy(tiny / "sovits5.0.pth", characters / "no-config" / "sovits5.0.pth")
    singer(characters / "no-config" / "Lone.spk.npy", 5)

    sovits4 = characters / "sovits4"
    sovits4.mkdir(parents=True)
    torch.save({"model": {"emb_g.weight": torch.zeros(1, 4)}, "iteration": 1}, sovits4 / "G_0.pth")
    (sovits4 / "config.json").write_text(json.dumps({"data": {"sampling_rate": 44100}, "model": {}, "spk": {"a": 0}}))

    no_singer = characters / "no-singer"
    no_singer.mkdir(parents=True)
    shutil.copy(tiny / "sovits5.0.pth", no_singer / "sovits5.0.pth")
    shutil.copy(tiny / "base.yaml", no_singer / "base.yaml")

    pickled = characters / "pickled-singer"
    shutil.copytree(no_singer, pickled)
    np.save(pickled / "Evil.spk.npy", np.array([RunsOnLoad(str(out / "pwned"))], dtype=object), allow_pickle=True)

    torch.save({"model_g": {}, "step": RunsOnLoad(str(out / "pwned"))}, out / "unsafe.pth")


if __name__ == "__main__":
    main(Path(os.path.abspath(sys.argv[1])))
