"""Kokoro through the app started as the launcher starts it: the builtin Japanese voice as shipped on PyPI, through
gradio_client and the plain HTTP route (streamed), and a voice pack on the shared English model (a random one here)."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Iterator, Tuple

import httpx
import numpy as np
import pytest
import soundfile
from gradio_client import Client

from tests.conftest import AppServer, start_app
from tests.kokoro_fixtures import JAPANESE, assert_speech, kokoro_models, kokoro_python, kokoro_spec

__all__ = ["kokoro_models", "kokoro_python", "kokoro_spec"]  # fixtures this module uses by name

RATE = 24000
WAV_HEADER_BYTES = 44

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, kokoro_python: Path, kokoro_models: Path) -> Iterator[AppServer]:
    """The env built beforehand (the app would build it at the first job); the model manager's place for the shared
    model (linked: it is 220 MB) and one voice-pack character."""
    data_dir = tmp_path_factory.mktemp("data")
    (data_dir / "assets").mkdir()
    (data_dir / "assets" / "kokoro-82m").symlink_to(kokoro_models / "assets" / "kokoro-82m", target_is_directory=True)
    folder = data_dir / "characters" / "kokoro" / "af_tiny"
    folder.mkdir(parents=True)
    (folder / "af_tiny.pt").write_bytes((kokoro_models / "characters" / "af_tiny" / "af_tiny.pt").read_bytes())
    app = start_app(data_dir, extra_env={"VOICEGEN_PREWARM": ""})
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(server: AppServer) -> Client:
    return Client(server.url, verbose=False)


def wav_samples(data: bytes) -> Tuple[np.ndarray, int]:
    """A streamed wav: its header, then 16-bit samples."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and data[36:40] == b"data", "not a wav header"
    return np.frombuffer(data[WAV_HEADER_BYTES:], dtype="<i2").astype(np.float32) / 32768.0, struct.unpack("<I", data[24:28])[0]


def test_kokoro_and_its_characters_are_listed(client: Client) -> None:
    architectures = {a["id"]: a for a in client.predict(api_name="/list_architectures")}
    assert {o["name"] for o in architectures["kokoro"]["options"]} == {"speed", "sentence_silence_s", "language"}
    characters = {c["id"]: c for c in client.predict("kokoro", api_name="/list_characters")}
    assert characters["jf_alpha"]["builtin"] and characters["jf_alpha"]["usable"]
    assert characters["jf_alpha"]["label"] == "Japanese: Alpha (female, offline)"
    assert not characters["af_tiny"]["builtin"] and characters["af_tiny"]["usable"]
    assets = {(a["architecture"], a["asset"]): a for a in client.predict(api_name="/list_assets")}
    assert assets[("kokoro", "kokoro-82m")]["present"]


def test_the_builtin_japanese_voice_speaks_through_gradio(client: Client) -> None:
    path, info = client.predict("kokoro", "jf_alpha", JAPANESE, None, {}, "wav", {}, {}, False, api_name="/generate")
    audio, rate = soundfile.read(path, dtype="float32")
    assert rate == info["sample_rate"] == RATE
    assert 1.5 < audio.size / rate < 5.0
    assert_speech(audio, rate)


def test_the_http_route_streams_the_japanese_voice_and_speed_is_the_models_own(server: AppServer) -> None:
    body = {"model": "kokoro", "voice": "jf_alpha", "input": JAPANESE, "cache": False}
    chunks = []
    with httpx.stream("POST", server.url + "v1/audio/speech", json=body, timeout=180) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
        chunks = list(response.iter_bytes())
    audio, rate = wav_samples(b"".join(chunks))
    assert rate == RATE and len(chunks) >= 2  # a header and a piece per sentence (the server may merge some)
    assert_speech(audio, rate)
    fast = httpx.post(server.url + "v1/audio/speech", json=dict(body, speed=2.0, stream=False, response_format="flac"), timeout=180)
    assert fast.status_code == 200 and fast.headers["content-type"] == "audio/flac"
    fast_audio, fast_rate = soundfile.read(io.BytesIO(fast.content), dtype="float32")
    assert fast_rate == RATE and 0.35 * audio.size < fast_audio.size < 0.75 * audio.size, (fast_audio.size, audio.size)


def test_a_voice_pack_speaks_through_the_shared_english_model(client: Client) -> None:
    path, info = client.predict("kokoro", "af_tiny", "One short sentence.", None, {"speed": 1.5}, "wav", {}, {}, False,
                                api_name="/generate")
    audio, rate = soundfile.read(path, dtype="float32")
    assert rate == info["sample_rate"] == RATE and audio.size > 0.2 * RATE and np.isfinite(audio).all()
