"""A person puts so-vits-svc 3.0 character folders (32 kHz and 48 kHz) and hubert-soft in place and converts a voiced
recording through the app (gradio_client): audio at the model's rate and the recording's duration; what the app says
about bad folders, a missing asset, silence, a 1-sample file and a hostile checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.conftest import AppServer, start_app
from tests.runtimes.test_sovits_adapter import RATE, voiced
from tests.sovits3_fixtures import sovits3_models  # noqa: F401  (a fixture)

# Its own app and sovits worker (~40 s): out of the default run's time (tests/runtimes/test_sovits3_adapter.py converts
# both models there through the supervisor); run with -m heavy_env.
pytestmark = [pytest.mark.slow, pytest.mark.heavy_env]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sovits3_models: Path, sovits_models: Path) -> Iterator[AppServer]:  # noqa: F811
    data_dir = tmp_path_factory.mktemp("data")
    shutil.copytree(sovits3_models / "assets", data_dir / "assets", symlinks=True)
    characters = data_dir / "characters" / "sovits"
    shutil.copytree(sovits3_models / "characters", characters)
    shutil.copytree(characters / "tiny-30-48k", characters / "asset-test")
    (characters / "rvc-files").mkdir()
    (characters / "rvc-files" / "model.pth").write_bytes(b"an RVC model")
    (characters / "rvc-files" / "model.index").write_bytes(b"")
    (characters / "hostile").mkdir()
    shutil.copy(sovits_models / "unsafe.pth", characters / "hostile" / "G_1.pth")
    shutil.copy(characters / "tiny-30-32k" / "config.json", characters / "hostile")
    app = start_app(data_dir, extra_env={"VOICEGEN_PREWARM": ""})
    yield app
    app.stop()


def recording(folder: Path, name: str, audio: np.ndarray) -> str:
    path = folder / name
    soundfile.write(str(path), audio, RATE)
    return str(path)


def convert(client: Client, character: str, path: str, options: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    out, info = client.predict("sovits", character, "", handle_file(path), options, "wav", {}, {}, False, api_name="/generate")
    return out, info


def test_3_0_characters_are_listed_with_their_version(server: AppServer) -> None:
    client = Client(server.url, verbose=False)
    listed = {c["id"]: c for c in client.predict("sovits", api_name="/list_characters")}
    assert listed["tiny-30-32k"]["version"] == "3.0" and listed["tiny-30-32k"]["speakers"] == ["alice", "bob"]
    assert "Praat" in listed["tiny-30-48k"]["unavailable"]["f0_method"]
    assert not listed["rvc-files"]["usable"] and "looks like an RVC model" in listed["rvc-files"]["label"]
    assets = {(a["architecture"], a["asset"]): a for a in client.predict(api_name="/list_assets")}
    assert assets[("sovits", "hubert-soft-0d54a1f4.pt")]["present"]


def test_a_missing_hubert_soft_is_named(server: AppServer, tmp_path: Path) -> None:
    """Run in a fresh worker: the runtime is stopped first, so hubert-soft is not already loaded."""
    client = Client(server.url, verbose=False)
    for row in client.predict(api_name="/runtime_status"):
        if row.get("pid"):
            client.predict(row["name"], api_name="/stop_worker")
    asset = server.data_dir / "assets" / "hubert-soft-0d54a1f4.pt"
    asset.rename(asset.with_name("hubert-soft.away"))
    try:
        with pytest.raises(AppError, match="hubert-soft content encoder is missing.*assets/hubert-soft-0d54a1f4.pt"):
            convert(client, "asset-test", recording(tmp_path, "take.wav", voiced(1.0)), {})
    finally:
        asset.with_name("hubert-soft.away").rename(asset)


def test_a_voiced_recording_converts_at_each_models_rate(server: AppServer, tmp_path: Path) -> None:
    client = Client(server.url, verbose=False)
    take = voiced(2.5)
    path = recording(tmp_path, "take.wav", take)
    for character, rate in (("tiny-30-32k", 32000), ("tiny-30-48k", 48000)):
        out, info = convert(client, character, path, {"pitch_shift_semitones": 5, "speaker": "bob"} if rate == 32000 else {})
        audio, read_rate = soundfile.read(out)
        assert read_rate == info["sample_rate"] == rate
        assert abs(audio.size / rate - take.size / RATE) <= 0.05 * take.size / RATE
        assert float(np.abs(audio).max()) > 1e-3
    log = "\n".join(server.log)
    assert "transpose=5" in log and "speaker='bob'" in log and "speaker id 1" in log


def test_bad_inputs_are_clear_errors(server: AppServer, tmp_path: Path) -> None:
    client = Client(server.url, verbose=False)
    take = recording(tmp_path, "take.wav", voiced(1.0))
    with pytest.raises(AppError, match="rvc-files' cannot be used: no G_.*pth generator checkpoint"):
        convert(client, "rvc-files", take, {})
    with pytest.raises(AppError, match="pickled Python objects"):
        convert(client, "hostile", take, {})
    with pytest.raises(AppError, match="silent"):
        convert(client, "tiny-30-32k", recording(tmp_path, "silence.wav", np.zeros(RATE, dtype=np.float32)), {})
    with pytest.raises(AppError, match="too short"):
        convert(client, "tiny-30-32k", recording(tmp_path, "one.wav", np.full(1, 0.3, dtype=np.float32)), {})
    with pytest.raises(AppError, match="no pitch predictor|without pitch prediction"):
        convert(client, "tiny-30-32k", take, {"auto_predict_f0": True})
