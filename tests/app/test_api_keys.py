"""API keys for programs (issue 21, access for programs): made and revoked by the operator from the command line,
stored hashed, each an owner for history; the HTTP routes take them as ``Bearer``; and a public bind with neither
logins nor keys is refused unless the operator says ``--insecure-public``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Tuple

import httpx
import pytest

from app.api_keys import ApiKeyError, ApiKeyStore
from tests.conftest import PROJECT_ROOT, AppServer, start_app


def keys_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", "keys", *args, "--data-dir", str(data_dir)], cwd=str(PROJECT_ROOT),
                          capture_output=True, text=True, timeout=60, check=False)


def created(data_dir: Path, owner: str) -> Tuple[str, str]:
    """(key id, token) made through the command line, as an operator does."""
    out = keys_cli(data_dir, "create", "--owner", owner)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip().splitlines()[-1]
    return token.split("_")[1], token


def test_the_store_keeps_only_hashes_and_revoked_or_forged_keys_prove_nothing(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path)
    entry, token = store.create("alice")
    assert store.owner_of(token) == "alice" and store.any_active()
    text = store.path.read_text()
    assert token not in text and token.split("_", 2)[2] not in text and entry.sha256 in text  # the secret may hold "_"
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert store.owner_of(forged) is None and store.owner_of("vgk_nothing") is None and store.owner_of("") is None
    other = ApiKeyStore(tmp_path)  # the command line, beside a running app
    other.revoke(entry.id)
    assert store.owner_of(token) is None and not store.any_active()  # the app's store sees the file change
    assert json.loads(store.path.read_text())[0]["revoked_at"] is not None
    with pytest.raises(ApiKeyError, match="an owner is"):
        store.create("../../etc")
    with pytest.raises(ApiKeyError, match="no API key 'nope'"):
        store.revoke("nope")


def test_the_command_line_creates_lists_and_revokes(tmp_path: Path) -> None:
    key_id, token = created(tmp_path, "alice")
    assert token.startswith("vgk_%s_" % key_id)
    listed = keys_cli(tmp_path, "list").stdout
    assert key_id in listed and "alice" in listed and "active" in listed and token not in listed
    assert "revoked" in keys_cli(tmp_path, "revoke", key_id).stdout
    assert "revoked" in keys_cli(tmp_path, "list").stdout
    refused = keys_cli(tmp_path, "create")
    assert refused.returncode == 2 and "needs --owner" in refused.stderr


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[AppServer, str, str, str]]:
    data = tmp_path_factory.mktemp("keyed-data")
    alice_id, alice = created(data, "alice")
    _, bob = created(data, "bob")
    server = start_app(data, extra_env={"VOICEGEN_PREWARM": ""})
    yield server, alice_id, alice, bob
    server.stop()


def speech(server: AppServer, token: str = "") -> httpx.Response:
    headers = {"Authorization": "Bearer %s" % token} if token else {}
    return httpx.post(server.url + "v1/audio/speech", json={"model": "piper", "voice": "joe", "input": "Hello with a key.",
                                                            "response_format": "wav", "stream": False},
                      headers=headers, timeout=120)


def test_the_http_routes_take_a_key_as_its_owner(keyed: Tuple[AppServer, str, str, str]) -> None:
    server, _, alice, bob = keyed
    refused = speech(server)
    assert refused.status_code == 401 and "API key" in refused.json()["error"]["message"]
    assert speech(server, alice[:-2] + "xx").status_code == 401
    answer = speech(server, alice)
    assert answer.status_code == 200 and answer.content[:4] == b"RIFF"
    job = answer.headers["X-Job-Id"]
    mine = httpx.get(server.url + "v1/jobs/" + job, headers={"Authorization": "Bearer " + alice}, timeout=30)
    assert mine.status_code == 200 and mine.json()["state"] == "succeeded"
    assert httpx.get(server.url + "v1/jobs/" + job, headers={"Authorization": "Bearer " + bob}, timeout=30).status_code == 404


def test_a_key_revoked_from_the_command_line_stops_at_once(keyed: Tuple[AppServer, str, str, str]) -> None:
    server, alice_id, alice, bob = keyed
    assert keys_cli(server.data_dir, "revoke", alice_id).returncode == 0
    assert speech(server, alice).status_code == 401
    assert speech(server, bob).status_code == 200  # the others' keys still work


def test_a_public_bind_without_logins_or_keys_is_refused_with_the_reason(tmp_path: Path) -> None:
    env = dict(os.environ, VOICEGEN_PREWARM="", PYTHONUNBUFFERED="1")
    out = subprocess.run([sys.executable, "-m", "app", "serve", "--no-browser", "--host", "0.0.0.0", "--port", "0",
                          "--data-dir", str(tmp_path / "data")], cwd=str(PROJECT_ROOT), env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode != 0
    assert "refusing to serve on 0.0.0.0 with neither logins nor API keys" in out.stderr + out.stdout
    assert "--insecure-public" in out.stderr + out.stdout


def test_insecure_public_serves_and_says_what_it_means(tmp_path: Path) -> None:
    app = start_app(tmp_path / "data", extra_args=["--host", "0.0.0.0", "--insecure-public"], extra_env={"VOICEGEN_PREWARM": ""})
    try:
        assert any("WARNING: serving on 0.0.0.0 with neither logins nor API keys" in line for line in app.log)
    finally:
        app.stop()


def test_a_public_bind_with_keys_only_serves_and_asks_programs_for_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created(data, "robot")
    app = start_app(data, extra_args=["--host", "0.0.0.0"], extra_env={"VOICEGEN_PREWARM": ""})
    try:
        assert any("with API keys and no logins" in line for line in app.log)
        assert speech(app).status_code == 401
    finally:
        app.stop()


def test_the_operator_manages_keys_through_gradio_client_and_the_runtimes_tab(tmp_path: Path) -> None:
    """Locally the one person is the operator: create, list, use over HTTP, revoke; the UI shows the keys."""
    from gradio_client import Client
    from playwright.sync_api import expect

    from tests.app.test_browser import browser_page

    app = start_app(tmp_path / "data", extra_env={"VOICEGEN_PREWARM": ""})
    try:
        client = Client(app.url, verbose=False)
        made = client.predict("ci-robot", api_name="/create_api_key")
        assert made["owner"] == "ci-robot" and made["key"].startswith("vgk_%s_" % made["id"])
        assert [row["id"] for row in client.predict(api_name="/api_keys")] == [made["id"]]
        assert "key" not in client.predict(api_name="/api_keys")[0]
        assert speech(app, made["key"]).status_code == 200 and speech(app).status_code == 401  # a key now guards the routes
        with pytest.raises(Exception, match="an owner is"):
            client.predict("../x", api_name="/create_api_key")
        with browser_page(app.url) as page:
            page.get_by_role("tab", name="Runtimes").click()
            page.get_by_text("API keys for programs").click()
            expect(page.get_by_text("ci-robot").filter(visible=True).first).to_be_visible(timeout=15_000)
        assert "revoked" in client.predict(made["id"], api_name="/revoke_api_key")
        assert speech(app, made["key"]).status_code == 200  # no active key left: local use needs none again
    finally:
        app.stop()


def test_a_burst_over_the_rate_limit_gets_429s_and_others_are_still_served(tmp_path: Path) -> None:
    """Per caller and per address, in the app itself (the edge is not always there); on a shared server."""
    data = tmp_path / "data"
    _, greedy = created(data, "greedy")
    _, patient = created(data, "patient")
    app = start_app(data, extra_args=["--host", "0.0.0.0"],
                    extra_env={"VOICEGEN_PREWARM": "", "VOICEGEN_RATE_LIMIT_PER_MIN": "600", "VOICEGEN_RATE_LIMIT_BURST": "5"})
    try:
        with httpx.Client(timeout=30) as client:
            answers = [client.get(app.url + "v1/models", headers={"Authorization": "Bearer " + greedy}) for _ in range(12)]
        codes = [answer.status_code for answer in answers]
        assert codes[:5] == [200] * 5 and 429 in codes[5:]
        refused = next(answer for answer in answers if answer.status_code == 429)
        assert int(refused.headers["retry-after"]) >= 1 and "too many requests" in refused.json()["error"]["message"]
        time.sleep(1.0)  # 600 a minute: the address's bucket has a token again (the address is shared by both here)
        assert httpx.get(app.url + "v1/models", headers={"Authorization": "Bearer " + patient}, timeout=30).status_code == 200
        metrics = httpx.get(app.url + "metrics", timeout=30)  # restricted without logins: nobody is the operator
        assert metrics.status_code == 401
    finally:
        app.stop()
