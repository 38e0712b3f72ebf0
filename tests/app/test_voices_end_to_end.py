"""A person records ten seconds of a voice, saves it, and hears typed lines in it (F5-TTS) and a recording converted
into it (Seed-VC), through the app: gradio_client, the HTTP routes, and the limits a shared server sets. The models are
tiny random ones of each package's own classes (tests/builders/build_f5_tts_character.py, build_seed_vc_character.py):
the checks are rates, lengths, that the voice's conditioning is computed once and reused, and the messages."""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app.bootstrap import job_store
from app.settings import Settings
from tests.conftest import AppServer, start_app
from tests.contract import voiced_phrases
from tests.f5_tts_fixtures import ASSETS as F5_ASSETS
from tests.f5_tts_fixtures import f5_tts_built, f5_tts_python, f5_tts_spec
from tests.seed_vc_fixtures import seed_vc_data_dir, seed_vc_models, seed_vc_python, seed_vc_spec

__all__ = ["f5_tts_built", "f5_tts_python", "f5_tts_spec", "seed_vc_models", "seed_vc_python", "seed_vc_spec"]  # fixtures by name

RATE = 44100
QUICK_F5 = {"nfe_step": 4}
"""Few flow steps: the tiny model's output says nothing either way, and each step costs."""


def lay_out(data_dir: Path, f5_built: Path, seed_vc_built: Path) -> Path:
    for name in F5_ASSETS:
        shutil.copytree(f5_built / "assets" / name, data_dir / "assets" / name)
    return seed_vc_data_dir(seed_vc_built, data_dir, voices=())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, f5_tts_built: Path, seed_vc_models: Path) -> Iterator[AppServer]:
    app = start_app(lay_out(tmp_path_factory.mktemp("data"), f5_tts_built, seed_vc_models), extra_env={"VOICEGEN_PREWARM": ""})
    yield app
    app.stop()


def write(path: Path, audio: np.ndarray, rate: int = RATE) -> Path:
    soundfile.write(str(path), audio.T if audio.ndim == 2 else audio, rate)
    return path


@pytest.fixture(scope="module")
def ten_seconds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a person records: a second of room noise, eight of speaking, a second of room noise; stereo."""
    rng = np.random.default_rng(3)
    voice = np.concatenate([np.zeros(RATE), voiced_phrases(RATE, 8.0), np.zeros(RATE)]).astype(np.float32)
    voice += rng.normal(0, 1e-4, voice.size).astype(np.float32)
    return write(tmp_path_factory.mktemp("voice") / "me.wav", np.stack([voice, voice]))


def phrases_at(pitch_hz: float, seconds: float) -> np.ndarray:
    """Voiced phrases around ``pitch_hz`` (a man's ~110 Hz, a woman's ~230 Hz)."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(pitch_hz * (1 + 0.15 * np.sin(2 * np.pi * 1.5 * t))) / RATE
    return (sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.2 * ((t % 1.6) < 1.2)).astype(np.float32)


def url(server: AppServer, path: str) -> str:
    return server.url.rstrip("/") + path


def test_a_recording_becomes_a_voice_that_speaks_typed_lines(server: AppServer, ten_seconds: Path) -> None:
    client = Client(server.url, verbose=False)
    saved = client.predict("Ann, calm", handle_file(str(ten_seconds)), "Hello there, this is how my voice sounds.", api_name="/save_voice")
    assert saved["id"] == "ann-calm" and {"f5_tts", "seed_vc", "xtts"} <= set(saved["architectures"])
    assert 7.5 <= saved["duration_s"] <= 8.6  # the silent second at each end trimmed (a little margin kept)
    assert saved["made_by"] == "guest" and saved["source"].startswith("upload ")  # never the session's id: it would let others act as it
    voices = client.predict(api_name="/voices")
    assert [v["id"] for v in voices] == ["ann-calm"] and "session" not in str(voices) and "owner" not in str(voices)
    listed = {c["id"]: c for c in client.predict("f5_tts", api_name="/list_characters")}
    assert "ann-calm" in listed and listed["ann-calm"]["usable"]
    architectures = {a["id"]: a for a in client.predict(api_name="/list_architectures")}
    assert architectures["f5_tts"]["zero_shot"] and "non-commercial" in architectures["f5_tts"]["licence"].lower()
    assert "demucs" not in [a for a in architectures if architectures[a]["zero_shot"]]

    short_path, short = client.predict("f5_tts", "ann-calm", "Hi there.", None, QUICK_F5, "wav", api_name="/generate")
    long_path, long = client.predict("f5_tts", "ann-calm", "Hi there. This line is a good deal longer than the first one was.", None,
                                     QUICK_F5, "wav", api_name="/generate")
    assert soundfile.info(short_path).samplerate == soundfile.info(long_path).samplerate == 24000
    assert long["duration_s"] > 1.5 * short["duration_s"]  # speech grows with the text
    assert short["worker"]["conditioning"] == "computed" and long["worker"]["conditioning"] == "reused"
    _, kept = client.predict(long["job_id"], api_name="/history_item")
    provenance = kept["provenance"]
    assert provenance["voice"]["made_by"] == saved["made_by"] and provenance["voice"]["source"] == saved["source"]
    assert "CC-BY-NC" in provenance["licence"] and provenance["worker"]["conditioning"] == "reused"


