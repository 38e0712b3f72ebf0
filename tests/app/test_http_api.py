"""The plain HTTP speech route (OpenAI-style), called with a real HTTP client."""

from __future__ import annotations

import io

import httpx
import numpy as np
import soundfile

from tests.conftest import AppServer


def test_speech_route_returns_audio_bytes(app_server: AppServer) -> None:
    response = httpx.post(app_server.url + "v1/audio/speech", json={"input": "Hello over plain HTTP.", "voice": "joe"}, timeout=60)
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    audio, rate = soundfile.read(io.BytesIO(response.content))
    assert rate == 22050 and audio.size > 0.5 * rate and float(np.sqrt(np.mean(audio**2))) > 0.02
    slow = httpx.post(app_server.url + "v1/audio/speech",
                      json={"input": "Hello over plain HTTP.", "speed": 0.5, "response_format": "flac", "cache": False}, timeout=60)
    assert slow.headers["content-type"] == "audio/flac"
    slow_audio, _ = soundfile.read(io.BytesIO(slow.content))
    assert slow_audio.size > 1.4 * audio.size  # speed 0.5 = twice the length scale (phoneme lengths vary with noise_w)


def test_speech_route_errors_are_json(app_server: AppServer) -> None:
    bad = httpx.post(app_server.url + "v1/audio/speech", json={"input": "", "model": "piper"}, timeout=30)
    assert bad.status_code == 400 and "needs text" in bad.json()["error"]["message"]
    unknown = httpx.post(app_server.url + "v1/audio/speech", json={"input": "hi", "model": "nope"}, timeout=30)
    assert unknown.status_code == 400 and "unknown architecture 'nope'" in unknown.json()["error"]["message"]
    invalid = httpx.post(app_server.url + "v1/audio/speech", json={"input": "hi", "speed": 9}, timeout=30)
    assert invalid.status_code == 422
    models = httpx.get(app_server.url + "v1/models", timeout=30).json()
    assert {m["id"] for m in models["data"]} >= {"piper", "fake"}
