"""What a remote person reads when something is wrong: the problem and what to do, never the server's
paths, library class names or tracebacks (a corpus of bad inputs through gradio_client and HTTP)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any, Callable, List, Tuple

import httpx
import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.conftest import AppServer

CLASS_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception)\b")


@pytest.fixture(scope="module")
def client(app_server: AppServer) -> Client:
    return Client(app_server.url, verbose=False)


def one_sample_wav(folder: Path) -> Path:
    path = folder / "one.wav"
    soundfile.write(str(path), np.zeros(1, dtype=np.float32), 44100)
    return path


def corpus(folder: Path) -> List[Tuple[str, Tuple[Any, ...], str]]:
    """(what, /generate arguments, what the message must say)."""
    garbage = folder / "song.wav"
    garbage.write_bytes(os.urandom(4096))
    return [
        ("garbage upload", ("praat", "higher", "", handle_file(str(garbage)), {}), "song.wav: not a readable audio file"),
        ("one-sample file", ("praat", "higher", "", handle_file(str(one_sample_wav(folder))), {}), "the recording is too short"),
        ("only control characters", ("piper", "joe", "\x00\x01\x07", None, {}), "needs text"),
        ("unknown character", ("piper", "../../etc/passwd", "hi", None, {}), "unknown character"),
        ("bad option type", ("piper", "joe", "hi", None, {"length_scale": "fast"}), "length_scale"),
        ("unknown architecture", ("../x", "joe", "hi", None, {}), "unknown architecture"),
    ]


def test_no_message_carries_a_path_a_class_name_or_a_traceback(client: Client, app_server: AppServer, tmp_path: Path) -> None:
    data_dir = str(app_server.data_dir)
    for what, args, expected in corpus(tmp_path):
        architecture, character, text, audio, options = args
        with pytest.raises(AppError) as caught:
            client.predict(architecture, character, text, audio, options, "wav", {}, {}, False, None, api_name="/generate")
        message = str(caught.value)
        assert expected in message, (what, message)
        assert data_dir not in message and "/tmp/" not in message and "Traceback" not in message, (what, message)
        assert not CLASS_NAME.search(message), (what, message)


def test_control_characters_in_text_are_removed_not_fatal(client: Client) -> None:
    path, info = client.predict("piper", "joe", "Hello\x00 there\x07.", None, {}, "wav", {}, {}, False, None, api_name="/generate")
    assert info["duration_s"] > 0.3 and Path(path).exists()


def test_the_http_route_is_as_honest(app_server: AppServer) -> None:
    checks: List[Callable[[], httpx.Response]] = [
        lambda: httpx.post(app_server.url + "v1/audio/speech", json={"model": "praat", "voice": "x", "input": "hi"}, timeout=60),
        lambda: httpx.post(app_server.url + "v1/audio/speech", json={"model": "piper", "voice": "nobody", "input": "hi"}, timeout=60),
    ]
    for check in checks:
        response = check()
        assert response.status_code == 400
        message = response.json()["error"]["message"]
        assert str(app_server.data_dir) not in message and "Traceback" not in message and not CLASS_NAME.search(message), message
    spoken = httpx.post(app_server.url + "v1/audio/speech", json={"model": "piper", "input": "Fine\x00 again."}, timeout=60)
    assert spoken.status_code == 200 and soundfile.read(io.BytesIO(spoken.content))[0].size > 0
