"""A shared server's limits, each hit through gradio_client and the HTTP route with a clear error and the
app still serving: output length (text, silences, speed), uploads (size, duration and channels from the
header), output rate; outputs bounded on disk; a cache hit makes no second copy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

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


def test_a_cache_hit_is_the_jobs_own_file_but_no_second_copy(client: Client, server: AppServer) -> None:
    first, first_info = client.predict("piper", "joe", "Say it once.", None, {}, "wav", {}, {}, True, None, api_name="/generate")
    second, info = client.predict("piper", "joe", "Say it once.", None, {}, "wav", {}, {}, True, None, api_name="/generate")
    assert info["cached"] and Path(second).read_bytes() == Path(first).read_bytes()
    [mine] = list((server.data_dir / "outputs").rglob("*%s*" % first_info["job_id"]))
    [again] = list((server.data_dir / "outputs").rglob("*%s*" % info["job_id"]))  # its own name, under its own job id
    assert again.stat().st_ino == mine.stat().st_ino and mine.stat().st_nlink == 2  # one stored copy
    client.predict(first_info["job_id"], api_name="/delete_history_item")
    assert not mine.exists() and again.is_file()  # deleting one person's job never takes another's file
    client.predict(info["job_id"], api_name="/delete_history_item")
    fresh, fresh_info = client.predict("piper", "joe", "Say it once.", None, {}, "wav", {}, {}, True, None, api_name="/generate")
    assert not fresh_info["cached"] and soundfile.info(fresh).duration > 0.3  # made again: no stored copy outlives its jobs


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


def test_the_estimate_reads_each_architectures_own_duration_option(client: Client, server: AppServer, tmp_path: Path) -> None:
    """The fake test architecture's manifest names its ``stretch`` as the option that scales the output's length:
    app/ refuses a 4 s recording stretched 10 times (40 s) before generating, with no line of app/ knowing the fake."""
    rate = 16000
    tone = tmp_path / "tone.wav"
    soundfile.write(str(tone), (0.3 * np.sin(2 * np.pi * 220 * np.arange(4 * rate) / rate)).astype(np.float32), rate)
    with pytest.raises(AppError, match="the result would be about 40 s long; this server's limit is 30 s"):
        generate(client, "fake", "plain", "", handle_file(str(tone)), {"stretch": 10.0}, "wav", {}, {}, False, None)
    response = httpx.post(server.url + "v1/audio/conversion", files={"file": ("tone.wav", tone.read_bytes(), "audio/wav")},
                          data={"model": "fake", "voice": "plain", "options": '{"stretch": 10}'}, timeout=60)
    assert response.status_code == 400 and "this server's limit is 30 s" in response.json()["error"]["message"]
    path, _ = generate(client, "fake", "plain", "", handle_file(str(tone)), {"stretch": 2.0}, "wav", {}, {"trim_silence": False},
                       False, None)
    assert abs(soundfile.info(path).duration - 8.0) < 0.1
