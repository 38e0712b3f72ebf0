"""so-vits-svc 5.0 conversion on this machine's CPU with real-size random weights, through the supervisor:

    .venv/bin/python -m bench.sovits5_bench [--repeats N]

The models are built once into data/bench-models/sovits5-real/ by the sovits5 env (our classes): the synthesizer at
upstream's configs/base.yaml size (20.0 M parameters), whisper large-v2's encoder as the worker keeps it (24 blocks of
1280, 0.47 G parameters; the checkpoint holds those 24 and large-v2's dims), hubert-soft at its release size (94 M).
Measured: worker start + import, the first character's load (whisper, hubert-soft and the synthesizer), warm real-time
factor (seconds of work per second of input) for 3 s and 10 s of voiced input with CREPE full (upstream's) and tiny,
the worker's peak RSS, and the warm-vs-reload-per-request ratio at 10 s (a new worker for every request pays start +
load + the job). Results: bench/results/sovits5_bench.txt.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from app.settings import PROJECT_ROOT
from runtimes.environments import EnvironmentBuilder, load_spec
from runtimes.memory import SystemRamSource
from runtimes.registry import read_manifest
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import built_envs_dir

RESULTS = PROJECT_ROOT / "bench" / "results" / "sovits5_bench.txt"
MODELS = PROJECT_ROOT / "data" / "bench-models" / "sovits5-real-2"
RATE = 44100

BUILD = r'''
import sys, yaml, numpy as np, torch
project, upstream_yaml, out = sys.argv[1:4]
sys.path.insert(0, project)
from pathlib import Path
from runtimes.adapters.sovits5.content import HubertSoft
from runtimes.adapters.sovits5.synthesizer import SynthesizerInfer
from whisper.model import AudioEncoder
out = Path(out)
(out / "assets").mkdir(parents=True, exist_ok=True)
(out / "characters" / "real" / "singer").mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
def small_(model, scale=0.02):
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale / max(float(p.abs().mean()), 1e-6)) if p.dim() > 1 else None
dims = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=1280, n_audio_head=20, n_audio_layer=32, n_vocab=51865, n_text_ctx=448,
            n_text_state=1280, n_text_head=20, n_text_layer=32)
encoder = AudioEncoder(80, 1500, 1280, 20, 24)
weights = {"encoder." + k: v for k, v in encoder.state_dict().items()}
torch.save({"dims": dims, "model_state_dict": weights}, out / "assets" / "whisper-large-v2.pt")
del weights
del encoder
torch.save(HubertSoft().state_dict(), out / "assets" / "hubert-soft-0d54a1f4.pt")
hp = yaml.safe_load(open(upstream_yaml))
model = SynthesizerInfer(hp)
small_(model.dec.conv_post, 0.002)
torch.save({"model_g": model.state_dict()}, out / "characters" / "real" / "sovits5.0.pth")
(out / "characters" / "real" / "base.yaml").write_text(yaml.safe_dump(hp))
np.save(out / "characters" / "real" / "singer" / "Real.spk.npy", np.random.default_rng(0).normal(0, 0.3, 256).astype(np.float32))
# v1 (the established app's characters): whisper medium's whole encoder, no hubert units, HiFi-GAN blocks
medium = AudioEncoder(80, 1500, 1024, 16, 24)
dims_medium = dict(dims, n_audio_state=1024, n_audio_head=16, n_audio_layer=24, n_text_state=1024, n_text_head=16, n_text_layer=24)
weights = {"encoder." + k: v for k, v in medium.state_dict().items()}
torch.save({"dims": dims_medium, "model_state_dict": weights}, out / "assets" / "whisper-medium.pt")
del weights, medium
hp_v1 = {"data": hp["data"], "gen": hp["gen"], "vits": {k: v for k, v in hp["vits"].items() if k != "vec_dim"}}
hp_v1["vits"]["ppg_dim"], hp_v1["vits"]["filter_channels"] = 1024, 512
model = SynthesizerInfer(hp_v1)
small_(model.dec.conv_post, 0.002)
(out / "characters" / "real-v1" / "singer").mkdir(parents=True, exist_ok=True)
torch.save({"model_g": model.state_dict(), "hp_str": yaml.safe_dump(hp_v1)}, out / "characters" / "real-v1" / "sovits5.0_0440.pt")
np.save(out / "characters" / "real-v1" / "singer" / "Real.spk.npy", np.random.default_rng(1).normal(0, 0.3, 256).astype(np.float32))
(out / ".complete").write_text("")
'''

BASE_YAML = r'''data: {sampling_rate: 32000, hop_length: 320, filter_length: 1024, segment_size: 8000, max_wav_value: 32768.0}
vits: {ppg_dim: 1280, vec_dim: 256, spk_dim: 256, gin_channels: 256, inter_channels: 192, hidden_channels: 192, filter_channels: 640}
gen: {upsample_input: 192, upsample_rates: [5, 4, 4, 2, 2], upsample_kernel_sizes: [15, 8, 8, 4, 4], upsample_initial_channel: 320,
      resblock_kernel_sizes: [3, 7, 11], resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]}
'''
"""upstream's configs/base.yaml model sections (PlayVoice/whisper-vits-svc at b95a849), the sizes the real models have."""


