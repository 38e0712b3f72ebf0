"""What a stranger on a shared link would try, through the real app (gradio_client, raw HTTP, a real socket):
file paths in settings, unauthenticated uploads, previews past the limits, other people's shared settings,
foreign Host names and other sites' pages, guessed passwords, and someone else's cached result (issue 17)."""

from __future__ import annotations

import base64
import socket
import sqlite3
import time
from pathlib import Path
from typing import Iterator, List, Set, Tuple

import httpx
import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.conftest import AppServer, start_app, wait_until

ADMIN = ("admin", "operator-pw")
GUEST = ("guest", "guest-pw")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    app = start_app(tmp_path_factory.mktemp("data"), extra_env={
        "VOICEGEN_AUTH": "%s:%s,%s:%s" % (ADMIN + GUEST), "VOICEGEN_ADMINS": "admin", "VOICEGEN_MAX_INPUT_S": "5",
        "VOICEGEN_MAX_UPLOAD_MB": "1", "VOICEGEN_FAILED_LOGIN_LIMIT": "3", "VOICEGEN_FAILED_LOGIN_WINDOW_S": "30",
        "VOICEGEN_TRUSTED_HOSTS": "voices.example:8443"})
    yield app
    app.stop()


@pytest.fixture(scope="module")
def guest(server: AppServer) -> Client:
    return Client(server.url, auth=GUEST, verbose=False)


@pytest.fixture(scope="module")
def admin(server: AppServer) -> Client:
    return Client(server.url, auth=ADMIN, verbose=False)


def tone(path: Path, seconds: float) -> Path:
    t = np.arange(int(16000 * seconds)) / 16000.0
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return path


def basic(credentials: Tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(("%s:%s" % credentials).encode()).decode()


def raw_request(server: AppServer, head: str, body_start: bytes) -> str:
    """Send a request's head and only the start of its body; the status line the server answers with (the rest of
    the body is never sent)."""
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body_start)
        try:
            answer = sock.recv(4096).decode("latin-1")
        except TimeoutError:
            return "no answer in 10 s"
    return answer.split("\r\n", 1)[0]


def test_another_take_never_reads_a_file_the_caller_names(guest: Client, tmp_path: Path) -> None:
    """Defect 1: /regenerate passed ``audio_path`` through, so the server converted (or copied and hashed) any file."""
    outside = tone(tmp_path / "outside-the-data-folder.wav", 1.0)
    job = guest.predict("praat", "higher", "", handle_file(str(tone(tmp_path / "mine.wav", 1.0))), api_name="/submit")
    spoken = guest.predict("piper", "joe", "Hello.", api_name="/submit")
    for job_id, path in ((job["job_id"], str(outside)), (spoken["job_id"], "/dev/zero"), (spoken["job_id"], "/no/such/file.wav")):
        with pytest.raises(AppError, match="'audio_path' cannot be edited: another take uses the job's own recording"):
            guest.predict(job_id, {"audio_path": path}, api_name="/regenerate")
    again = guest.predict(job["job_id"], {"options": {"pitch_range_factor": 0.5}}, api_name="/regenerate")  # a setting: fine
    assert wait_until(lambda: guest.predict(again["job_id"], api_name="/job")["state"] == "succeeded", 60)


def test_unauthenticated_and_oversized_bodies_are_refused_before_they_are_read(server: AppServer) -> None:
    """Defect 2: the routes parsed (and spooled to disk) the body before asking who sends it and how big it is."""
    huge = 200 << 20
    for path, kind in (("/v1/audio/conversion", "multipart/form-data; boundary=x"), ("/v1/audio/speech", "application/json")):
        head = "POST %s HTTP/1.1\nHost: 127.0.0.1\nContent-Type: %s\nContent-Length: %d\n" % (path, kind, huge)
        status = raw_request(server, head, b"--x\r\n" + b"a" * 1000)
        assert status.startswith("HTTP/1.1 401"), (path, status)
        status = raw_request(server, head.replace("Host:", "Authorization: %s\nHost:" % basic(GUEST)), b"--x\r\n")
        assert status.startswith("HTTP/1.1 413"), (path, status)
    # no length given: the bytes are counted as they stream, and the answer comes at the limit
    part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
    chunks = iter([part] + [b"b" * (64 << 10)] * 40)  # 2.5 MB, over the 1 MB limit, sent chunked (no length)
    answer = httpx.post(server.url + "v1/audio/conversion", content=chunks, auth=GUEST,
                        headers={"content-type": "multipart/form-data; boundary=x"}, timeout=30)
    assert answer.status_code == 413 and "1 MB" in answer.json()["error"]["message"]
    assert not any(server.data_dir.joinpath("tmp").rglob("upload*"))


