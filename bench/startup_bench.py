"""Start-up, measured from outside as a person or a script meets it, with the envs already built.

    .venv/bin/python -m bench.startup_bench [--runs N] [--warm N] [--project CHECKOUT]

Each run launches ``launcher.py --no-browser`` on a free port with a fresh data folder and, from the moment it is
started, posts the two-sentence Piper line to ``/v1/audio/speech`` every 50 ms (a 503 from the starting page is
simply asked again). It prints, from the launch: the first answer on the address (the starting page), the moment the
app takes the address and the CPU seconds its process had used by then (steadier than wall time on a shared
machine), the first speech answered (the app's first request), "Ready."; then that first request's time against
warm requests in the same run (the baseline), as a ratio, split into the worker's own time and the rest. Runs are
separate launches, one after the other; the figures are their medians. ``--project`` launches another checkout (an
older commit's files with ``.venv`` linked to this one's) for a before/after; ``PYTHONPYCACHEPREFIX`` pointing at an
empty folder makes it start without bytecode, as environments installed before the launcher compiled it did.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import httpx
import psutil

from app.settings import PROJECT_ROOT
from tests.conftest import built_envs_dir, free_port

TEXT = "The quick brown fox jumps over the lazy dog. A second sentence follows the first one."


@dataclass
class Run:
    page_s: Optional[float] = None
    """First answer on the address (the starting page's 503)."""
    first_answer_s: Optional[float] = None
    """The first speech request answered 200, from the launch."""
    first_request_s: Optional[float] = None
    """That request's own time."""
    ready_s: Optional[float] = None
    warm_s: List[float] = field(default_factory=list)
    first_generate_s: Optional[float] = None
    """The worker's own time for the first request (the job's ``generate_s``)."""
    warm_generate_s: List[float] = field(default_factory=list)
    lines: Dict[str, float] = field(default_factory=dict)
    takeover_cpu_s: Optional[float] = None
    """CPU seconds the app's process had used when it took the address (steadier than wall time on a shared machine)."""
    load_average: float = 0.0
    statuses: List[int] = field(default_factory=list)


def generate_s(client: httpx.Client, url: str, answer: httpx.Response) -> float:
    job = client.get(url + "v1/jobs/" + answer.headers["X-Job-Id"]).raise_for_status().json()
    return float(job["timings_s"]["generate_s"])


def one_run(project: Path, warm: int) -> Run:
    run = Run()
    port = free_port()
    url = "http://127.0.0.1:%d/" % port
    with tempfile.TemporaryDirectory() as data_dir:
        env = dict(os.environ, VOICEGEN_ENVS_DIR=str(built_envs_dir()), PYTHONUNBUFFERED="1")
        run.load_average = os.getloadavg()[0]
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, str(project / "launcher.py"), "--no-browser", "--port", str(port), "--data-dir", data_dir],
            cwd=str(project), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                stamp = time.perf_counter() - started
                text = line.strip()
                if text == "Ready.":
                    run.ready_s = stamp
                elif text.startswith("Voice workstation:"):
                    run.lines["starting page printed" if "starting" in text else "app takes the address"] = stamp
                    if "starting" not in text:
                        try:  # launcher.py execs the app: the same process
                            times = psutil.Process(process.pid).cpu_times()
                            run.takeover_cpu_s = times.user + times.system
                        except psutil.Error:
                            pass

        threading.Thread(target=pump, daemon=True).start()
        body = {"input": TEXT, "voice": "joe", "cache": False}
        try:
            with httpx.Client(timeout=120) as client:
                while time.perf_counter() - started < 300 and process.poll() is None:
                    asked = time.perf_counter()
                    try:
                        answer = client.post(url + "v1/audio/speech", json=body)
                    except httpx.TransportError:
                        time.sleep(0.05)
                        continue
                    now = time.perf_counter()
                    run.statuses.append(answer.status_code)
                    if run.page_s is None:
                        run.page_s = now - started
                    if answer.status_code == 200:
                        run.first_answer_s, run.first_request_s = now - started, now - asked
                        run.first_generate_s = generate_s(client, url, answer)
                        break
                    time.sleep(0.05)
                if run.first_answer_s is None:
                    raise RuntimeError("the app did not answer a speech request: statuses %s" % sorted(set(run.statuses)))
                for _ in range(warm):
                    asked = time.perf_counter()
                    answer = client.post(url + "v1/audio/speech", json=body).raise_for_status()
                    run.warm_s.append(time.perf_counter() - asked)
                    run.warm_generate_s.append(generate_s(client, url, answer))
            deadline = time.monotonic() + 60
            while run.ready_s is None and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
    return run


def median(values: List[Optional[float]]) -> float:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warm", type=int, default=5, help="warm requests after the first, per run (the baseline)")
    parser.add_argument("--project", type=Path, default=PROJECT_ROOT,
                        help="the checkout to launch (another commit's, with .venv linked to this one's, for a before/after)")
    args = parser.parse_args()
    runs = [one_run(args.project.resolve(), args.warm) for _ in range(args.runs)]
    print("Start-up, launcher.py --no-browser to answers, median of %d launches (this machine: %s, %d CPUs)"
          % (args.runs, sys.platform, os.cpu_count() or 0))
    for index, run in enumerate(runs, 1):
        print("  run %d (load average %.1f): page %.2f s, app takes the address %.2f s (its CPU %.2f s), first speech answered "
              "%.2f s (it took %.0f ms; warm median %.0f ms), Ready. %.2f s; answers before it: %s"
              % (index, run.load_average, run.page_s or float("nan"), run.lines.get("app takes the address", float("nan")),
                 run.takeover_cpu_s or float("nan"), run.first_answer_s or float("nan"), (run.first_request_s or 0) * 1000,
                 statistics.median(run.warm_s) * 1000, run.ready_s or float("nan"), sorted(set(run.statuses[:-1]))))
    first_request = median([run.first_request_s for run in runs])
    warm = median([statistics.median(run.warm_s) for run in runs])
    print("  launch -> the starting page answers       %6.2f s" % median([run.page_s for run in runs]))
    print("  launch -> the app takes the address       %6.2f s" % median([run.lines.get("app takes the address") for run in runs]))
    print("  the app's CPU time until then              %6.2f s" % median([run.takeover_cpu_s for run in runs]))
    print("  launch -> first speech answered (200)     %6.2f s" % median([run.first_answer_s for run in runs]))
    print("  launch -> Ready.                          %6.2f s" % median([run.ready_s for run in runs]))
    print("  first speech request                      %6.0f ms" % (first_request * 1000))
    print("  warm speech request (baseline, same runs) %6.0f ms" % (warm * 1000))
    print("  ratio first / warm                        %6.2fx" % (first_request / warm))
    print("  of which the worker's own time (generate_s): first %.0f ms, warm %.0f ms; the rest (app, HTTP): first %.0f ms, "
          "warm %.0f ms" % (median([run.first_generate_s for run in runs]) * 1000,
                            median([statistics.median(run.warm_generate_s) for run in runs]) * 1000,
                            median([(run.first_request_s or 0) - (run.first_generate_s or 0) for run in runs]) * 1000,
                            median([statistics.median(w - g for w, g in zip(run.warm_s, run.warm_generate_s, strict=True))
                                    for run in runs]) * 1000))
    print("  ratio first / warm, per run               %s" % ", ".join(
        "%.2fx" % ((run.first_request_s or 0) / statistics.median(run.warm_s)) for run in runs))


if __name__ == "__main__":
    main()