def test_a_voice_deleted_and_saved_again_speaks_as_the_new_recording(server: AppServer, ten_seconds: Path, tmp_path: Path) -> None:
    client = Client(server.url, verbose=False)
    mine = write(tmp_path / "mine.wav", 0.7 * voiced_phrases(RATE, 7.0))  # a recording no other test saves
    client.predict("Eve", handle_file(str(mine)), "Hello there, this is how my voice sounds.", api_name="/save_voice")
    _, first = client.predict("f5_tts", "eve", "First voice.", None, QUICK_F5, "wav", api_name="/generate")
    assert first["worker"]["conditioning"] == "computed"
    assert "deleted voice eve" in client.predict("eve", api_name="/delete_voice")
    other = write(tmp_path / "other.wav", 0.5 * voiced_phrases(RATE, 6.0))
    client.predict("Eve", handle_file(str(other)), "Hello there, this is how my voice sounds.", api_name="/save_voice")
    _, second = client.predict("f5_tts", "eve", "Second voice.", None, QUICK_F5, "wav", api_name="/generate")
    assert second["worker"]["conditioning"] == "computed"  # the new recording, not the warm worker's copy of the old one
    _, kept = client.predict(second["job_id"], api_name="/history_item")
    assert kept["provenance"]["voice"]["duration_s"] < 6.5


@pytest.mark.parametrize(("name", "answer"), [("Reference", "'reference' is a builtin character's name here"),
                                              ("Анна", "voice-")])
def test_names_that_are_taken_or_in_another_script(server: AppServer, ten_seconds: Path, name: str, answer: str) -> None:
    client = Client(server.url, verbose=False)
    if answer.startswith("voice-"):
        saved = client.predict(name, handle_file(str(ten_seconds)), "", api_name="/save_voice")
        assert saved["id"].startswith("voice-") and saved["name"] == name
    else:
        with pytest.raises(AppError, match=answer):
            client.predict(name, handle_file(str(ten_seconds)), "", api_name="/save_voice")


def test_the_saved_voice_converts_a_recording_with_seed_vc(server: AppServer, ten_seconds: Path, tmp_path: Path) -> None:
    client = Client(server.url, verbose=False)
    if "bea" not in [v["id"] for v in client.predict(api_name="/voices")]:
        client.predict("Bea", handle_file(str(ten_seconds)), "", api_name="/save_voice")
    source = write(tmp_path / "say.wav", voiced_phrases(RATE, 3.0))
    untrimmed = {"trim_silence": False}
    first_path, first = client.predict("seed_vc", "bea", "", handle_file(str(source)), {"diffusion_steps": 2}, "wav", {}, untrimmed,
                                       api_name="/generate")
    _, second = client.predict("seed_vc", "bea", "", handle_file(str(source)), {"diffusion_steps": 3}, "wav", {}, untrimmed,
                               api_name="/generate")
    assert abs(first["duration_s"] - 3.0) < 0.2 and soundfile.info(first_path).samplerate == first["sample_rate"]
    assert first["worker"]["conditioning"] == "computed" and second["worker"]["conditioning"] == "reused"


