"""GPU check, for a machine with an NVIDIA GPU (one command, a few minutes):

    PYTHONPATH=. python3 -m bench.gpu_check

Runs the real supervisor with workers that take GPU memory with torch (``bench/gpu_adapter.py``:
``GPU_SHARED_GIB`` of shared assets per worker, a size per character) and prints NVML's view of:
two characters loaded into one worker (the second without a new process), the eviction of a
character (unloaded inside its worker) when a fourth does not fit, the eviction of a whole worker
when another architecture needs nearly the whole GPU, SIGKILL of a worker holding memory, and
SIGKILL of an app process (its worker gone, memory back). Needs torch, psutil and nvidia-ml-py.
Writes ``$OUT/gpu_check.txt`` when ``OUT`` is set.
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
OTHER = EnvSpec("gpuhog2", "venv", SPEC.python, SPEC.adapter, ROOT / "bench")
SHARED_GIB = 2.0

CHILD_APP = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bench.gpu_check import make_supervisor
from runtimes.supervisor import JobRequest
sup = make_supervisor(Path(sys.argv[2]))
sup.generate(JobRequest(architecture="gpuhog", character="a", text="x"))
print("worker", sup.status()[0]["pid"], flush=True)
time.sleep(600)
"""


def make_supervisor(run_dir: Path, **overrides: float) -> Supervisor:
    settings = SupervisorSettings(
        project_root=ROOT, run_dir=run_dir, default_need_bytes=int((SHARED_GIB + 1.5) * GIB), memory_reserve_bytes=GIB,
        **overrides,  # type: ignore[arg-type]
    )
    return Supervisor(settings, {"gpuhog": SPEC, "gpuhog2": OTHER}, lambda spec, progress: Path(sys.executable))


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


def job(supervisor: Supervisor, architecture: str, character: str) -> str:
    started = time.perf_counter()
    result = supervisor.generate(JobRequest(architecture=architecture, character=character, text="x"))
    t = result.timings_s
    return "%.2f s (spawn %.2f, shared assets %.2f, load %.2f, admission %.2f)" % (
        time.perf_counter() - started, t.get("spawn_s", 0), t.get("prepare_s", 0), t.get("load_s", 0), t.get("admit_s", 0))


def workers(supervisor: Supervisor) -> str:
    return "; ".join("%s on %s holds %s (%.0f MiB accounted, peak %s MiB)" % (
        r["name"], r["device"][:12], r["characters"], r["memory_mb"], r["measured_peak_mb"]) for r in supervisor.status() if r["pid"])


def main() -> None:
    lines: List[str] = []
    source = NvmlSource()
    device = source.devices()[0]
    reading = source.read(device)
    free0 = reading.free_bytes / GIB
    quarter = round((free0 - SHARED_GIB - 1.5) / 3.5, 1)  # three characters fit beside the shared assets, a fourth does not
    big = round(free0 - 2 * SHARED_GIB - 4.0, 1)  # the other architecture needs nearly the whole device
    os.environ.update(GPU_SHARED_GIB=str(SHARED_GIB), GPU_HOG_GIB=str(quarter), GPU_HOG_GIB_BIG=str(big))
    line("device %s: total %.1f GiB, free %.1f GiB; per-process figures %s; character %.1f GiB, big %.1f GiB" % (
        device, reading.total_bytes / GIB, free0, "available" if reading.per_process_bytes is not None else "UNAVAILABLE",
        quarter, big), lines)
    run_dir = Path(tempfile.mkdtemp())
    supervisor = make_supervisor(run_dir)
    try:
        line("a, cold (new worker): %s; free now %.1f GiB" % (job(supervisor, "gpuhog", "a"), free_gib(source, device)), lines)
        line("b, same worker: %s; free now %.1f GiB" % (job(supervisor, "gpuhog", "b"), free_gib(source, device)), lines)
        line("a again (warm): %s" % job(supervisor, "gpuhog", "a"), lines)
        line("c, same worker: %s; %s" % (job(supervisor, "gpuhog", "c"), workers(supervisor)), lines)
        # d and big were never loaded here: their sizes go into the ledger as an earlier run would have
        # measured them, so the supervisor plans the eviction instead of meeting an out-of-memory error
        supervisor.ledger.record("gpuhog/d", device, supervisor.ledger.get("gpuhog/a", device) or int(quarter * GIB))
        supervisor.ledger.record("gpuhog2/big", device, int(big * GIB))
        line("d, does not fit beside a, b, c: %s; NVML showed the memory back %.2f s after the unload" % (
            job(supervisor, "gpuhog", "d"), supervisor.last_release_wait_s or -1), lines)
        line("  after: %s" % workers(supervisor), lines)
        line("big (other architecture, needs nearly the whole GPU): %s; memory back %.2f s after the stop" % (
            job(supervisor, "gpuhog2", "big"), supervisor.last_release_wait_s or -1), lines)
        line("  after: %s" % workers(supervisor), lines)
        line("a again (the evicted worker restarts): %s" % job(supervisor, "gpuhog", "a"), lines)
        line("  after: %s" % workers(supervisor), lines)
        victim = next(r for r in supervisor.status() if r["pid"])
        free_before = free_gib(source, device)
        os.kill(victim["pid"], signal.SIGKILL)
        waited = wait_free(source, device, free_before + quarter)
        line("SIGKILL of worker %s holding ~%.0f MiB: NVML shows it free after %.2f s" % (
            victim["name"], victim["measured_peak_mb"] or 0, waited), lines)
    finally:
        supervisor.shutdown()
    wait_free(source, device, free0 - 2)
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