def test_a_preview_is_held_to_the_same_input_limits(guest: Client, tmp_path: Path) -> None:
    """Defect 3: the preprocessing preview decoded a recording without the header checks."""
    long_file = tone(tmp_path / "long.wav", 6.0)
    with pytest.raises(AppError, match="the recording is 6 s long; this server takes up to 5 s"):
        guest.predict("praat", handle_file(str(long_file)), {}, api_name="/preview_preprocess")
    assert Path(guest.predict("praat", handle_file(str(tone(tmp_path / "short.wav", 1.0))), {}, api_name="/preview_preprocess")).exists()


def test_only_the_operator_changes_what_everyone_gets(guest: Client, admin: Client) -> None:
    """Defect 7: a guest saving a character's defaults or a preset changed every user's output."""
    with pytest.raises(AppError, match="for the server's operator"):
        guest.predict("piper", "joe", {"length_scale": 3.0}, api_name="/save_character_defaults")
    with pytest.raises(AppError, match="for the server's operator"):
        guest.predict("loud", {}, {"loudness_lufs": -10}, api_name="/save_preset")
    assert "saved" in admin.predict("house", {}, {"loudness_lufs": -16}, api_name="/save_preset")
    assert guest.predict("house", api_name="/load_preset")["postprocess"]["loudness_lufs"] == -16  # shared, readable


def test_identical_requests_of_two_people_each_get_their_own_file(guest: Client, admin: Client) -> None:
    """Defect 11: the second person got the first's file (named by the first's job id) and 'cached: true'."""
    words = "Two people, the same words at %f." % time.time()
    first, first_info = guest.predict("piper", "joe", words, api_name="/generate")
    second, second_info = admin.predict("piper", "joe", words, api_name="/generate")
    assert second_info["job_id"] in Path(second).name and first_info["job_id"] not in Path(second).name
    assert not second_info["cached"]  # nothing says that someone else asked the same
    assert "generate_s" in second_info["timings_s"]  # nor an instant answer's timings: the take's own, as it was made
    assert Path(second).read_bytes() == Path(first).read_bytes()
    mine_again, again_info = guest.predict("piper", "joe", words, api_name="/generate")
    assert again_info["cached"] and again_info["job_id"] in Path(mine_again).name


def test_foreign_hosts_and_other_sites_are_refused(server: AppServer) -> None:
    """Defect 9: neither Host nor Origin was checked, so a page on another site (or DNS rebinding) reached the app."""
    speech = server.url + "v1/audio/speech"
    body = {"model": "piper", "input": "Hi."}
    assert httpx.get(server.url + "v1/models", auth=GUEST, headers={"host": "rebound.example"}).status_code == 421
    other_site = httpx.post(speech, json=body, auth=GUEST, headers={"origin": "http://evil.example"})
    assert other_site.status_code == 403 and "another site" in other_site.json()["error"]["message"]
    same_site = httpx.post(speech, json=body, auth=GUEST, headers={"origin": server.url.rstrip("/")})
    assert same_site.status_code == 200
    gradio_post = httpx.post(server.url + "gradio_api/queue/join", json={}, headers={"origin": "http://evil.example"})
    assert gradio_post.status_code == 403
    for hidden in ({"origin": "null"}, {"sec-fetch-site": "cross-site"}):  # a sandboxed frame, a browser's own word
        assert httpx.post(speech, json=body, auth=GUEST, headers=hidden).status_code == 403, hidden
    # behind a proxy that rewrites Host, the page's own origin is a name the operator trusts
    proxied = httpx.post(speech, json=body, auth=GUEST, headers={"origin": "https://voices.example:8443"})
    assert proxied.status_code == 200


def test_guessed_passwords_are_throttled_per_address(server: AppServer) -> None:
    """Defect 9: failed logins (Basic, Bearer, Gradio's form) were never slowed down."""
    url = server.url + "v1/models"
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as stranger:
        for password in ("a", "b", "c"):
            assert stranger.get(url, auth=("admin", password)).status_code == 401
        blocked = stranger.get(url, auth=ADMIN)  # even the right password, from this address, for a while
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert stranger.post(server.url + "login", data={"username": "admin", "password": "x"}).status_code == 429
    assert httpx.get(url, auth=GUEST).status_code == 200  # another address is not affected


def test_http_clients_are_one_client_per_login(server: AppServer) -> None:
    """Defect 8: each HTTP request was a new owner, sorted ahead of everyone who had asked before."""
    ids = [httpx.post(server.url + "v1/audio/speech", json={"model": "piper", "input": "Turn %d." % index, "cache": False},
                      auth=GUEST, timeout=60).headers["x-job-id"] for index in range(2)]
    assert job_clients(server, ids) == {"user:guest"}


def job_clients(server: AppServer, job_ids: List[str]) -> Set[str]:
    with sqlite3.connect(server.data_dir / "jobs.sqlite3") as db:
        return {row[0] for row in db.execute("select client from jobs where id in (%s)" % ",".join("?" * len(job_ids)), job_ids)}
