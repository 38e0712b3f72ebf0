"""What metrics and traces cost a warm job: the same Piper request to two apps, one with telemetry (metrics counted,
each job's trace exported over OTLP/HTTP to a receiver this script runs) and one without (``telemetry = false``).

    .venv/bin/python -m bench.observability_bench [--repeats N]

Rounds alternate between the two apps (machine load hits both alike); prints the medians, the median of the
paired differences and the ratio (target: telemetry adds < 2% to a warm Piper job).
"""

from __future__ import annotations

import argparse
import http.server
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import List

import httpx

from tests.conftest import start_app

BODY = {"model": "piper", "voice": "joe", "input": "The quick brown fox jumps over the lazy dog.", "response_format": "wav",
        "stream": False, "cache": False}


class Sink(http.server.BaseHTTPRequestHandler):
    received = 0

    def do_POST(self) -> None:  # an OTLP/HTTP receiver that keeps nothing
        self.rfile.read(int(self.headers.get("content-length", "0")))
        Sink.received += 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def timed(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    answer = client.post(url + "v1/audio/speech", json=BODY)
    answer.raise_for_status()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        on = start_app(Path(folder) / "on", extra_env={"VOICEGEN_OTLP_ENDPOINT": "http://127.0.0.1:%d" % sink.server_address[1],
                                                       "OTEL_BSP_SCHEDULE_DELAY": "500"})
        off = start_app(Path(folder) / "off", extra_env={"VOICEGEN_TELEMETRY": "false"})
        try:
            with httpx.Client(timeout=120) as client:
                for app in (on, off):
                    for _ in range(3):
                        timed(client, app.url)
                with_telemetry: List[float] = []
                without: List[float] = []
                for round_number in range(args.repeats):
                    pair = (on, off) if round_number % 2 == 0 else (off, on)
                    for app in pair:
                        (with_telemetry if app is on else without).append(timed(client, app.url))
                metrics = client.get(on.url + "metrics").text
        finally:
            on.stop()
            off.stop()
    sink.shutdown()
    sink.server_close()
    counted = next((line.split()[-1] for line in metrics.splitlines()
                    if line.startswith('voicegen_jobs_total{architecture="piper",state="succeeded"}')), "?")
    differences = [a - b for a, b in zip(with_telemetry, without, strict=True)]
    on_ms, off_ms = statistics.median(with_telemetry) * 1000, statistics.median(without) * 1000
    delta_ms = statistics.median(differences) * 1000
    lines = [
        "# bench/observability_bench.py, %s, load average %.1f/%.1f/%.1f at start, %.1f/%.1f/%.1f at end"
        % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), *load_start, *os.getloadavg()),
        "warm Piper job over HTTP (POST /v1/audio/speech, cache off), %d rounds alternating between two apps" % args.repeats,
        "| app | median |", "|---|---|",
        "| telemetry off (baseline) | %.1f ms |" % off_ms,
        "| metrics + traces exported over OTLP/HTTP | %.1f ms |" % on_ms,
        "paired difference (median): %+.2f ms, %+.2f%% of the baseline; ratio of medians %.3f" % (delta_ms, 100 * delta_ms / off_ms,
                                                                                            on_ms / off_ms),
        "OTLP exports received: %d; jobs counted in /metrics: %s" % (Sink.received, counted),
        "target (< 2%% of a warm job): %s" % ("met" if delta_ms / off_ms < 0.02 else "not met in this run"),
    ]
    text = "\n".join(lines)
    print(text)
    (Path(__file__).parent / "results" / "observability_bench-cpu.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
