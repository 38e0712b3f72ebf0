"""Controllable TalkNet through the app started as the launcher starts it, through gradio_client: a character laid
out as a community zip unpacks (TalkNetSpect.nemo, TalkNetDurs.nemo, TalkNetPitch.nemo, hifiganmodel), one without
a pitch model, and broken ones (another architecture's files, a corrupt .nemo, a hostile pickle in a .nemo's
weights). The tiny random models (tests/builders/build_controllable_talknet_character.py) speak noise-like audio:
what is checked is the rate, the length following a reference recording's, and the errors a person sees."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator, Tuple

import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.conftest import AppServer, start_app
from tests.contract import voiced_phrases
from tests.controllable_talknet_fixtures import talknet_models, talknet_python, talknet_spec

__all__ = ["talknet_models", "talknet_python", "talknet_spec"]  # fixtures this module uses by name

pytestmark = [pytest.mark.slow, pytest.mark.heavy_env]
RATE = 22050
ARCH = "controllable_talknet"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, talknet_python: Path, talknet_models: Path) -> Iterator[AppServer]:
    """The env built beforehand (the app would build it at the first job); characters as their zips unpack."""
    data_dir = tmp_path_factory.mktemp("data")
    characters = data_dir / "characters" / ARCH
    characters.mkdir(parents=True)
    shutil.copytree(talknet_models / "characters" / "tiny", characters / "Apple Bloom (singing)")
    shutil.copytree(talknet_models / "characters" / "tiny-nopitch", characters / "no pitch" / "no pitch")  # a zip with its own folder
    shutil.copytree(talknet_models / "characters" / "tiny-phonemes", characters / "Twilight (phonemes)")  # as the community models
    corrupt = characters / "corrupt"
    shutil.copytree(talknet_models / "characters" / "tiny", corrupt)
    (corrupt / "TalkNetSpect.nemo").write_bytes(b"half a download" * 100)
    hostile = characters / "hostile"
    shutil.copytree(talknet_models / "characters" / "tiny", hostile)
    shutil.copy(talknet_models / "unsafe.nemo", hostile / "TalkNetSpect.nemo")
    other = characters / "so-vits model"
    other.mkdir()
    (other / "G_100.pth").write_bytes(b"x")
    (other / "config.json").write_text("{}")
    app = start_app(data_dir, extra_env={"VOICEGEN_PREWARM": ""})
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(server: AppServer) -> Client:
    return Client(server.url, verbose=False)


def speak(client: Client, character: str, text: str, reference: object = None, **options: object) -> Tuple[Any, ...]:
    return tuple(client.predict(ARCH, character, text, reference, dict(options), "wav", {}, {}, False, api_name="/generate"))


def test_talknet_and_its_characters_are_listed(client: Client) -> None:
    architectures = {a["id"]: a for a in client.predict(api_name="/list_architectures")}
    listed = architectures[ARCH]
    assert {o["name"] for o in listed["options"]} == {"speed", "pitch_shift", "reference_follows", "reference_timing", "denoise",
                                                          "super_resolution"}
    assert listed["reference"]["required"] is False and listed["reference"]["min_s"] == 0.5
    characters = {c["id"]: c for c in client.predict(ARCH, api_name="/list_characters")}
    assert characters["Apple Bloom (singing)"]["usable"] and characters["Apple Bloom (singing)"]["extras"] == ["pitch model"]
    assert characters["no pitch"]["usable"] and "reference_follows=timing only" in characters["no pitch"]["unavailable"]
    assert not characters["corrupt"]["usable"] and "TalkNetSpect.nemo is not a readable .nemo file" in characters["corrupt"]["problem"]
    assert not characters["so-vits model"]["usable"] and "needs TalkNetSpect.nemo" in characters["so-vits model"]["problem"]


def test_text_becomes_audio_and_a_reference_sets_its_length(client: Client, tmp_path: Path) -> None:
    path, info = speak(client, "Apple Bloom (singing)", "Hello there, how are you?")
    audio, rate = soundfile.read(path)
    assert rate == info["sample_rate"] == RATE and np.isfinite(audio).all() and audio.size > RATE // 2
    reference = tmp_path / "melody.wav"
    soundfile.write(str(reference), voiced_phrases(44100, 3.2), 44100, subtype="FLOAT")
    for character in ("Apple Bloom (singing)", "no pitch"):  # characters of letters: their timing stretched
        sung, _ = speak(client, character, "Sing it like this, please.", handle_file(str(reference)), reference_timing="stretched")
        sung_audio, sung_rate = soundfile.read(sung)
        assert sung_rate == RATE and abs(sung_audio.size / RATE - 3.2) < 0.05 * 3.2, (character, sung_audio.size / RATE)


def test_bad_inputs_are_clear_errors(client: Client, tmp_path: Path) -> None:
    silence = tmp_path / "silence.wav"
    soundfile.write(str(silence), np.zeros(2 * 44100, dtype=np.float32), 44100)
    with pytest.raises(AppError, match="reference recording is silent"):
        speak(client, "Apple Bloom (singing)", "Hello.", handle_file(str(silence)))
    one = tmp_path / "one.wav"
    soundfile.write(str(one), np.full(1, 0.5, dtype=np.float32), 44100)
    with pytest.raises(AppError, match=r"the recording is too short \(1 samples"):
        speak(client, "Apple Bloom (singing)", "Hello.", handle_file(str(one)))
    with pytest.raises(AppError, match="no pitch has no pitch model.*give a reference recording"):
        speak(client, "no pitch", "Hello.")
    with pytest.raises(AppError, match="TalkNetSpect.nemo is not a readable .nemo file"):
        speak(client, "corrupt", "Hello.")
    with pytest.raises(AppError, match="needs TalkNetSpect.nemo"):
        speak(client, "so-vits model", "Hello.")


def test_super_resolution_is_unavailable_until_its_weights_are_there(client: Client, server: AppServer, talknet_models: Path) -> None:
    """Without assets/hifisr the option is listed unavailable with why, and asking for it is a clear error; with the
    file in place (the tiny one) the take comes back at 32 kHz, as long as without it."""
    listed = {a["id"]: a for a in client.predict(api_name="/list_architectures")}[ARCH]
    assert "needs assets/hifisr, which is missing" in listed["unavailable"]["super_resolution"]
    with pytest.raises(AppError, match="hifisr"):
        speak(client, "Apple Bloom (singing)", "Hello there.", super_resolution=True)
    (server.data_dir / "assets").mkdir(exist_ok=True)
    shutil.copy(talknet_models / "assets" / "hifisr", server.data_dir / "assets" / "hifisr")
    listed = {a["id"]: a for a in client.predict(api_name="/list_architectures")}[ARCH]
    assert "super_resolution" not in listed["unavailable"]
    plain, _ = speak(client, "Apple Bloom (singing)", "Hello there.")
    sharp, info = speak(client, "Apple Bloom (singing)", "Hello there.", super_resolution=True)
    plain_audio, plain_rate = soundfile.read(plain)
    sharp_audio, sharp_rate = soundfile.read(sharp)
    assert plain_rate == RATE and sharp_rate == info["sample_rate"] == 32000 and np.isfinite(sharp_audio).all()
    assert abs(sharp_audio.size / sharp_rate - plain_audio.size / plain_rate) < 0.01, (sharp_audio.size, plain_audio.size)


def test_aligned_reference_timing_is_unavailable_until_the_aligner_is_there(client: Client, server: AppServer, talknet_models: Path,
                                                                            tmp_path: Path) -> None:
    """Upstream's way of following a reference's timing (the default) needs assets/asr_talknet_aligner.nemo: listed
    unavailable with why, and a clear error, until it is there (the tiny one); then a phoneme character's take lasts
    as long as the reference."""
    reference = tmp_path / "spoken.wav"
    soundfile.write(str(reference), voiced_phrases(44100, 2.4), 44100, subtype="FLOAT")
    listed = {a["id"]: a for a in client.predict(api_name="/list_architectures")}[ARCH]
    assert "needs assets/asr_talknet_aligner.nemo, which is missing" in listed["unavailable"]["reference_timing=aligned to the text"]
    with pytest.raises(AppError, match="reference aligner .* is missing: download it in the Models tab"):
        speak(client, "Twilight (phonemes)", "Say it like this.", handle_file(str(reference)))
    (server.data_dir / "assets").mkdir(exist_ok=True)
    shutil.copy(talknet_models / "assets" / "asr_talknet_aligner.nemo", server.data_dir / "assets" / "asr_talknet_aligner.nemo")
    listed = {a["id"]: a for a in client.predict(api_name="/list_architectures")}[ARCH]
    assert "reference_timing=aligned to the text" not in listed["unavailable"]
    said, info = speak(client, "Twilight (phonemes)", "Say it like this.", handle_file(str(reference)))
    said_audio, said_rate = soundfile.read(said)
    assert said_rate == info["sample_rate"] == RATE and abs(said_audio.size / RATE - 2.4) < 0.05 * 2.4, said_audio.size / RATE
    with pytest.raises(AppError, match="cannot follow a reference's timing aligned to the text.*choose reference timing 'stretched'"):
        speak(client, "Apple Bloom (singing)", "Say it like this.", handle_file(str(reference)))


def test_a_hostile_pickle_in_a_nemo_is_refused(client: Client, talknet_models: Path) -> None:
    with pytest.raises(AppError, match="TalkNetSpect.nemo holds pickled Python objects.*refused"):
        speak(client, "hostile", "Hello.")
    assert not (talknet_models / "pwned").exists()
    _, info = speak(client, "Apple Bloom (singing)", "Still speaking.")  # the worker still serves
    assert info["sample_rate"] == RATE
