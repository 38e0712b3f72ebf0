"""A shared server's limits, each hit through gradio_client and the HTTP route with a clear error and the
app still serving: output length (text, silences, speed), uploads (size, duration and channels from the
header), output rate; outputs bounded on disk; a cache hit makes no second copy."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app.actions import prune_outputs
from tests.conftest import AppServer, start_app


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    app = start_app(tmp_path_factory.mktemp("data"), extra_env={
        "VOICEGEN_MAX_OUTPUT_S": "30", "VOICEGEN_MAX_INPUT_S": "5", "VOICEGEN_MAX_INPUT_CHANNELS": "2",
        "VOICEGEN_MAX_UPLOAD_MB": "1", "VOICEGEN_MAX_OUTPUT_RATE_HZ": "96000"})
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(server: AppServer) -> Client:
    return Client(server.url, verbose=False)


def generate(client: Client, *args: object) -> object:
    return client.predict(*args, api_name="/generate")


def still_serving(client: Client) -> None:
    path, info = client.predict("piper", "joe", "Still here.", None, {}, "wav", {}, {}, False, None, api_name="/generate")
    assert Path(path).exists() and info["duration_s"] > 0.2


def test_output_length_is_capped_before_generating(client: Client, server: AppServer) -> None:
    hello = "Hello. " * 700
    started = time.monotonic()
    with pytest.raises(AppError, match="the result would be about .* min long; this server's limit is 30 s"):
        generate(client, "piper", "joe", hello, None, {"sentence_silence_s": 5.0}, "wav", {}, {}, False, None)
    assert time.monotonic() - started < 10  # refused, not generated
    with pytest.raises(AppError, match="limit is 30 s"):
        generate(client, "piper", "joe", "A sentence of ordinary length that is spoken slowly. " * 6, None, {}, "wav", {},
                 {"speed": 0.25}, False, None)
    response = httpx.post(server.url + "v1/audio/speech", json={"model": "piper", "input": hello}, timeout=60)
    assert response.status_code == 400 and "this server's limit is 30 s" in response.json()["error"]["message"]
    with pytest.raises(AppError, match="384000 Hz is above this server's limit of 96000 Hz"):
        generate(client, "piper", "joe", "Hi.", None, {}, "wav", {}, {"sample_rate_hz": 384000}, False, None)
    still_serving(client)


def test_uploads_are_checked_on_their_header(client: Client, tmp_path: Path) -> None:
    rate = 16000
    long_file = tmp_path / "long.wav"
    soundfile.write(str(long_file), np.zeros(rate * 6, dtype=np.int16), rate)  # 6 s, 190 KB
    with pytest.raises(AppError, match="the recording is 6 s long; this server takes up to 5 s"):
        generate(client, "praat", "higher", "", handle_file(str(long_file)), {}, "wav", {}, {}, False, None)
    wide = tmp_path / "wide.wav"
    soundfile.write(str(wide), np.zeros((rate, 4), dtype=np.int16), rate)
    with pytest.raises(AppError, match="4 channels; up to 2 are taken"):
        generate(client, "praat", "higher", "", handle_file(str(wide)), {}, "wav", {}, {}, False, None)
    big = tmp_path / "big.wav"
    noise = (np.random.default_rng(0).standard_normal((48000 * 4, 2)) * 1000).astype(np.int32)  # 4 s, 1.5 MB
    soundfile.write(str(big), noise, 48000, subtype="PCM_32")
    assert big.stat().st_size > 1 << 20
    with pytest.raises(Exception, match="(?i)file.*(large|size)|exceed"):
        generate(client, "praat", "higher", "", handle_file(str(big)), {}, "wav", {}, {}, False, None)
    still_serving(client)


def test_a_cache_hit_writes_no_second_copy(client: Client, server: AppServer) -> None:
    first, _ = client.predict("piper", "joe", "Say it once.", None, {}, "wav", {}, {}, True, None, api_name="/generate")
    assert Path(first).exists()
    count = sum(1 for p in (server.data_dir / "outputs").rglob("*") if p.is_file())
    second, info = client.predict("piper", "joe", "Say it once.", None, {}, "wav", {}, {}, True, None, api_name="/generate")
    assert info["cached"] and Path(second).read_bytes() == Path(first).read_bytes()
    assert sum(1 for p in (server.data_dir / "outputs").rglob("*") if p.is_file()) == count


def test_retention_removes_the_oldest_and_never_a_fresh_one(tmp_path: Path) -> None:
    day = tmp_path / "2026-11-26"
    day.mkdir()
    now = time.time()
    for index in range(6):
        path = day / ("out-%d.wav" % index)
        path.write_bytes(b"x" * 1000)
        os.utime(path, (now - 3600 * (index + 1), now - 3600 * (index + 1)))  # out-0 newest
    fresh = tmp_path / "2026-11-27" / "being-served.wav"
    fresh.parent.mkdir()
    fresh.write_bytes(b"x" * 10_000)
    removed = prune_outputs(tmp_path, keep=3, max_bytes=1 << 20, max_age_s=5 * 3600)
    left = sorted(p.name for p in tmp_path.rglob("*.wav"))
    assert left == ["being-served.wav", "out-0.wav", "out-1.wav"] and removed == 4
    prune_outputs(tmp_path, keep=0, max_bytes=0, max_age_s=0)
    assert fresh.exists()  # made in the last two minutes: never removed


def test_loudness_targets_are_reached_on_piper_speech(client: Client) -> None:
    import pyloudnorm

    from pipeline.stages import true_peak

    text = "Loudness targets are met with the peaks held under the ceiling. This is the usual podcast level."
    for target in (-14.0, -16.0, -23.0, -30.0):
        path, info = client.predict("piper", "joe", text, None, {}, "wav", {}, {"loudness_lufs": target, "true_peak_db": -1.0},
                                    False, None, api_name="/generate")
        audio, rate = soundfile.read(path, dtype="float32")
        measured = pyloudnorm.Meter(rate).integrated_loudness(audio.astype(np.float64))
        assert abs(measured - target) <= 0.5, (target, measured)
        assert true_peak(audio, rate) <= 10 ** (-1.0 / 20) * 1.01  # 16-bit rounding
        assert abs(info["loudness"]["reached_lufs"] - target) <= 0.5 and "why" not in info["loudness"]


def test_a_characters_saved_defaults_fill_what_a_request_leaves_out(client: Client) -> None:
    assert client.predict("piper", "joe", api_name="/character_defaults") == {}
    message = client.predict("piper", "joe", {"length_scale": 2.0, "noise_w": 0.8}, api_name="/save_character_defaults")
    assert message == "saved 1 option(s) as piper / joe's defaults"  # only what differs from the architecture's
    assert client.predict("piper", "joe", api_name="/character_defaults") == {"length_scale": 2.0}
    text = "The same words, at the character's own pace."
    slow, _ = client.predict("piper", "joe", text, None, {}, "wav", {}, {"trim_silence": False}, False, None, api_name="/generate")
    normal, _ = client.predict("piper", "joe", text, None, {"length_scale": 1.0}, "wav", {}, {"trim_silence": False}, False, None,
                               api_name="/generate")
    assert soundfile.info(slow).duration > 1.4 * soundfile.info(normal).duration
    with pytest.raises(AppError, match="'length_scale' must be at most 4"):
        client.predict("piper", "joe", {"length_scale": 9}, api_name="/save_character_defaults")
    with pytest.raises(AppError, match="unknown character 'nobody'"):
        client.predict("piper", "nobody", api_name="/character_defaults")
    client.predict("piper", "joe", {}, api_name="/save_character_defaults")
