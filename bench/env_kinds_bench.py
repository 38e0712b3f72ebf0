"""Piper in each environment kind (venv, conda, container), in one run:

    .venv/bin/python -m bench.env_kinds_bench [--repeats N] [--cold-repeats N] [--kinds venv,conda,container]

Per kind, the Piper env built from scratch under a name of its own (``piper-bench``, in a temporary envs folder; its
container images removed before and after) and built again (cached: the second build call); then, through a real
``Supervisor`` per kind, the cold first job (worker start -> ready, i.e. the handshake, ``spawn_s``; shared assets;
load; generate), stopped and repeated; then warm jobs of one short sentence, the kinds interleaved round-robin so the
machine's other load hits all alike, and each kind's warm overhead over venv's in the same rounds (the median of the
per-round differences with a 95% bootstrap interval, and the ratio of the medians; also the part of a warm job
outside the worker's generate, where a kind's transport would show without the model's noise).
Targets (issue 19): a container adds < 5 ms to a warm job and < 1.5 s to a cold start. The conda kind builds with
the tests' stand-in tool (``tests/conda_standin.py``: a venv and pip), so its build time is not a real conda solve.
Prints a table and the load average at start and end, and writes the same text to
bench/results/env_kinds_bench-cpu.txt.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Tuple

from app.settings import PROJECT_ROOT
from runtimes.environments import EnvSpec, load_spec
from runtimes.envkinds.registry import KINDS, EnvironmentKinds
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.env_kinds import ENGINE, kind_settings

NAME = "piper-bench"
"""The bench's own architecture name: its envs and images are nobody else's."""
CHARACTER = "joe"
"""Piper's builtin voice (no character folder)."""
SENTENCE = "The quick brown fox jumps over the lazy dog."
RESULTS = PROJECT_ROOT / "bench" / "results" / "env_kinds_bench-cpu.txt"
WARM_TARGET_MS = 5.0
COLD_TARGET_S = 1.5


@dataclass
class KindRun:
    kind: str
    supervisor: Supervisor
    build_cold_s: float
    build_cached_s: float
    size_mb: float
    spawn_s: List[float] = field(default_factory=list)
    first_job_s: List[float] = field(default_factory=list)
    warm_s: List[float] = field(default_factory=list)
    outside_s: List[float] = field(default_factory=list)
    """Each warm job's supervisor total less the worker's own generate time: the transport and bookkeeping
    a kind could add to, without the model's compute (which dominates, and whose noise hides a few ms)."""
    memory_mb: float = 0.0


def forget_images() -> None:
    """Remove the bench's container images (before the cold build and after the bench)."""
    listed = subprocess.run([ENGINE, "images", "--format", "{{.Repository}}:{{.Tag}}", "voicegen-env/%s" % NAME],
                            capture_output=True, text=True, check=False).stdout.split()
    if listed:
        subprocess.run([ENGINE, "rmi", "--force", *listed], capture_output=True, check=False)


def size_mb(kind: str, location: str) -> float:
    """The built env's size: the image's for a container, the folder's otherwise."""
    if kind == "container":
        found = subprocess.run([ENGINE, "image", "inspect", "--format", "{{.Size}}", location], capture_output=True, text=True, check=False)
        return int(found.stdout.strip() or 0) / 1e6
    folder = Path(location)
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6 if folder.is_dir() else float("nan")


def prepare(kind: str, base: EnvSpec, root: Path) -> KindRun:
    """Build the kind's env cold, then cached; a supervisor that runs Piper in it."""
    folder = root / kind
    (folder / "envs").mkdir(parents=True)
    kinds = EnvironmentKinds(kind_settings(kind, folder / "envs", folder / "logs", instance="bench-%d" % os.getpid()))
    spec = replace(base, name=NAME, kind=kind)
    started = time.perf_counter()
    kinds.build(spec)
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    built = kinds.build(spec)
    cached_s = time.perf_counter() - started
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=folder / "run", keep_alive_s=-1)
    supervisor = Supervisor(settings, {NAME: spec}, memory=SystemRamSource(), kinds=kinds)
    return KindRun(kind, supervisor, cold_s, cached_s, size_mb(kind, built.location))