def test_a_one_off_reference_speaks_without_saving_a_voice(server: AppServer, ten_seconds: Path) -> None:
    client = Client(server.url, verbose=False)
    _, info = client.predict("f5_tts", "reference", "Just this once.", handle_file(str(ten_seconds)),
                                dict(QUICK_F5, reference_text="Hello there, this is how my voice sounds."), "wav", api_name="/generate")
    assert info["sample_rate"] == 24000 and info["duration_s"] > 0.2
    with pytest.raises(AppError, match="choose a saved voice, or give a reference recording"):
        client.predict("f5_tts", "reference", "No voice given.", None, QUICK_F5, "wav", api_name="/generate")


@pytest.mark.parametrize(("name", "make", "problem"), [
    ("Too short", lambda: voiced_phrases(RATE, 2.0), "a voice needs 3-30 s of one person speaking"),
    ("Too long", lambda: voiced_phrases(RATE, 40.0), "a voice takes at most 30 s"),
    ("Silent", lambda: np.zeros(5 * RATE, np.float32), "the recording is silent"),
    ("Clipped", lambda: np.clip(voiced_phrases(RATE, 5.0) * 20, -1, 1), "the recording is clipped"),
    ("!!!", lambda: voiced_phrases(RATE, 5.0), "a voice needs a name with letters or digits"),
    ("Two people", lambda: np.concatenate([phrases_at(110, 4.0), phrases_at(230, 4.0)]), "seems to hold two voices"),
])
def test_bad_recordings_are_refused_by_name(server: AppServer, tmp_path: Path, name: str, make: object, problem: str) -> None:
    client = Client(server.url, verbose=False)
    path = write(tmp_path / "bad.wav", make())  # type: ignore[operator]
    with pytest.raises(AppError, match=problem):
        client.predict(name, handle_file(str(path)), "", api_name="/save_voice")
    assert name.lower().replace(" ", "-") not in [v["id"] for v in client.predict(api_name="/voices")]


def test_voices_over_http(server: AppServer, ten_seconds: Path) -> None:
    with ten_seconds.open("rb") as handle:
        made = httpx.post(url(server, "/v1/voices"), files={"file": ("cal.wav", handle, "audio/wav")},
                          data={"name": "Cal", "transcript": "Hello there, this is how my voice sounds."}, timeout=60)
    assert made.status_code == 201, made.text
    assert made.json()["id"] == "cal" and made.json()["source"] == "upload cal.wav"
    with ten_seconds.open("rb") as handle:
        again = httpx.post(url(server, "/v1/voices"), files={"file": ("cal.wav", handle, "audio/wav")}, data={"name": "Cal"}, timeout=60)
    assert again.status_code == 400 and "a voice called 'cal' exists" in again.json()["error"]["message"]
    assert "cal" in [v["id"] for v in httpx.get(url(server, "/v1/voices"), timeout=30).json()["data"]]
    spoken = httpx.post(url(server, "/v1/audio/speech"), json={"model": "f5_tts", "voice": "cal", "input": "Over plain HTTP.",
                                                               "response_format": "wav", "stream": False}, timeout=300)
    assert spoken.status_code == 200, spoken.text
    assert soundfile.read(io.BytesIO(spoken.content))[1] == 24000
    reference = base64.b64encode(ten_seconds.read_bytes()).decode()
    one_off = httpx.post(url(server, "/v1/audio/speech"), json={"model": "f5_tts", "voice": "reference", "input": "A one-off voice.",
                                                                "reference_audio": reference, "stream": False}, timeout=300)
    assert one_off.status_code == 200, one_off.text
    gone = httpx.delete(url(server, "/v1/voices/cal"), timeout=30)
    assert gone.status_code == 200 and "cal" not in [v["id"] for v in httpx.get(url(server, "/v1/voices"), timeout=30).json()["data"]]
    assert httpx.delete(url(server, "/v1/voices/cal"), timeout=30).status_code == 400


