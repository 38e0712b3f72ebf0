"""What the nginx edge costs a warm job: the same Piper request straight to the app's port and through the edge over
TLS, in one run of the shipped compose stack (``compose.yaml``, images built FROM the local base).

    .venv/bin/python -m bench.edge_bench [--repeats N]

The app's port is published to loopback for this run only (an override file; the shipped stack publishes only the
edge). Rounds alternate between the two paths on kept connections (a TLS handshake per request is not what clients
pay); prints the medians, the median of the paired differences (target: the edge adds < 5 ms) and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List

import httpx

from tests.env_kinds import BASE_IMAGE, require_container_engine
from tests.test_server_mode import LOGIN, ROOT, SERVER_NAME, compose_command, free_ports, run_compose, self_signed_certificate, wait_ready

BODY = {"model": "piper", "voice": "joe", "input": "The quick brown fox jumps over the lazy dog.", "response_format": "wav",
        "stream": False, "cache": False}


def timed(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    client.post(url + "v1/audio/speech", json=BODY).raise_for_status()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    require_container_engine()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        folder.chmod(0o755)
        self_signed_certificate(folder / "certs")
        auth = folder / "auth.txt"
        auth.write_text("%s:%s\n" % LOGIN)
        auth.chmod(0o644)
        (folder / "empty.env").write_text("")
        https_port, http_port, app_port = free_ports(3)
        # the app's own rate limit off for this run (both paths go through it alike; the bench's rounds would exceed it)
        (folder / "publish-app.yaml").write_text('services:\n  app:\n    ports:\n      - "127.0.0.1:%d:7860"\n'
                                                 '    environment:\n      VOICEGEN_RATE_LIMIT_PER_MIN: "0"\n' % app_port)
        env = dict(os.environ, DOCKER_BUILDKIT="0", COMPOSE_DOCKER_CLI_BUILD="0", BASE=BASE_IMAGE, VOICEGEN_IMAGE_TAG="test",
                   VOICEGEN_SERVER_NAME=SERVER_NAME, VOICEGEN_CERT_DIR=str(folder / "certs"), VOICEGEN_AUTH_FILE=str(auth),
                   VOICEGEN_HTTPS_PORT=str(https_port), VOICEGEN_HTTP_PORT=str(http_port), VOICEGEN_EDGE_RATE_PER_S="1000",
                   VOICEGEN_EDGE_BURST="1000")
        project = [*compose_command(), "--project-name", "voicegen-bench-%d" % os.getpid(), "--env-file", str(folder / "empty.env"),
                   "--file", str(ROOT / "compose.yaml"), "--file", str(folder / "publish-app.yaml"), "--profile", "piper"]
        try:
            run_compose(project, env, "build", "app", "edge")
            run_compose(project, env, "up", "-d", timeout_s=300)
            edge = "https://%s:%d/" % (SERVER_NAME, https_port)
            direct = "http://%s:%d/" % (SERVER_NAME, app_port)
            wait_ready(edge, 180)
            through_edge: List[float] = []
            straight: List[float] = []
            with httpx.Client(timeout=120, verify=False, auth=LOGIN) as via_edge, httpx.Client(timeout=120, auth=LOGIN) as to_app:
                for client, url in ((via_edge, edge), (to_app, direct)):
                    for _ in range(3):
                        timed(client, url)
                for round_number in range(args.repeats):
                    order = [(via_edge, edge, through_edge), (to_app, direct, straight)]
                    for client, url, into in (order if round_number % 2 == 0 else order[::-1]):
                        into.append(timed(client, url))
        finally:
            subprocess.run([*project, "down", "--volumes", "--remove-orphans", "--timeout", "10"], cwd=str(ROOT), env=env,
                           capture_output=True, timeout=180)
    differences = [a - b for a, b in zip(through_edge, straight, strict=True)]
    edge_ms, direct_ms = statistics.median(through_edge) * 1000, statistics.median(straight) * 1000
    delta_ms = statistics.median(differences) * 1000
    lines = [
        "# bench/edge_bench.py, %s, load average %.1f/%.1f/%.1f at start, %.1f/%.1f/%.1f at end"
        % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), *load_start, *os.getloadavg()),
        "warm Piper job (POST /v1/audio/speech, cache off, kept connections), %d rounds alternating" % args.repeats,
        "| path | median |", "|---|---|",
        "| straight to the app's port (baseline) | %.1f ms |" % direct_ms,
        "| through the nginx edge over TLS | %.1f ms |" % edge_ms,
        "paired difference (median): %+.2f ms; ratio of medians %.3f" % (delta_ms, edge_ms / direct_ms),
        "target (the edge adds < 5 ms): %s" % ("met" if delta_ms < 5.0 else "not met in this run"),
    ]
    text = "\n".join(lines)
    print(text)
    (Path(__file__).parent / "results" / "edge_bench-cpu.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