def voiced(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(160 + 25 * np.sin(2 * np.pi * 1.5 * t)) / RATE
    return np.asarray(sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.2 * ((t % 1.6) < 1.2), dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    spec = load_spec(PROJECT_ROOT / "envs" / "sovits5")
    builder = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp()), "cpu")
    python = builder.ensure(spec)
    if not (MODELS / ".complete").exists():
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            handle.write(BASE_YAML)
        started = time.perf_counter()
        subprocess.run([str(python), "-W", "ignore", "-c", BUILD, str(PROJECT_ROOT), handle.name, str(MODELS)], check=True)
        print("real-size models built in %.0f s" % (time.perf_counter() - started))
    manifest = read_manifest(spec)
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=Path(tempfile.mkdtemp()), assets_dir=MODELS / "assets")
    supervisor = Supervisor(settings, {"sovits5": spec}, lambda spec, progress: python, memory=SystemRamSource())
    row: Dict[str, Any] = {}

    def job(seconds: float, method: str, character: str = "real") -> JobRequest:
        return JobRequest(architecture="sovits5", character=character, character_path=str(MODELS / "characters" / character),
                          audio=voiced(seconds), audio_sample_rate=RATE, options=manifest.resolve_options({"f0_method": method}))

    try:
        started = time.perf_counter()
        first = supervisor.generate(job(3.0, "crepe"))
        t = first.timings_s
        row["first job s"] = time.perf_counter() - started
        row["start + import s"] = t.get("spawn_s", 0) + t.get("prepare_s", 0)
        row["first load s"] = t.get("load_s", 0)
        row["out rate"] = first.sample_rate
        for method in ("crepe", "crepe-tiny"):
            for seconds in (3.0, 10.0):
                took: List[float] = []
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    result = supervisor.generate(job(seconds, method))
                    took.append(time.perf_counter() - started)
                    assert abs(result.audio.size / result.sample_rate - seconds) < 0.05 * seconds
                row["rtf %s %gs" % (method, seconds)] = statistics.median(took) / seconds
        row["peak rss mb"] = supervisor.status()[0]["measured_peak_mb"]
        started = time.perf_counter()
        loaded = supervisor.generate(job(3.0, "crepe", "real-v1"))
        row["v1 first load s"] = loaded.timings_s.get("load_s", 0)
        for seconds in (3.0, 10.0):
            took = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                supervisor.generate(job(seconds, "crepe", "real-v1"))
                took.append(time.perf_counter() - started)
            row["rtf v1 %gs" % seconds] = statistics.median(took) / seconds
        row["peak rss mb both"] = supervisor.status()[0]["measured_peak_mb"]
    finally:
        supervisor.shutdown()
    warm_10 = row["rtf crepe 10s"] * 10.0
    cold_10 = row["start + import s"] + row["first load s"] + warm_10
    lines = ["so-vits-svc 5.0 on this machine's CPU (2 shared cores), real-size random weights, through the supervisor (%s)"
             % time.strftime("%Y-%m-%d"),
             "models: synthesizer 20.0 M params (upstream base.yaml), whisper large-v2 encoder as kept (24 of 32 blocks, 0.47 G params), "
             "hubert-soft 94 M; output %d Hz" % row["out rate"],
             "worker start + import: %.1f s; first load (whisper + hubert-soft + synthesizer): %.1f s; first 3 s job end to end: %.1f s"
             % (row["start + import s"], row["first load s"], row["first job s"]),
             "warm RTF (work s per input s), CREPE full (upstream's default): 3 s %.2f, 10 s %.2f"
             % (row["rtf crepe 3s"], row["rtf crepe 10s"]),
             "warm RTF, CREPE tiny: 3 s %.2f, 10 s %.2f" % (row["rtf crepe-tiny 3s"], row["rtf crepe-tiny 10s"]),
             "worker peak RSS: %.0f MB" % (row["peak rss mb"] or 0),
             "v1 (the established app's characters: whisper medium's 24 blocks of 1024, 0.3 G params, no hubert; 18.6 M synthesizer): "
             "load %.1f s (whisper medium + synthesizer, in the same worker); warm RTF CREPE full 3 s %.2f, 10 s %.2f; peak RSS with "
             "both generations loaded %.0f MB"
             % (row["v1 first load s"], row["rtf v1 3s"], row["rtf v1 10s"], row["peak rss mb both"] or 0),
             "warm vs reload-per-request at 10 s (CREPE full): %.1f s vs %.1f s = %.2fx" % (warm_10, cold_10, cold_10 / warm_10),
             "(median of %d runs each; the machine is shared with other sessions' work, so times are upper bounds)" % args.repeats]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
