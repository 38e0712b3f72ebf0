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
