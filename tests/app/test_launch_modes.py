"""Serving modes a person picks on the command line: share (offline here) and auth."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from tests.conftest import start_app


def test_share_offline_says_so_in_one_line_and_keeps_serving(tmp_path: Path) -> None:
    server = start_app(tmp_path / "data", ["--share"])
    try:
        log = "\n".join(server.log)
        assert "anyone with the link can use this machine" in log
        made = [line for line in server.log if line.startswith("Share link: https://")]
        failed = [line for line in server.log if line.startswith("Share link could not be made")]
        assert len(made) + len(failed) == 1
        assert "Please check your internet connection" not in log  # gradio's many-line explanation is not shown
        assert Client(server.url, verbose=False).predict(api_name="/list_architectures")
    finally:
        server.stop()


def test_auth_guards_the_app(tmp_path: Path) -> None:
    server = start_app(tmp_path / "data", ["--auth", "ana:s3cret"])
    try:
        assert not any("anyone with the link" in line for line in server.log)
        assert httpx.get(server.url + "config", timeout=10).status_code == 401
        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises a bare ValueError/HTTPError here
            Client(server.url, verbose=False, auth=("ana", "wrong"))
        client = Client(server.url, verbose=False, auth=("ana", "s3cret"))
        assert client.predict("piper", api_name="/list_characters")[0]["id"] == "joe"
        speech = server.url + "v1/audio/speech"
        assert httpx.post(speech, json={"input": "Hi."}, timeout=30).status_code == 401
        assert httpx.post(speech, json={"input": "Hi."}, auth=("ana", "wrong"), timeout=30).status_code == 401
        assert httpx.post(speech, json={"input": "Hi."}, auth=("ana", "s3cret"), timeout=60).status_code == 200
    finally:
        server.stop()


def test_configured_prewarm_and_pins(tmp_path: Path) -> None:
    server = start_app(tmp_path / "data", extra_env={"VOICEGEN_PREWARM": "fake:slow-load", "VOICEGEN_PINNED": "fake:slow-load"})
    try:
        rows = Client(server.url, verbose=False).predict(api_name="/runtime_status")
        assert [(r["architecture"], r["character"], r["state"], r["pinned"]) for r in rows] == [("fake", "slow-load", "ready", True)]
        assert rows[0]["keep_alive_left_s"] is None  # pinned: never evicted
    finally:
        server.stop()


def test_the_address_answers_while_the_app_loads(tmp_path: Path) -> None:
    """Importing Gradio takes seconds: meanwhile the address answers with a page that opens the app when it is up."""
    import subprocess
    import sys
    import time

    from tests.conftest import PROJECT_ROOT, TEST_SPECS, built_envs_dir, free_port

    port = free_port()
    env = dict(__import__("os").environ, VOICEGEN_ENVS_DIR=str(built_envs_dir()), VOICEGEN_EXTRA_SPEC_DIRS=str(TEST_SPECS),
               VOICEGEN_PREWARM="")
    process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--no-browser", "--port", str(port), "--data-dir",
                                str(tmp_path / "data")], cwd=str(PROJECT_ROOT), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d/" % port
    answers = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(url, timeout=5)
                answers.append((answer.status_code, "voicegen-starting" in answer.text))
                if answer.status_code == 200:
                    break
            except httpx.TransportError:
                pass  # not bound yet, or the app taking the port over
            time.sleep(0.05)
        assert answers[0] == (503, True), answers[:3]  # the starting page came first (Retry-After for scripts)
        assert answers[-1] == (200, False)  # then the app itself, on the same address
        assert Client(url, verbose=False).predict(api_name="/list_architectures")
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_the_starting_page_answers_every_method_with_503_and_retry_after(method: str) -> None:
    """Scripts that ask before the app is up get 503 + Retry-After, whatever the method (http.server said 501 to a POST)."""
    from app.starting_page import MARKER, StartingPage
    from tests.conftest import free_port

    page = StartingPage("127.0.0.1", free_port())
    assert page.start()
    try:
        body = b'{"input": "' + b"x" * 300_000 + b'"}'  # larger than a socket buffer: read, not reset
        answer = httpx.request(method, "http://127.0.0.1:%d/v1/audio/speech" % page.port, content=body, timeout=10)
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "1"
        assert (MARKER in answer.text) == (method != "HEAD")
    finally:
        page.stop()


def test_the_app_takes_its_address_only_once_requests_run_at_warm_speed(tmp_path: Path) -> None:
    """"Ready" means warm: until the pipeline's first run, the prewarmed worker and Gradio's first-event import are behind
    it, the starting page keeps the address (503 + Retry-After to every method); from the first moment the app answers,
    /v1 is there.
    Before, the app served while the pipeline's warm-up (7.7 s of numba compilation) still ran, so the first speech
    request paid for it, and /v1/audio/speech answered 404 until its routes were added after the launch."""
    import os
    import subprocess
    import sys
    import time

    from tests.conftest import PROJECT_ROOT, TEST_SPECS, built_envs_dir, free_port

    port = free_port()
    env = dict(os.environ, VOICEGEN_ENVS_DIR=str(built_envs_dir()), VOICEGEN_EXTRA_SPEC_DIRS=str(TEST_SPECS))
    process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--no-browser", "--port", str(port), "--data-dir",
                                str(tmp_path / "data")], cwd=str(PROJECT_ROOT), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d/" % port
    early = []  # what answered before the app: only the starting page
    readiness, speech = None, None
    try:
        deadline = time.monotonic() + 180
        while (readiness is None or speech is None) and time.monotonic() < deadline:
            for method, path, body in (("GET", "readyz", None), ("POST", "v1/audio/speech", {"input": "Hi.", "cache": False})):
                try:
                    answer = httpx.request(method, url + path, json=body, timeout=60)
                except httpx.TransportError:
                    continue  # not bound yet, or the app taking the address over
                if "voicegen-starting" in answer.text:
                    early.append((method, answer.status_code, answer.headers.get("Retry-After")))
                elif path == "readyz":
                    readiness = readiness or answer
                else:
                    speech = speech or answer
            time.sleep(0.05)
        assert early and set(early) <= {("GET", 503, "1"), ("POST", 503, "1")}, early
        assert readiness is not None and speech is not None
        assert readiness.status_code == 200, readiness.text
        warm = readiness.json()  # the first answer the app gave
        assert warm["ready"] and warm["pipeline_warm"] and warm["workers_prewarmed"] and warm["gradio_events_warm"], warm
        assert speech.status_code == 200 and speech.headers["content-type"] == "audio/wav", speech.text
    finally:
        process.terminate()
        process.wait(30)
