"""Job bookkeeping: what the job store costs per request, and how fast a big history lists, in one run.

    .venv/bin/python -m bench.jobs_bench [--repeats N] [--history 10000]

1. The same warm Piper request (output cache off, so every call does real work), alternating: through the job
   service (store rows written at submit, start and end; the input kept; provenance with model file hashes;
   scheduling and the hand-over to a job thread) against the same preparation and run called directly with no
   store (the baseline). Prints the medians and the difference per job (target: under 5 ms).
2. A store holding ``--history`` jobs of one owner (and as many of others): the newest page, a text search and an
   architecture filter, median of 20 (target: under 50 ms).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, List, Tuple

from app.bootstrap import make_workstation
from app.settings import Settings
from jobs.spec import JobSpec
from jobs.store import JobStore, sqlite_url
from tests.conftest import TEST_SPECS, built_envs_dir

TEXT = "Hi there."
"""Short: the bookkeeping is a few milliseconds, and a long synthesis would bury it in run-to-run noise."""


def median_ms(samples: List[float]) -> float:
    return statistics.median(samples) * 1000.0


def bookkeeping(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=Path(folder), envs_dir=built_envs_dir(), extra_spec_dirs=(TEST_SPECS,), prewarm="")
        station = make_workstation(settings)
        try:
            spec = JobSpec("piper", "joe", TEXT, use_cache=False)
            station.generate("piper", "joe", TEXT, use_cache=False)  # warm the worker and the hash memo

            def with_store() -> None:
                station.generate("piper", "joe", TEXT, use_cache=False)

            def without_store() -> None:
                station.execute(station.prepare(spec), uuid.uuid4().hex, lambda fraction, message: None, threading.Event())

            timings: dict[str, List[float]] = {"direct": [], "jobs": []}
            actions: dict[str, Callable[[], None]] = {"direct": without_store, "jobs": with_store}
            for _ in range(repeats):
                for name in ("direct", "jobs"):
                    started = time.perf_counter()
                    actions[name]()
                    timings[name].append(time.perf_counter() - started)
            direct, jobs = median_ms(timings["direct"]), median_ms(timings["jobs"])
            pairs = [b - a for a, b in zip(timings["direct"], timings["jobs"], strict=True)]
            print("warm Piper request (%r), median of %d, alternating:" % (TEXT, repeats))
            print("  without the job store (baseline)   %7.1f ms" % direct)
            print("  as a stored job                    %7.1f ms" % jobs)
            print("  bookkeeping per job                %+7.1f ms; median of the pairs' differences %+.1f ms (target < 5 ms)"
                  % (jobs - direct, median_ms(pairs)))
        finally:
            station.close()


def listing(history: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = JobStore(sqlite_url(Path(folder) / "jobs.sqlite3"))
        rows = []
        now = time.time()
        for index in range(history * 2):
            rows.append({
                "id": uuid.uuid4().hex, "owner": "me" if index % 2 else "someone else", "session": "", "state": "succeeded",
                "architecture": "piper" if index % 3 else "rvc", "character": "joe", "text": "Line number %d of the history." % index,
                "request": {"options": {}, "output_format": "wav"}, "created_at": now - index, "attempts": 1,
                "timings": {"generate_s": 0.2}, "output_path": "/outputs/%d.wav" % index, "output_bytes": 50000, "cached": False,
                "provenance": {"model_files": {"joe.onnx": "0" * 64}},
            })
        started = time.perf_counter()
        with store.engine.begin() as connection:
            from jobs.store import TABLE

            connection.execute(TABLE.insert(), rows)
        print("history: %d jobs of one owner among %d, written in %.1f s" % (history, history * 2, time.perf_counter() - started))
        queries: List[Tuple[str, Callable[[], object]]] = [
            ("newest 50", lambda: store.page("me")),
            ("text search", lambda: store.page("me", query="number 1234")),
            ("architecture filter", lambda: store.page("me", architecture="rvc")),
            ("newest 1000", lambda: store.page("me", limit=1000)),
        ]
        for label, call in queries:
            samples = []
            for _ in range(20):
                started = time.perf_counter()
                call()
                samples.append(time.perf_counter() - started)
            print("  %-20s median %6.2f ms (target < 50 ms)" % (label, median_ms(samples)))
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--history", type=int, default=10000)
    args = parser.parse_args()
    listing(args.history)
    bookkeeping(args.repeats)


if __name__ == "__main__":
    main()
