"""Voice conversion per architecture on this machine's CPU, with real-size random weights (the real
configs' layer sizes, a HuBERT-base-sized content encoder), in one run:

    .venv/bin/python -m bench.conversion_bench [--repeats N]

For so-vits-svc and RVC: env build time (when built now) and size, worker start + import + shared
assets + first load, cold and warm real-time factor (processing seconds per audio second) for 3 s and
10 s inputs through the supervisor, peak RSS; the same conversion called directly on the upstream
library in a warm process of the same env (baseline); the reload-per-request path (a fresh worker for
each request, as the established app does); and a character switch inside a warm worker.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from app.settings import PROJECT_ROOT
from runtimes.environments import EnvironmentBuilder, EnvSpec, load_spec
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import built_envs_dir

RATES = {"sovits": 44100, "rvc": 16000}

DIRECT = r'''
import json, sys, time, numpy as np, os
arch, models, rate, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def voiced(seconds):
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(160 + 25 * np.sin(2 * np.pi * 1.5 * t)) / rate
    return np.asarray(sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2, dtype=np.float32)
if arch == "sovits":
    from so_vits_svc_fork import utils
    from so_vits_svc_fork.inference.core import Svc
    encoder = utils.HubertModelWithFinalProj.from_pretrained(os.path.join(models, "assets", "contentvec"))
    utils.get_hubert_model = lambda *a, **k: encoder
    folder = os.path.join(models, "characters", "real-a")
    svc = Svc(net_g_path=os.path.join(folder, "G_0.pth"), config_path=os.path.join(folder, "config.json"), device="cpu")
    convert = lambda audio: svc.infer_silence(audio, speaker="speaker", f0_method="dio")
else:
    from infer_rvc_python import BaseLoader
    loader = BaseLoader(only_cpu=True, hubert_path=os.path.join(models, "assets", "hubert"))
    loader.apply_conf(tag="a", file_model=os.path.join(models, "characters", "real-a", "model.pth"), pitch_algo="pm", pitch_lvl=0)
    convert = lambda audio: loader.generate_from_cache(audio_data=(audio, rate), tag="a")
result = {}
for seconds in (3.0, 10.0):
    audio = voiced(seconds)
    convert(audio)  # warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter(); convert(audio); times.append(time.perf_counter() - started)
    result[str(seconds)] = sorted(times)[len(times) // 2] / seconds
print(json.dumps(result))
'''


def voiced(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(160 + 25 * np.sin(2 * np.pi * 1.5 * t)) / rate
    return np.asarray(sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2, dtype=np.float32)


def real_models(spec: EnvSpec, python: Path) -> Path:
    folder = built_envs_dir().parent / "bench-models" / ("%s-real" % spec.name)
    script = PROJECT_ROOT / "tests" / "builders" / ("build_%s_character.py" % spec.name)
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([str(python), str(script), str(folder), "--real-size"], check=True, capture_output=True)
        (folder / ".complete").write_text("")
    if spec.name == "sovits" and not (folder / "assets" / "nsf_hifigan" / "model").exists():  # a folder built before the enhancer
        subprocess.run([str(python), "-c", "import sys, pathlib, build_sovits_character as b; b.enhancer(pathlib.Path(sys.argv[1]), True)",
                        str(folder / "assets" / "nsf_hifigan")], check=True, capture_output=True, cwd=script.parent)
    return folder


def request(spec: EnvSpec, models: Path, character: str, seconds: float) -> JobRequest:
    rate = RATES[spec.name]
    return JobRequest(architecture=spec.name, character=character, character_path=str(models / "characters" / character),
                      audio=voiced(seconds, rate), audio_sample_rate=rate,
                      options={"f0_method": "pm"} if spec.name == "rvc" else {"f0_method": "dio"})


def supervisor(spec: EnvSpec, python: Path, models: Path, **settings: Any) -> Supervisor:
    from runtimes.registry import read_manifest

    config = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=Path(tempfile.mkdtemp()), assets_dir=models / "assets", **settings)
    made = Supervisor(config, {spec.name: spec}, lambda s, p: python, memory=SystemRamSource())
    made.manifest = read_manifest(spec)  # type: ignore[attr-defined]
    return made


def run(made: Supervisor, job: JobRequest) -> Any:
    options = made.manifest.resolve_options(job.options)  # type: ignore[attr-defined]
    return made.generate(JobRequest(job.architecture, job.character, job.character_path, audio=job.audio,
                                    audio_sample_rate=job.audio_sample_rate, options=options))


def size_gb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / (1 << 30)


def bench(name: str, repeats: int) -> Dict[str, Any]:
    spec = load_spec(PROJECT_ROOT / "envs" / name)
    builder = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp()), "cpu")
    started = time.perf_counter()
    fresh = not builder.is_ready(spec)
    python = builder.ensure(spec)
    row: Dict[str, Any] = {"arch": name, "env_build_s": time.perf_counter() - started if fresh else None,
                           "env_gb": size_gb(builder.env_dir(spec))}
    models = real_models(spec, python)
    warm = supervisor(spec, python, models, keep_alive_s=-1)
    cold = run(warm, request(spec, models, "real-a", 3.0))
    t = cold.timings_s
    row.update(start_import_s=t.get("spawn_s", 0) + t.get("prepare_s", 0), first_load_s=t.get("load_s", 0),
               cold_rtf_3s=t["total_s"] / 3.0)
    for seconds in (3.0, 10.0):
        job = request(spec, models, "real-a", seconds)
        times = [run(warm, job).timings_s["total_s"] for _ in range(repeats)]
        row["warm_rtf_%ds" % seconds] = statistics.median(times) / seconds
    row["peak_rss_mb"] = warm.status()[0]["measured_peak_mb"]
    switches: List[float] = []
    switching = supervisor(spec, python, models, keep_alive_s=-1, max_characters_per_worker=1)
    run(switching, request(spec, models, "real-a", 3.0))
    for index in range(repeats * 2):
        result = run(switching, request(spec, models, "real-b" if index % 2 == 0 else "real-a", 3.0))
        switches.append(result.timings_s.get("load_s", 0.0))
    row["switch_load_s"] = statistics.median(switches)
    out = subprocess.run([str(python), "-c", DIRECT, name, str(models), str(RATES[name]), str(repeats)], capture_output=True,
                         text=True, check=True)
    direct = json.loads(out.stdout.strip().splitlines()[-1])
    row["direct_rtf_3s"], row["direct_rtf_10s"] = direct["3.0"], direct["10.0"]
    reload_per_request = supervisor(spec, python, models, keep_alive_s=0)
    job = request(spec, models, "real-a", 10.0)
    row["reload_rtf_10s"] = statistics.median(run(reload_per_request, job).timings_s["total_s"] for _ in range(2)) / 10.0
    for made in (warm, switching, reload_per_request):
        made.shutdown()
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| arch | env | worker start + import | first load | cold RTF 3 s | warm RTF 3 s / 10 s | direct warm RTF 3 s / 10 s "
          "| app over direct (10 s) | reload per request RTF 10 s | warm vs reload | switch (load) | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in ("sovits", "rvc"):
        r = bench(name, args.repeats)
        built = "" if r["env_build_s"] is None else ", built in %.0f s" % r["env_build_s"]
        print("| %s | %.1f GB%s | %.1f s | %.2f s | %.2f | %.2f / %.2f | %.2f / %.2f | %+.0f%% | %.2f | %.1fx | %.2f s | %.0f MB |" % (
            r["arch"], r["env_gb"], built, r["start_import_s"], r["first_load_s"], r["cold_rtf_3s"], r["warm_rtf_3s"],
            r["warm_rtf_10s"], r["direct_rtf_3s"], r["direct_rtf_10s"], 100 * (r["warm_rtf_10s"] / r["direct_rtf_10s"] - 1),
            r["reload_rtf_10s"], r["reload_rtf_10s"] / r["warm_rtf_10s"], r["switch_load_s"], r["peak_rss_mb"] or 0))


if __name__ == "__main__":
    main()
