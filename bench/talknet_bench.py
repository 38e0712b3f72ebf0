"""Controllable TalkNet on this machine's CPU with real-size random weights, in its env, through the adapter:

    data/envs/controllable_talknet-<hash>/bin/python bench/talknet_bench.py [--threads N]

The character is built in a temporary folder with NeMo 1.8.2's classes at about TalkNet 2's published sizes (d_char
128, 256-wide separable Jasper encoders: spect 10 blocks x 5, durs and pitch 5 x 5) and a HiFi-GAN v1 generator
(512 channels, 13.9 M parameters: what dominates). Measured: NeMo's import (load_shared), the character's load,
warm real-time factor (seconds of work per second of audio) for ~3 s and ~10 s takes, peak RSS, and warm vs
reload-per-request at 10 s (a new worker pays import + load + the job). Results: bench/results/talknet_bench.txt.
"""

from __future__ import annotations

import argparse
import io
import math
import resource
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from runtimes.adapter import GenerateRequest, ModelRef  # noqa: E402
from runtimes.adapters.controllable_talknet.adapter import MANIFEST, TalkNetAdapter  # noqa: E402

VOCAB = {"notation": "chars", "punct": True, "spaces": True, "stresses": False, "add_blank_at": "last"}
FRAMES_PER_TOKEN = 3.0
"""With blanks between characters, ~3 frames (35 ms) a token is about a spoken pace."""
TEXT_3S = "The quick brown fox jumps over it."
TEXT_10S = "The quick brown fox jumps over the lazy dog, and then it runs far away into the deep, dark forest to hide there."


def encoder(blocks: int) -> Dict[str, Any]:
    return {"_target_": "nemo.collections.asr.modules.ConvASREncoder", "feat_in": 128, "activation": "relu", "conv_mask": True,
            "jasper": [{"filters": 256, "repeat": 5, "kernel": [3 + 2 * (i % 8)], "stride": [1], "dilation": [1], "dropout": 0.0,
                        "residual": True, "separable": True} for i in range(blocks)]}


def build(folder: Path) -> None:
    import torch
    from nemo.collections.tts.models.talknet import TalkNetDursModel, TalkNetPitchModel, TalkNetSpectModel
    from nemo.collections.tts.modules.hifigan_modules import Generator
    from omegaconf import OmegaConf

    def config(cls: Any, blocks: int, **extra: Any) -> Any:
        return OmegaConf.create({"target": "%s.%s" % (cls.__module__, cls.__name__), "d_char": 128, "encoder": encoder(blocks),
                                 "train_ds": {"dataset": {"vocab": VOCAB, "blanking": True}}, **extra})

    preprocessor = {"_target_": "nemo.collections.asr.parts.preprocessing.features.FilterbankFeatures", "sample_rate": 22050,
                    "n_window_size": 1024, "n_window_stride": 256, "n_fft": 1024, "nfilt": 80, "dither": 0.0, "pad_to": 1}
    for name, cls, cfg in (("TalkNetSpect.nemo", TalkNetSpectModel, config(TalkNetSpectModel, 10, n_mels=80, preprocessor=preprocessor)),
                           ("TalkNetDurs.nemo", TalkNetDursModel, config(TalkNetDursModel, 5)),
                           ("TalkNetPitch.nemo", TalkNetPitchModel, config(TalkNetPitchModel, 5, f0_mean=150.0, f0_std=40.0))):
        cls._set_model_restore_state(is_being_restored=True)
        try:
            model = cls(cfg=cfg)
        finally:
            cls._set_model_restore_state(is_being_restored=False)
        with torch.no_grad():
            if cls is TalkNetDursModel:
                model.proj.weight.mul_(0.01)
                model.proj.bias.fill_(math.log(1.0 + FRAMES_PER_TOKEN))
            if cls is TalkNetPitchModel:
                model.sil_proj.bias.fill_(-4.0)
        weights = io.BytesIO()
        torch.save(model.state_dict(), weights)
        with tarfile.open(folder / name, "w") as archive:
            for member, data in (("model_config.yaml", OmegaConf.to_yaml(cfg).encode()), ("model_weights.ckpt", weights.getvalue())):
                info = tarfile.TarInfo("./" + member)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    generator = Generator(resblock=1, upsample_rates=[8, 8, 2, 2], upsample_kernel_sizes=[16, 16, 4, 4], upsample_initial_channel=512,
                          resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3)
    torch.save({"generator": generator.state_dict()}, folder / "hifiganmodel")  # NeMo's nested names: the adapter reads both


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    adapter = TalkNetAdapter()
    started = time.perf_counter()
    adapter.load_shared("cpu")
    import_s = time.perf_counter() - started
    adapter.torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="talknet-bench-") as folder:
        build(Path(folder))
        started = time.perf_counter()
        character = adapter.load(ModelRef("bench", folder))
        load_s = time.perf_counter() - started
    print("NeMo import (load_shared) %.1f s; character load %.2f s; threads %d" % (import_s, load_s, args.threads))
    options = MANIFEST.resolve_options({})
    job_10 = 0.0
    for label, text in (("~3 s", TEXT_3S), ("~10 s", TEXT_10S)):
        adapter.generate(character, GenerateRequest(text=text, options=options))  # warm-up
        times = []
        for _ in range(3):
            started = time.perf_counter()
            result = adapter.generate(character, GenerateRequest(text=text, options=options))
            times.append(time.perf_counter() - started)
        seconds = result.audio.size / result.sample_rate
        best = min(times)
        job_10 = best
        print("%s take: %.2f s of audio in %.2f s (best of 3): RTF %.2f" % (label, seconds, best, best / seconds))
    print("peak RSS %.2f GB" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6))
    print("warm vs reload-per-request at ~10 s: %.1fx ((import %.1f + load %.2f + job %.2f) / job)"
          % ((import_s + load_s + job_10) / job_10, import_s, load_s, job_10))


if __name__ == "__main__":
    main()
