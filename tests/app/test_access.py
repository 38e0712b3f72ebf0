"""Who may use and who may operate a shared app: logins from the environment, passwords compared as
bytes (non-ASCII included), runtime controls and model management for admins only, a short status
for everyone else, and no credential in a worker's environment."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from app.access import ConfigurationError, load_access
from tests.conftest import AppServer, start_app

ADMIN = ("admin", "sécret-pässword")
GUEST = ("guest", "guest-pw")


def test_passwords_compare_as_bytes_and_admins_need_logins(tmp_path: Path) -> None:
    access = load_access("admin:sécret", None, "admin", share=False, host="127.0.0.1")
    assert access.check("admin", "sécret") and not access.check("admin", "secret") and not access.check("nobody", "sécret")
    assert access.restricted and access.is_admin("admin") and not access.is_admin("guest")
    assert load_access(None, None, "", share=False, host="127.0.0.1").is_admin(None)  # one person on their own machine
    assert not load_access(None, None, "", share=False, host="0.0.0.0", insecure_public=True).is_admin(None)
    with pytest.raises(ConfigurationError, match="admins root have no credentials"):
        load_access("admin:x", None, "root", share=False, host="127.0.0.1")
    logins = tmp_path / "logins"
    logins.write_text("# operators\nadmin:from-file\n\nguest:g\n")
    assert load_access(None, logins, "admin", share=True, host="127.0.0.1").check("admin", "from-file")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    app = start_app(tmp_path_factory.mktemp("data"), extra_env={
        "VOICEGEN_AUTH": "%s:%s,%s:%s" % (ADMIN + GUEST), "VOICEGEN_ADMINS": "admin", "VOICEGEN_PREWARM": "default"})
    yield app
    app.stop()


def test_http_credentials_non_ascii_and_wrong_are_401_not_500(server: AppServer) -> None:
    url = server.url + "v1/models"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": b"Basic \xc3\xa9\xff"}).status_code == 401  # not base64, not ASCII
    raw = base64.b64encode("admin:wrong-ü".encode())
    assert httpx.get(url, headers={"Authorization": b"Basic " + raw}).status_code == 401
    assert httpx.get(url, auth=GUEST).status_code == 200
    assert httpx.get(url, headers={"Authorization": ("Bearer %s:%s" % ADMIN).encode()}).status_code == 200  # OpenAI-style key


def test_only_admins_operate_and_see_the_full_status(server: AppServer) -> None:
    guest = Client(server.url, auth=GUEST, verbose=False)
    admin = Client(server.url, auth=ADMIN, verbose=False)  # a non-ASCII password through Gradio's login
    speech, _ = guest.predict("piper", "joe", "Anyone may speak.", None, {}, "wav", {}, {}, False, None, api_name="/generate")
    assert Path(speech).exists()
    for call in (lambda: guest.predict("piper", "joe", True, api_name="/pin"),
                 lambda: guest.predict("piper-cpu", api_name="/stop_worker"),
                 lambda: guest.predict("piper", "joe", 10, api_name="/set_keep_alive"),
                 lambda: guest.predict("rvc/Cozy Glow", api_name="/download_model"),
                 lambda: guest.predict("rvc/anything", api_name="/delete_model")):
        with pytest.raises(AppError, match="for the server's operator"):
            call()
    [short] = guest.predict(api_name="/runtime_status")
    assert set(short) == {"architecture", "characters", "state", "jobs_in_line"} and short["characters"] == ["joe"]
    [full] = [row for row in admin.predict(api_name="/runtime_status") if row["pid"]]
    assert full["pid"] and "log_tail" in full
    assert admin.predict("piper", "joe", True, api_name="/pin") and admin.predict("piper", "joe", False, api_name="/pin")
    environ = Path("/proc/%d/environ" % full["pid"]).read_bytes()
    assert ADMIN[1].encode() not in environ and b"VOICEGEN_AUTH" not in environ  # model code never sees a login


def test_listening_beyond_this_machine_without_logins_warns(tmp_path: Path) -> None:
    """Only when the operator asked for it (--insecure-public; refused otherwise: tests/app/test_api_keys.py)."""
    app = start_app(tmp_path / "data", extra_args=["--host", "0.0.0.0", "--insecure-public"], extra_env={"VOICEGEN_PREWARM": ""})
    try:
        assert any("WARNING: serving on 0.0.0.0 with neither logins nor API keys" in line for line in app.log)
        assert any("no --admins named" in line for line in app.log)
    finally:
        app.stop()


def test_each_user_sees_only_their_own_history(server: AppServer) -> None:
    guest = Client(server.url, auth=GUEST, verbose=False)
    admin = Client(server.url, auth=ADMIN, verbose=False)
    _, mine = guest.predict("piper", "joe", "Guest words.", api_name="/generate")
    _, theirs = admin.predict("piper", "joe", "Admin words.", api_name="/generate")
    again = Client(server.url, auth=GUEST, verbose=False)  # the same user from another client: the same history
    assert mine["job_id"] in [row["job_id"] for row in again.predict(api_name="/history")]
    assert theirs["job_id"] not in [row["job_id"] for row in again.predict(api_name="/history")]
    with pytest.raises(AppError, match="no job"):
        guest.predict(theirs["job_id"], api_name="/history_item")
    url = server.url + "v1/jobs/"
    assert httpx.get(url + theirs["job_id"], auth=GUEST).status_code == 404
    assert httpx.get(url + mine["job_id"], auth=GUEST).json()["state"] == "succeeded"


def test_metrics_are_the_operators(server: AppServer) -> None:
    url = server.url + "metrics"
    assert httpx.get(url, timeout=30).status_code == 401
    assert httpx.get(url, auth=GUEST, timeout=30).status_code == 403
    answer = httpx.get(url, auth=ADMIN, timeout=30)
    assert answer.status_code == 200 and "voicegen_jobs_total" in answer.text
    assert httpx.get(server.url + "healthz", timeout=30).status_code == 200  # liveness needs no credentials