def job(run: KindRun, measured: bool = True) -> None:
    """One warm job of the short sentence: its wall time as the caller sees it, and the part outside generate."""
    started = time.perf_counter()
    result = run.supervisor.generate(JobRequest(architecture=NAME, character=CHARACTER, text=SENTENCE))
    took = time.perf_counter() - started
    assert result.audio.size > 0
    if measured:
        run.warm_s.append(took)
        run.outside_s.append(result.timings_s["total_s"] - result.timings_s["generate_s"])


def cold_round(run: KindRun) -> None:
    """A first job on a fresh worker (start + assets + load + generate), then that worker stopped."""
    started = time.perf_counter()
    result = run.supervisor.generate(JobRequest(architecture=NAME, character=CHARACTER, text=SENTENCE))
    run.first_job_s.append(time.perf_counter() - started)
    assert result.cold and result.audio.size > 0
    run.spawn_s.append(result.timings_s.get("spawn_s", float("nan")))
    [row] = [row for row in run.supervisor.status() if row["pid"]]
    run.memory_mb = float(row["base_memory_mb"])
    assert run.supervisor.stop(str(row["name"]))


def paired_ms(runs: List[float], baselines: List[float]) -> float:
    """The median of the per-round differences, in ms."""
    return 1000 * statistics.median(a - b for a, b in zip(runs, baselines, strict=True))


def interval_ms(runs: List[float], baselines: List[float], resamples: int = 2000) -> Tuple[float, float]:
    """A 95% bootstrap interval of ``paired_ms`` (rounds resampled): how far the machine's noise moves it."""
    differences = [a - b for a, b in zip(runs, baselines, strict=True)]
    chooser = random.Random(19)
    medians = sorted(statistics.median(chooser.choices(differences, k=len(differences))) for _ in range(resamples))
    return 1000 * medians[int(0.025 * resamples)], 1000 * medians[int(0.975 * resamples) - 1]


