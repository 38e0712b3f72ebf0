"""so-vits-svc 5.0 through the app started as the launcher starts it: characters laid out as a person (an exported
sovits5.0.pth + base.yaml with two singers) and the model manager (the established app's training checkpoint and
singer/ folder) put them, the two shared assets in assets/. A voiced recording becomes audio at 32 kHz and the
input's length; the options reach the model (a take repeats exactly; another singer or a pitch shift changes it);
bad inputs are clear errors a person sees. Tiny random weights: the voice is noise-like."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.conftest import AppServer, start_app
from tests.contract import voiced_phrases
from tests.sovits5_fixtures import sovits5_models, sovits5_python, sovits5_spec

__all__ = ["sovits5_models", "sovits5_python", "sovits5_spec"]  # fixtures this module uses by name

pytestmark = [pytest.mark.slow, pytest.mark.heavy_env]
RATE = 32000
QUICK = {"f0_method": "crepe-tiny"}
CHARACTERS = ("tiny", "tiny-training", "tiny-v1", "sovits4", "no-singer")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sovits5_python: Path, sovits5_models: Path) -> Iterator[AppServer]:
    """The env built beforehand (the app would build it at the first job); whisper-large-v2.pt held back until the
    missing-asset case has seen its error."""
    data_dir = tmp_path_factory.mktemp("data")
    (data_dir / "assets").mkdir()
    shutil.copy(sovits5_models / "assets" / "hubert-soft-0d54a1f4.pt", data_dir / "assets")
    shutil.copy(sovits5_models / "assets" / "whisper-medium.pt", data_dir / "assets")
    for name in CHARACTERS:
        shutil.copytree(sovits5_models / "characters" / name, data_dir / "characters" / "sovits5" / name)
    hostile = data_dir / "characters" / "sovits5" / "hostile"
    shutil.copytree(sovits5_models / "characters" / "tiny", hostile)
    shutil.copy(sovits5_models / "unsafe.pth", hostile / "sovits5.0.pth")
    app = start_app(data_dir, extra_env={"VOICEGEN_PREWARM": ""})
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(server: AppServer) -> Client:
    return Client(server.url, verbose=False)


def recording(path: Path, seconds: float = 2.5, rate: int = 44100, audio: Optional[np.ndarray] = None) -> str:
    soundfile.write(str(path), voiced_phrases(rate, seconds) if audio is None else audio, rate, subtype="FLOAT")
    return str(path)


def convert(client: Client, character: str, path: str, options: Dict[str, Any]) -> Tuple[np.ndarray, Dict[str, Any]]:
    """The take, waiting out a character's load cooldown (a load that failed is retried after a pause)."""
    for _ in range(30):
        try:
            out, info = client.predict("sovits5", character, "", handle_file(path), dict(QUICK, **options), "wav", {}, {}, False,
                                       api_name="/generate")
            audio, rate = soundfile.read(out, dtype="float32")
            assert rate == info["sample_rate"] == RATE
            return audio, info
        except AppError as exc:
            if "cooling down" not in str(exc):
                raise
            time.sleep(1.5)
    raise AssertionError("still cooling down")


def test_a_missing_asset_is_named_then_the_characters_are_listed(server: AppServer, client: Client, sovits5_models: Path,
                                                                  tmp_path: Path) -> None:
    assets = {(a["architecture"], a["asset"]): a for a in client.predict(api_name="/list_assets")}
    assert not assets[("sovits5", "whisper-large-v2.pt")]["present"] and assets[("sovits5", "hubert-soft-0d54a1f4.pt")]["present"]
    with pytest.raises(AppError, match="whisper encoder is missing.*assets/whisper-large-v2.pt"):
        convert(client, "tiny", recording(tmp_path / "in.wav"), {})
    shutil.copy(sovits5_models / "assets" / "whisper-large-v2.pt", server.data_dir / "assets")
    listed = {c["id"]: c for c in client.predict("sovits5", api_name="/list_characters")}
    assert listed["tiny"]["usable"] and listed["tiny"]["version"] == "5.0 v2" and listed["tiny"]["speakers"] == ["Alto", "Bass"]
    assert listed["tiny-v1"]["usable"] and listed["tiny-v1"]["version"] == "5.0 v1"
    assert listed["tiny-training"]["usable"] and listed["tiny-training"]["speakers"] == ["Tiny"]
    assert "so-vits-svc 3/4 model" in listed["sovits4"]["label"] and not listed["sovits4"]["usable"]
    assert "no singer embedding" in listed["no-singer"]["label"]
    assert not listed["hostile"]["usable"] and "holds pickled Python objects" in listed["hostile"]["label"]


def test_a_voiced_recording_becomes_the_characters_voice_at_its_length(client: Client, tmp_path: Path) -> None:
    path = recording(tmp_path / "in.wav", 2.5)
    for character in ("tiny", "tiny-training", "tiny-v1"):
        audio, _ = convert(client, character, path, {})
        assert abs(audio.size / RATE - 2.5) <= 0.05 * 2.5 and np.isfinite(audio).all() and float(np.abs(audio).max()) > 1e-3


def test_the_options_reach_the_model(client: Client, tmp_path: Path) -> None:
    path = recording(tmp_path / "in.wav", 2.0)
    alto, _ = convert(client, "tiny", path, {"singer": "Alto"})
    again, _ = convert(client, "tiny", path, {"singer": "Alto"})
    bass, _ = convert(client, "tiny", path, {"singer": "Bass"})
    shifted, _ = convert(client, "tiny", path, {"singer": "Alto", "pitch_shift_semitones": 7})
    np.testing.assert_allclose(again, alto, atol=1e-4)  # one take repeats (the file is 16-bit)
    assert float(np.abs(bass - alto).max()) > 1e-3 and float(np.abs(shifted - alto).max()) > 1e-3


@pytest.mark.parametrize(
    ("character", "audio", "options", "expected"),
    [
        ("sovits4", None, {}, "cannot be used: this is a so-vits-svc 3/4 model"),
        ("no-singer", None, {}, "cannot be used: no singer embedding"),
        ("hostile", None, {}, "cannot be used: sovits5.0.pth holds pickled Python objects"),
        ("tiny", np.zeros(44100, dtype=np.float32), {}, "silent"),
        ("tiny", np.zeros(1, dtype=np.float32), {}, "too short"),
        ("tiny", None, {"singer": "Soprano"}, "unknown singer 'Soprano'"),
    ],
)
def test_bad_inputs_are_clear_errors(client: Client, sovits5_models: Path, tmp_path: Path, character: str, audio: Optional[np.ndarray],
                                     options: Dict[str, Any], expected: str) -> None:
    with pytest.raises(AppError, match=expected):
        convert(client, character, recording(tmp_path / "in.wav", audio=audio), options)
    assert not (sovits5_models / "pwned").exists()
