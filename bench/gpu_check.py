"""GPU check, for a machine with an NVIDIA GPU (one command, a few minutes):

    PYTHONPATH=. python3 -m bench.gpu_check

Runs the real supervisor with workers that take GPU memory with torch (``bench/gpu_adapter.py``) and
prints: NVML's view, measured peak per worker, a forced eviction (which worker went, time for NVML to
show the memory back), reload times, SIGKILL of a worker holding memory (time until it is free), and
SIGKILL of an app process (its worker gone, memory back). Needs torch, psutil and nvidia-ml-py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

from runtimes.environments import EnvSpec
from runtimes.memory import GIB, NvmlSource
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings

ROOT = Path(__file__).resolve().parent.parent
SPEC = EnvSpec("gpuhog", "venv", "%d.%d" % sys.version_info[:2], "bench.gpu_adapter:GpuHogAdapter", ROOT / "bench")

CHILD_APP = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bench.gpu_check import SPEC, make_supervisor
from runtimes.supervisor import JobRequest
sup = make_supervisor(Path(sys.argv[2]))
sup.generate(JobRequest(architecture="gpuhog", character="a", text="x"))
print("worker", sup.status()[0]["pid"], flush=True)
time.sleep(600)
"""


def make_supervisor(run_dir: Path, **overrides: float) -> Supervisor:
    gib = float(os.environ.get("GPU_HOG_GIB", "30"))
    settings = SupervisorSettings(
        project_root=ROOT, run_dir=run_dir, default_need_bytes=int((gib + 1) * GIB), memory_reserve_bytes=GIB, **overrides  # type: ignore[arg-type]
    )
    return Supervisor(settings, {"gpuhog": SPEC}, lambda spec, progress: Path(sys.executable))


def free_gib(source: NvmlSource, device: str) -> float:
    return source.read(device).free_bytes / GIB


def wait_free(source: NvmlSource, device: str, at_least_gib: float, timeout_s: float = 20.0) -> float:
    started = time.monotonic()
    while free_gib(source, device) < at_least_gib and time.monotonic() - started < timeout_s:
        time.sleep(0.05)
    return time.monotonic() - started


def line(text: str, lines: List[str]) -> None:
    print(text, flush=True)
    lines.append(text)


def main() -> None:
    lines: List[str] = []
    source = NvmlSource()
    device = source.devices()[0]
    reading = source.read(device)
    line("device %s: total %.1f GiB, free %.1f GiB; per-process figures %s" % (
        device, reading.total_bytes / GIB, reading.free_bytes / GIB,
        "available" if reading.per_process_bytes is not None else "UNAVAILABLE"), lines)
    run_dir = Path(tempfile.mkdtemp())
    supervisor = make_supervisor(run_dir)
    try:
        for character in ("a", "b"):
            started = time.perf_counter()
            result = supervisor.generate(JobRequest(architecture="gpuhog", character=character, text="x"))
            line("worker %s: cold job %.2f s (spawn %.2f s, load %.2f s), free now %.1f GiB" % (
                character, time.perf_counter() - started, result.timings_s.get("spawn_s", 0), result.timings_s.get("load_s", 0),
                free_gib(source, device)), lines)
        for row in supervisor.status():
            line("  %s: state %s, device %s, measured peak %s MiB" % (
                row["name"], row["state"], row["device"], row["measured_peak_mb"]), lines)
        before = {row["character"] for row in supervisor.status()}
        started = time.perf_counter()
        supervisor.generate(JobRequest(architecture="gpuhog", character="c", text="x"))
        after = {row["character"] for row in supervisor.status()}
        line("forced eviction: loading c evicted %s; NVML showed the memory back %.2f s after the stop; "
             "job incl. eviction + wait + load: %.2f s" % (
                 sorted(before - after), supervisor.last_release_wait_s or -1, time.perf_counter() - started), lines)
        started = time.perf_counter()
        supervisor.generate(JobRequest(architecture="gpuhog", character="c", text="x"))
        line("warm job on c: %.3f s" % (time.perf_counter() - started), lines)
        evicted = sorted(before - after)[0]
        started = time.perf_counter()
        result = supervisor.generate(JobRequest(architecture="gpuhog", character=evicted, text="x"))
        line("reload of the evicted %s (evicting another): %.2f s (load %.2f s)" % (
            evicted, time.perf_counter() - started, result.timings_s.get("load_s", 0)), lines)
        victim = supervisor.status()[0]
        free_before = free_gib(source, device)
        os.kill(victim["pid"], signal.SIGKILL)
        waited = wait_free(source, device, free_before + 25)
        line("SIGKILL of worker %s holding ~%.0f MiB: NVML shows it free after %.2f s" % (
            victim["name"], victim["measured_peak_mb"] or 0, waited), lines)
    finally:
        supervisor.shutdown()
    wait_free(source, device, reading.free_bytes / GIB - 2)
    free_before = free_gib(source, device)
    child = subprocess.Popen([sys.executable, "-c", CHILD_APP, str(ROOT), str(run_dir / "child")], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    worker_pid = int(child.stdout.readline().split()[1])
    loaded_free = free_gib(source, device)
    child.send_signal(signal.SIGKILL)
    child.wait()
    started = time.monotonic()
    while time.monotonic() - started < 10:
        try:
            os.kill(worker_pid, 0)
            time.sleep(0.05)
        except ProcessLookupError:
            break
    gone_s = time.monotonic() - started
    waited = wait_free(source, device, free_before - 1)
    line("SIGKILL of the app: its worker (held %.1f GiB) gone after %.2f s, memory back after %.2f s (free %.1f -> %.1f GiB)" % (
        free_before - loaded_free, gone_s, waited, loaded_free, free_gib(source, device)), lines)
    out = os.environ.get("OUT")
    if out:
        Path(out, "gpu_check.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
