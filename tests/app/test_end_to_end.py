"""The app started as the launcher starts it, used through gradio_client as a script user would."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import psutil
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.conftest import AppServer, start_app, wait_until, words

TEXT = "The quick brown fox jumps over the lazy dog. Then it takes a long nap in the warm afternoon sun."


@pytest.fixture(scope="module")
def client(app_server: AppServer) -> Client:
    return Client(app_server.url, verbose=False)


def generate(client: Client, architecture: str = "piper", character: str = "joe", text: str = TEXT,
             audio: Any = None, options: Dict[str, Any] | None = None, output_format: str = "wav",
             preprocess: Dict[str, Any] | None = None, postprocess: Dict[str, Any] | None = None,
             use_cache: bool = False) -> Tuple[str, Dict[str, Any]]:
    """One /generate call; the output cache is off unless a test is about it, so every call does real work."""
    path, info = client.predict(architecture, character, text, audio, options or {}, output_format,
                                preprocess or {}, postprocess or {}, use_cache, api_name="/generate")
    return path, info


def read(path: str) -> Tuple[np.ndarray, int]:
    audio, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(sample_rate)


def test_named_endpoints_are_listed(client: Client) -> None:
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/generate", "/list_architectures", "/list_characters", "/runtime_status"} <= set(endpoints)
    names = [p["parameter_name"] for p in endpoints["/generate"]["parameters"]]
    assert names == ["architecture", "character", "text", "audio", "options", "output_format", "preprocess", "postprocess", "use_cache",
                     "speak_with"]


def test_catalogue(client: Client) -> None:
    architectures = {a["id"]: a for a in client.predict(api_name="/list_architectures")}
    piper = architectures["piper"]
    assert piper["needs_text"] and "tts" in piper["capabilities"]
    assert {o["name"] for o in piper["options"]} == {"length_scale", "noise_scale", "noise_w", "sentence_silence_s", "fast_start"}
    characters = client.predict("piper", api_name="/list_characters")
    joe = next(c for c in characters if c["id"] == "joe")
    assert joe["label"] == "Joe (US English, offline)" and joe["builtin"] and joe["usable"]


def test_piper_speaks_the_text(client: Client) -> None:
    path, info = generate(client)
    audio, sample_rate = read(path)
    assert sample_rate == info["sample_rate"] == 22050
    duration_s = audio.size / sample_rate
    assert 0.15 * words(TEXT) < duration_s < 0.8 * words(TEXT), duration_s
    assert np.isfinite(audio).all()
    assert float(np.sqrt(np.mean(audio**2))) > 0.02
    assert abs(duration_s - info["duration_s"]) < 0.01


def test_warm_request_reuses_the_worker_and_options_take_effect(client: Client) -> None:
    generate(client, text="Warm up.")
    pids = {row["pid"] for row in client.predict(api_name="/runtime_status") if row["architecture"] == "piper"}
    normal, info = generate(client, text="Counting slowly: one, two, three, four, five.")
    slow, _ = generate(client, text="Counting slowly: one, two, three, four, five.", options={"length_scale": 2.0})
    assert not info["cold_start"]
    assert read(slow)[0].size > 1.4 * read(normal)[0].size  # twice the length scale; phoneme lengths vary with noise_w
    assert {row["pid"] for row in client.predict(api_name="/runtime_status") if row["architecture"] == "piper"} == pids


@pytest.mark.parametrize("output_format", ["flac", "ogg", "mp3"])
def test_output_formats_read_back(client: Client, output_format: str) -> None:
    path, _ = generate(client, text="Format check.", output_format=output_format)
    assert Path(path).suffix == "." + output_format
    audio, sample_rate = read(path)
    assert sample_rate == 22050 and audio.size > 0.3 * sample_rate


def test_uploaded_recording_is_converted(client: Client, tmp_path: Path) -> None:
    speech, _ = generate(client, text="A recording to convert.")
    source, source_rate = read(speech)
    stereo = tmp_path / "stereo.flac"
    soundfile.write(str(stereo), np.stack([source, source], axis=1) * 0.5, source_rate)
    path, info = generate(client, "fake", "plain", "", handle_file(str(stereo)), {"gain": 1.0})
    converted, sample_rate = read(path)
    assert sample_rate == 16000 == info["sample_rate"]  # resampled to what the architecture wants
    assert abs(converted.size / sample_rate - source.size / source_rate) < 0.15


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("piper", "joe", "   "), "needs text"),
        (("nonexistent", "joe", "hi"), "unknown architecture 'nonexistent'"),
        (("piper", "nobody", "hi"), "unknown character 'nobody'"),
        (("fake", "plain", ""), "needs input audio"),
    ],
)
def test_bad_input_gets_a_clear_error(client: Client, args: Tuple[str, str, str], message: str) -> None:
    with pytest.raises(AppError, match=message):
        generate(client, *args)
    assert client.predict(api_name="/list_architectures")


def test_bad_options_and_formats(client: Client) -> None:
    with pytest.raises(AppError, match="'length_scale' must be at most 4"):
        generate(client, options={"length_scale": 9})
    with pytest.raises(AppError, match="unknown option"):
        generate(client, options={"pitch": 3})
    with pytest.raises(AppError, match="unknown output format 'aiff'"):
        generate(client, output_format="aiff")


def test_garbage_upload(client: Client, tmp_path: Path) -> None:
    garbage = tmp_path / "song.wav"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(AppError, match="song.wav: not a readable audio file"):
        generate(client, "fake", "plain", "", handle_file(str(garbage)))
    path, _ = generate(client, text="Still serving.")
    assert read(path)[0].size > 0


def test_worker_killed_during_a_job(client: Client, tmp_path: Path) -> None:
    tone = tmp_path / "tone.wav"
    soundfile.write(str(tone), 0.3 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000), 16000)
    generate(client, "fake", "plain", "", handle_file(str(tone)))
    pid = next(row["pid"] for row in client.predict(api_name="/runtime_status") if row["architecture"] == "fake")
    errors: List[str] = []

    def slow_job() -> None:
        try:
            generate(client, "fake", "plain", "", handle_file(str(tone)), {"sleep_s": 30})
        except AppError as exc:
            errors.append(str(exc))

    job = threading.Thread(target=slow_job)
    job.start()
    assert wait_until(lambda: any(r["state"] == "busy" for r in client.predict(api_name="/runtime_status")), 20)
    os.kill(pid, signal.SIGKILL)
    job.join(30)
    assert errors and "died while generating" in errors[0] and "SIGKILL" in errors[0]
    path, _ = generate(client, "fake", "plain", "", handle_file(str(tone)))
    assert read(path)[0].size == 16000


def test_sigkill_of_the_app_leaves_no_worker(tmp_path: Path) -> None:
    server = start_app(tmp_path / "data")
    try:
        Client(server.url, verbose=False).predict("piper", "joe", "Hello.", None, {}, "wav", api_name="/generate")
        workers = [p for p in psutil.Process(server.process.pid).children(recursive=True) if "runtimes.worker" in " ".join(p.cmdline())]
        assert workers
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        started = time.monotonic()
        assert wait_until(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers), 5)
        assert time.monotonic() - started < 5
    finally:
        server.stop()


def test_cancel_from_the_api_stops_the_running_job(client: Client, tmp_path: Path) -> None:
    tone = tmp_path / "tone.wav"
    soundfile.write(str(tone), 0.3 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000), 16000)
    job = client.submit("fake", "plain", "", handle_file(str(tone)), {"sleep_s": 60}, "wav", {}, {}, False, api_name="/generate")
    assert wait_until(lambda: any(r["state"] == "busy" for r in client.predict(api_name="/runtime_status")), 20)
    started = time.monotonic()
    assert client.predict(api_name="/cancel") == "cancelled 1 job(s)"
    with pytest.raises(AppError, match="cancelled"):
        job.result(timeout=30)
    assert time.monotonic() - started < 10
    assert wait_until(lambda: all(r["state"] != "busy" for r in client.predict(api_name="/runtime_status")), 10)


def test_runtime_controls_from_the_api(client: Client) -> None:
    def holding(character: str) -> List[Dict[str, Any]]:
        return [r for r in client.predict(api_name="/runtime_status") if character in r.get("characters", [])]

    assert client.predict("fake", "slow-load", api_name="/prewarm") == "fake / slow-load is warm"
    assert client.predict("fake", "plain", api_name="/prewarm") == "fake / plain is warm"
    [row] = holding("slow-load")
    assert row["state"] == "ready" and row["memory_mb"] > 0 and {"plain", "slow-load"} <= set(row["characters"])
    assert "pinned" in client.predict("fake", "slow-load", True, api_name="/pin")
    assert holding("slow-load")[0]["pinned"]
    assert client.predict("fake", "plain", api_name="/unload") == "fake / plain unloaded"
    assert holding("plain") == [] and holding("slow-load")[0]["pid"] == row["pid"]  # the worker keeps the others
    with pytest.raises(AppError, match="fake / plain is not loaded"):
        client.predict("fake", "plain", api_name="/unload")
    assert client.predict(row["name"], api_name="/stop_worker") == "stopped %s" % row["name"]
    assert holding("slow-load") == []
    client.predict("fake", "slow-load", False, api_name="/pin")
    with pytest.raises(AppError, match="no running worker named 'nope'"):
        client.predict("nope", api_name="/stop_worker")


def test_identical_request_is_served_from_the_cache(client: Client) -> None:
    text = "Caching saves the second request."
    first, info = generate(client, text=text, use_cache=True)
    again, cached = generate(client, text=text, use_cache=True)
    assert not info["cached"] and cached["cached"]
    assert Path(first).read_bytes() == Path(again).read_bytes()
    _, fresh = generate(client, text=text, use_cache=False)
    assert not fresh["cached"] and fresh["timings_s"]["generate_s"] > 0


def test_processing_options_reach_the_output(client: Client) -> None:
    import pyloudnorm

    text = "Processing options change the result."
    base, _ = generate(client, text=text)
    fast, info = generate(client, text=text, output_format="flac",
                          postprocess={"speed": 2.0, "loudness_lufs": -23.0, "sample_rate_hz": 16000, "fade_in_ms": 50})
    base_audio, base_rate = read(base)
    fast_audio, fast_rate = read(fast)
    assert fast_rate == 16000 == info["sample_rate"]
    assert 0.4 < (fast_audio.size / fast_rate) / (base_audio.size / base_rate) < 0.6
    assert abs(pyloudnorm.Meter(fast_rate).integrated_loudness(fast_audio.astype(np.float64)) + 23.0) < 1.0
    with pytest.raises(AppError, match="factor must be between 0.25 and 4"):
        generate(client, text=text, postprocess={"speed": 9})
    with pytest.raises(AppError, match="unknown processing option"):
        generate(client, text=text, postprocess={"reverb": 1})


def test_preview_and_presets(client: Client, tmp_path: Path) -> None:
    recording = tmp_path / "take.wav"
    padded = np.concatenate([np.zeros(22050), 0.3 * np.sin(2 * np.pi * 200 * np.arange(22050) / 22050), np.zeros(22050)])
    soundfile.write(str(recording), padded, 22050)
    preview = client.predict("fake", handle_file(str(recording)), {"trim_silence": True}, api_name="/preview_preprocess")
    audio, rate = read(preview)
    assert rate == 16000 and abs(audio.size / rate - 1.0) < 0.1  # resampled for the model, silence cropped
    saved = client.predict("radio voice", {"highpass_hz": 120}, {"loudness_lufs": -18, "speed": 1.1}, api_name="/save_preset")
    assert saved == "saved preset 'radio voice'"
    assert "radio voice" in client.predict(api_name="/list_presets")
    loaded = client.predict("radio voice", api_name="/load_preset")
    assert loaded["preprocess"]["highpass_hz"] == 120 and loaded["postprocess"]["speed"] == 1.1
    with pytest.raises(AppError, match="no preset named 'nothing'"):
        client.predict("nothing", api_name="/load_preset")


def test_keep_alive_per_model_from_the_api(client: Client, tmp_path: Path) -> None:
    tone = tmp_path / "tone.wav"
    soundfile.write(str(tone), 0.3 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000), 16000)

    def plain_workers() -> List[Dict[str, Any]]:
        return [r for r in client.predict(api_name="/runtime_status") if "plain" in r.get("characters", []) and r["pid"]]

    assert client.predict("fake", "plain", 0, api_name="/set_keep_alive") == "fake / plain keep-alive: 0 s"
    generate(client, "fake", "plain", "", handle_file(str(tone)))
    assert plain_workers() == []  # unloaded (its worker stopped, when it held nothing else) right after its job
    with pytest.raises(AppError, match="keep-alive is seconds >= 0, or -1"):
        client.predict("fake", "plain", -5, api_name="/set_keep_alive")
    assert client.predict("fake", "plain", -1, api_name="/set_keep_alive") == "fake / plain keep-alive: forever"
    generate(client, "fake", "plain", "", handle_file(str(tone)))
    [row] = plain_workers()
    assert row["keep_alive_left_s"] is None  # forever: no countdown


def test_voice_changer_converts_a_real_recording(client: Client, tmp_path: Path) -> None:
    """Piper speech in, the Praat voice changer's 'higher' character out: same words, higher pitch."""
    import librosa

    speech, _ = generate(client, text="This recording will sound like someone else.")
    path, info = generate(client, "praat", "higher", "", handle_file(speech), {})
    source, source_rate = read(speech)
    changed, rate = read(path)
    assert rate == 44100 == info["sample_rate"]
    assert abs(changed.size / rate - source.size / source_rate) < 0.3

    def median_f0(audio: np.ndarray, sample_rate: int) -> float:
        f0, flags, _ = librosa.pyin(audio.astype(np.float64), fmin=60, fmax=600, sr=sample_rate)
        return float(np.nanmedian(f0[flags]))

    assert median_f0(changed, rate) > 1.3 * median_f0(source, source_rate)
    with pytest.raises(AppError, match="give a recording, or only text .*not both"):
        generate(client, "praat", "higher", "some text", handle_file(speech))
    # text and no recording: Piper speaks it first, the changer converts that, in one request
    spoken_path, spoken = generate(client, "praat", "higher", "This recording will sound like someone else.", None)
    assert spoken["sample_rate"] == 44100 and "speak_s" in spoken["timings_s"]
    assert abs(spoken["duration_s"] - source.size / source_rate) < 0.3
    assert median_f0(*read(spoken_path)) > 1.3 * median_f0(source, source_rate)
    with pytest.raises(AppError, match="cannot speak text first"):
        client.predict("praat", "higher", "Hi.", None, {}, "wav", {}, {}, False, {"architecture": "fake"}, api_name="/generate")
