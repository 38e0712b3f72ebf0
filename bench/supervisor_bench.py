"""Supervisor benchmark, per architecture, in one run:

    .venv/bin/python -m bench.supervisor_bench [--repeats N]

spawn->ready, load, first generate, warm generate, eviction -> memory back, and the reload-per-request
baseline (a fresh worker for every job, keep-alive 0, as the established app reloads per request)
against the warm path, as a ratio. Rounds alternate the two so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import psutil

from app.settings import PROJECT_ROOT
from runtimes.environments import EnvironmentBuilder, EnvSpec, load_spec
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import TEST_SPECS, built_envs_dir

PIPER_TEXT = "The quick brown fox jumps over the lazy dog. A second sentence follows the first one."
PIPER_OPTIONS = {"length_scale": 1.0, "noise_scale": 0.667, "noise_w": 0.8, "sentence_silence_s": 0.0}
TONE = (0.3 * np.sin(2 * np.pi * 220 * np.arange(16000 * 5) / 16000)).astype(np.float32)

REQUESTS: Dict[str, JobRequest] = {
    "piper": JobRequest(architecture="piper", character="joe", text=PIPER_TEXT, options=PIPER_OPTIONS),
    "fake": JobRequest(architecture="fake", character="plain", audio=TONE, audio_sample_rate=16000,
                       options={"gain": 1.0, "mode": "ok", "crash_after_jobs": 0, "sleep_s": 0.0, "hog_mb": 0}),
}


def make(spec: EnvSpec, python: Path, keep_alive_s: float) -> Supervisor:
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=Path(tempfile.mkdtemp()), keep_alive_s=keep_alive_s)
    return Supervisor(settings, {spec.name: spec}, lambda s, p: python)


def bench(spec: EnvSpec, python: Path, repeats: int) -> Dict[str, float]:
    request = REQUESTS[spec.name]
    warm = make(spec, python, keep_alive_s=-1)
    started = time.perf_counter()
    first = warm.generate(request)
    first_total = time.perf_counter() - started
    reload_per_request = make(spec, python, keep_alive_s=0)
    warm_times: List[float] = []
    fresh_times: List[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        warm.generate(request)
        warm_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        reload_per_request.generate(request)
        fresh_times.append(time.perf_counter() - started)
    row = warm.status()[0]
    available_before = psutil.virtual_memory().available
    started = time.perf_counter()
    warm.stop(row["name"])
    stop_s = time.perf_counter() - started
    freed_mb = (psutil.virtual_memory().available - available_before) / (1 << 20)
    warm.shutdown()
    reload_per_request.shutdown()
    return {
        "spawn_s": first.timings_s.get("spawn_s", 0.0),
        "load_s": first.timings_s.get("load_s", 0.0),
        "first_total_s": first_total,
        "first_generate_s": first.timings_s["generate_s"],
        "warm_s": statistics.median(warm_times),
        "reload_per_request_s": statistics.median(fresh_times),
        "evict_to_memory_back_s": stop_s,
        "freed_mb": freed_mb,
        "peak_mb": (row.get("measured_peak_mb") or 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    builder = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp()), "cpu")
    specs = [load_spec(PROJECT_ROOT / "envs" / "piper"), load_spec(TEST_SPECS / "fake")]
    print("%-6s %8s %8s %9s %9s %9s %11s %9s %9s %8s" % (
        "arch", "spawn", "load", "1st job", "1st gen", "warm", "reload/req", "ratio", "evict", "peak MB"))
    for spec in specs:
        r = bench(spec, builder.ensure(spec), args.repeats)
        print("%-6s %7.0fms %7.0fms %8.0fms %8.0fms %8.1fms %10.0fms %8.1fx %8.0fms %8.0f" % (
            spec.name, r["spawn_s"] * 1e3, r["load_s"] * 1e3, r["first_total_s"] * 1e3, r["first_generate_s"] * 1e3,
            r["warm_s"] * 1e3, r["reload_per_request_s"] * 1e3, r["reload_per_request_s"] / r["warm_s"],
            r["evict_to_memory_back_s"] * 1e3, r["peak_mb"]))
    print("ratio = reload-per-request / warm (median of %d alternating rounds); evict = stop request -> process reaped" % args.repeats)


if __name__ == "__main__":
    main()