def test_a_shared_server_can_keep_cloning_to_its_operators(tmp_path: Path, f5_tts_built: Path, seed_vc_models: Path,
                                                           ten_seconds: Path) -> None:
    app = start_app(lay_out(tmp_path / "data", f5_tts_built, seed_vc_models),
                    extra_env={"VOICEGEN_PREWARM": "", "VOICEGEN_VOICE_CLONING": "operators", "VOICEGEN_AUTH": "op:secret-1,guest:secret-2",
                               "VOICEGEN_ADMINS": "op"})
    try:
        def save(user: str, name: str) -> httpx.Response:
            with ten_seconds.open("rb") as handle:
                return httpx.post(url(app, "/v1/voices"), files={"file": ("v.wav", handle, "audio/wav")},
                                  data={"name": name, "transcript": "Hello there."},
                                  auth=(user, "secret-1" if user == "op" else "secret-2"), timeout=60)

        refused = save("guest", "Guest voice")
        assert refused.status_code in (400, 403) and "operators only" in refused.json()["error"]["message"]
        assert save("op", "Operator voice").status_code == 201
        spoken = httpx.post(url(app, "/v1/audio/speech"), json={"model": "f5_tts", "voice": "operator-voice", "input": "Hello.",
                                                                "stream": False}, auth=("guest", "secret-2"), timeout=120)
        assert spoken.status_code in (400, 403) and "operators only" in spoken.json()["error"]["message"]
        first = httpx.post(url(app, "/v1/audio/speech"), json={"model": "praat", "voice": "higher", "input": "Hello.", "stream": False,
                                                               "speak_with": {"architecture": "f5_tts", "character": "operator-voice"}},
                           auth=("guest", "secret-2"), timeout=120)  # nor through a conversion that speaks it first
        assert first.status_code in (400, 403) and "operators only" in first.json()["error"]["message"]
        taken = httpx.delete(url(app, "/v1/voices/operator-voice"), auth=("guest", "secret-2"), timeout=30)
        assert taken.status_code in (400, 403) and "only they or an operator" in taken.json()["error"]["message"]
        assert httpx.delete(url(app, "/v1/voices/operator-voice"), auth=("op", "secret-1"), timeout=30).status_code == 200
    finally:
        app.stop()


def test_the_cloning_setting_holds_for_a_retry_made_after_it_changed_and_can_turn_cloning_off(
        tmp_path: Path, f5_tts_built: Path, seed_vc_models: Path, ten_seconds: Path) -> None:
    """A guest's job made while cloning was open to all is not run again by Retry once it is for operators only; with
    cloning off, nobody saves a voice or speaks in a saved one, and each refusal names the setting."""
    data_dir = lay_out(tmp_path / "data", f5_tts_built, seed_vc_models)
    logins = {"VOICEGEN_PREWARM": "", "VOICEGEN_AUTH": "op:secret-1,guest:secret-2", "VOICEGEN_ADMINS": "op"}
    app = start_app(data_dir, extra_env=dict(logins, VOICEGEN_VOICE_CLONING="on"))
    try:
        guest = Client(app.url, verbose=False, auth=("guest", "secret-2"))
        guest.predict("Gil", handle_file(str(ten_seconds)), "Hello there, this is how my voice sounds.", api_name="/save_voice")
        _, made = guest.predict("f5_tts", "gil", "Hello.", None, QUICK_F5, "wav", api_name="/generate")
        guest.close()
    finally:
        app.stop()
    store = job_store(Settings(data_dir=data_dir))
    store.update(made["job_id"], state="failed", error="as if its worker had crashed")  # only an ended, unsucceeded job retries
    store.close()

    app = start_app(data_dir, extra_env=dict(logins, VOICEGEN_VOICE_CLONING="operators"))
    try:
        guest = Client(app.url, verbose=False, auth=("guest", "secret-2"))
        with pytest.raises(AppError, match="operators only"):
            guest.predict(made["job_id"], api_name="/retry_job")
        assert guest.predict(made["job_id"], api_name="/job")["state"] == "failed"  # not queued again
        guest.close()
    finally:
        app.stop()

    app = start_app(data_dir, extra_env=dict(logins, VOICEGEN_VOICE_CLONING="off"))
    try:
        operator = Client(app.url, verbose=False, auth=("op", "secret-1"))
        with pytest.raises(AppError, match="voice cloning is turned off on this server .*voice_cloning=off"):
            operator.predict("Opal", handle_file(str(ten_seconds)), "", api_name="/save_voice")
        with pytest.raises(AppError, match="voice cloning is turned off on this server .*voice_cloning=off"):
            operator.predict("f5_tts", "gil", "Hello.", None, QUICK_F5, "wav", api_name="/generate")
        operator.close()
        spoken = httpx.post(url(app, "/v1/audio/speech"), json={"model": "f5_tts", "voice": "gil", "input": "Hello.", "stream": False},
                            auth=("op", "secret-1"), timeout=120)
        assert spoken.status_code in (400, 403) and "voice_cloning=off" in spoken.json()["error"]["message"]
    finally:
        app.stop()