def report(runs: Dict[str, KindRun], args: argparse.Namespace, load_start: str, load_end: str, total_s: float) -> List[str]:
    venv = runs["venv"]
    lines = [
        "# bench/env_kinds_bench.py, %s, this machine (%d cores, shared: the lead's tests ran beside it)"
        % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.cpu_count() or 0),
        "$ .venv/bin/python -m bench.env_kinds_bench --repeats %d --cold-repeats %d --kinds %s"
        % (args.repeats, args.cold_repeats, args.kinds),
        "Piper (builtin joe voice, CPU) per environment kind; load average (1/5/15 min) at start %s, at end %s; run %.0f s"
        % (load_start, load_end, total_s),
        "  warm job: %r, median of %d rounds, kinds interleaved round-robin; cold: median of %d fresh workers each, interleaved"
        % (SENTENCE, args.repeats, args.cold_repeats),
        "| kind | build cold | build cached | env size | start -> ready | first job (cold) | cold over venv | warm job | warm over venv "
        "[95%] | warm ratio | outside generate | its over venv [95%] | worker RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, run in runs.items():
        warm_ms = 1000 * statistics.median(run.warm_s)
        over = "-" if run is venv else "%+.1f ms [%+.1f, %+.1f]" % (
            paired_ms(run.warm_s, venv.warm_s), *interval_ms(run.warm_s, venv.warm_s))
        ratio = "-" if run is venv else "%.3f" % (statistics.median(run.warm_s) / statistics.median(venv.warm_s))
        cold_over = "-" if run is venv else "%+.2f s" % (statistics.median(run.first_job_s) - statistics.median(venv.first_job_s))
        outside_over = "-" if run is venv else "%+.2f ms [%+.2f, %+.2f]" % (
            paired_ms(run.outside_s, venv.outside_s), *interval_ms(run.outside_s, venv.outside_s))
        lines.append("| %s | %.1f s | %.2f s | %.0f MB | %.2f s | %.2f s | %s | %.1f ms | %s | %s | %.2f ms | %s | %.0f MB |" % (
            kind + (" (stand-in)" if kind == "conda" else ""), run.build_cold_s, run.build_cached_s, run.size_mb,
            statistics.median(run.spawn_s), statistics.median(run.first_job_s), cold_over, warm_ms, over, ratio,
            1000 * statistics.median(run.outside_s), outside_over, run.memory_mb))
    lines.append("  conda's build time is the stand-in tool's (tests/conda_standin.py: a venv + pip from the local wheels), not a real "
                 "conda/micromamba solve; the container's cold build includes pip in the image (base %s)." % "local/debian-python:bookworm")
    lines.append("  start -> ready: launch to the worker's handshake (spawn_s); first job: the caller's wall time of the first job on a "
                 "fresh worker (env check, start, shared assets, load, generate).")
    lines.append("  over venv: the median of the per-round differences, [a 95% bootstrap interval]; warm ratio: median / venv's median; "
                 "outside generate: the supervisor's job total less the worker's generate time (transport, bookkeeping).")
    lines.append("  worker RSS: the supervisor's reading after the first load, through the kind's handle: the processes' RSS for venv "
                 "and conda, the container's cgroup memory less inactive page cache (as docker stats) for container: not alike.")
    container = runs.get("container")
    if container is not None:
        warm_over_ms = paired_ms(container.warm_s, venv.warm_s)
        cold_over_s = statistics.median(container.first_job_s) - statistics.median(venv.first_job_s)
        low_ms, high_ms = interval_ms(container.warm_s, venv.warm_s)
        verdict = "met" if high_ms < WARM_TARGET_MS else "NOT met" if low_ms >= WARM_TARGET_MS else "not decided by this run's noise"
        lines.append("  target: a container adds < %.0f ms to a warm job: %s (%+.1f ms, 95%% [%+.1f, %+.1f]; outside generate %+.2f ms)" % (
            WARM_TARGET_MS, verdict, warm_over_ms, low_ms, high_ms, paired_ms(container.outside_s, venv.outside_s)))
        lines.append("  target: a container adds < %.1f s to a cold start: %s (%+.2f s on the first job, %+.2f s start -> ready)" % (
            COLD_TARGET_S, "met" if cold_over_s < COLD_TARGET_S else "NOT met", cold_over_s,
            statistics.median(container.spawn_s) - statistics.median(venv.spawn_s)))
    return lines


def load_average() -> str:
    return "/".join("%.1f" % value for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=200, help="warm-job rounds (>= 15)")
    parser.add_argument("--cold-repeats", type=int, default=5, help="fresh workers per kind for the cold numbers")
    parser.add_argument("--kinds", default=",".join(sorted(KINDS, key=lambda k: k != "venv")), help="comma-separated; venv first")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    assert kinds[0] == "venv", "venv is the baseline: name it first"
    load_start = load_average()
    began = time.perf_counter()
    base = load_spec(PROJECT_ROOT / "envs" / "piper")
    root = Path(tempfile.mkdtemp(prefix="env-kinds-bench-"))
    root.chmod(0o755)  # a container worker runs as another user
    runs: Dict[str, KindRun] = {}
    lines: List[str] = []
    try:
        if "container" in kinds:
            forget_images()
        for kind in kinds:
            runs[kind] = prepare(kind, base, root)
        for _ in range(args.cold_repeats):
            for run in runs.values():
                cold_round(run)
        for run in runs.values():
            job(run, measured=False)  # a fresh worker, loaded and warmed once before the measured rounds
            job(run, measured=False)
        for _ in range(args.repeats):
            for run in runs.values():
                job(run)
        lines = report(runs, args, load_start, load_average(), time.perf_counter() - began)
    finally:
        for run in runs.values():
            run.supervisor.shutdown()
        if "container" in kinds:
            forget_images()
        shutil.rmtree(root, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
