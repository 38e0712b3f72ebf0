"""StyleTTS 2 through the app started as the launcher starts it: a multi-speaker character laid out as the model manager
installs the established app's catalogue entry (its folder name cut to 150 characters, the entry's name in its record),
speaking in one of that model's precomputed styles; a single-speaker one speaking with no style or in the style of a
reference recording; through gradio_client and the plain HTTP route (streamed). The tiny random models speak noise-like
audio: what is checked is the rate, the length growing with the text and shrinking with speed, the pieces, and the
errors a person sees."""

from __future__ import annotations

import base64
import io
import json
import struct
from pathlib import Path
from typing import Iterator, Tuple

import httpx
import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from models.store import folder_name
from tests.conftest import AppServer, start_app
from tests.contract import voiced_phrases
from tests.styletts2_fixtures import styletts2_models, styletts2_python, styletts2_spec

__all__ = ["styletts2_models", "styletts2_python", "styletts2_spec"]  # fixtures this module uses by name

pytestmark = [pytest.mark.slow, pytest.mark.heavy_env]
RATE = 24000
WAV_HEADER_BYTES = 44
CATALOGUE_NAME = "Multi-speaker (40 epochs) (Mane 6, CMC, Princesses, Discord, Gilda, Zecora, Trixie, Starlight, Chrysalis, Tirek, " \
                 "Cozy Glow, Flim, Flam, and Shining Armor)"
MULTI = folder_name(CATALOGUE_NAME)
QUICK = {"diffusion_steps": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, styletts2_python: Path, styletts2_models: Path) -> Iterator[AppServer]:
    """The env built beforehand (the app would build it at the first job); the three assets where the model manager puts
    them; the checkpoints linked (200 MB each) into character folders."""
    data_dir = tmp_path_factory.mktemp("data")
    (data_dir / "assets").mkdir()
    for asset in ("styletts2_asr", "styletts2_jdc", "styletts2_plbert"):
        (data_dir / "assets" / asset).symlink_to(styletts2_models / "assets" / asset, target_is_directory=True)
    characters = data_dir / "characters" / "styletts2"
    multi = characters / MULTI
    multi.mkdir(parents=True)
    (multi / "epoch_2nd_40_1c872.pth").symlink_to(styletts2_models / "characters" / "tiny-multi" / "epoch_2nd_40_1c872.pth")
    (multi / "config.yml").write_bytes((styletts2_models / "characters" / "tiny-multi" / "config.yml").read_bytes())
    (multi / ".voicegen-model.json").write_text(json.dumps({
        "id": "styletts2/" + CATALOGUE_NAME, "name": CATALOGUE_NAME, "architecture": "styletts2", "kind": "character",
        "license": "unspecified", "creator": "", "origin": "", "source": "catalogue", "installed_at": "2026-12-04T00:00:00",
        "files": [], "flags": []}))
    single = characters / "tiny-single"
    single.mkdir()
    (single / "model.pth").symlink_to(styletts2_models / "characters" / "tiny-single" / "model.pth")
    (single / "config.yml").write_bytes((styletts2_models / "characters" / "tiny-single" / "config.yml").read_bytes())
    app = start_app(data_dir, extra_env={"VOICEGEN_PREWARM": ""})
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(server: AppServer) -> Client:
    return Client(server.url, verbose=False)


def reference_file(path: Path, seconds: float) -> str:
    soundfile.write(str(path), voiced_phrases(44100, seconds), 44100, subtype="FLOAT")
    return str(path)


def wav_samples(data: bytes) -> Tuple[np.ndarray, int]:
    """A streamed wav: its header, then 16-bit samples."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and data[36:40] == b"data", "not a wav header"
    return np.frombuffer(data[WAV_HEADER_BYTES:], dtype="<i2").astype(np.float32) / 32768.0, struct.unpack("<I", data[24:28])[0]


def test_styletts2_its_characters_and_assets_are_listed(client: Client) -> None:
    architectures = {a["id"]: a for a in client.predict(api_name="/list_architectures")}
    listed = architectures["styletts2"]
    assert {"style_source", "timbre_blend", "prosody_blend", "noise", "diffusion_steps", "embedding_scale", "split_sentences",
            "style_blend", "speed", "style_character", "style_trait"} == {o["name"] for o in listed["options"]}
    assert listed["reference"]["required"] is False and listed["reference"]["min_s"] == 1.5
    characters = {c["id"]: c for c in client.predict("styletts2", api_name="/list_characters")}
    multi = characters[MULTI]
    assert multi["usable"] and "Rarity" in multi["speakers"] and "precomputed styles" in multi["extras"]
    assert "style_source=none" in multi["unavailable"]
    assert characters["tiny-single"]["usable"] and "style_trait" in characters["tiny-single"]["unavailable"]
    assets = {(a["architecture"], a["asset"]): a for a in client.predict(api_name="/list_assets")}
    assert all(assets[("styletts2", name)]["present"] for name in ("styletts2_asr", "styletts2_jdc", "styletts2_plbert"))


def test_a_catalogue_character_speaks_in_a_precomputed_style(client: Client) -> None:
    one, info = client.predict("styletts2", MULTI, "Hello there.", None, dict(QUICK, style_character="Rarity", style_trait="Happy 1"),
                               "wav", {}, {}, False, api_name="/generate")
    three, _ = client.predict("styletts2", MULTI, "Hello there. How are you today? I am fine, thanks.", None,
                              dict(QUICK, style_character="Rarity", style_trait="Happy 1"), "wav", {}, {}, False, api_name="/generate")
    audio, rate = soundfile.read(one)
    longer, rate_three = soundfile.read(three)
    assert rate == rate_three == info["sample_rate"] == RATE and np.isfinite(audio).all()
    assert longer.size > 2.5 * audio.size > 0
    with pytest.raises(AppError, match="Rarity has no precomputed style 'Sad 2'"):
        client.predict("styletts2", MULTI, "Hello.", None, dict(QUICK, style_character="Rarity", style_trait="Sad 2"), "wav", {}, {},
                       False, api_name="/generate")


def test_a_reference_recording_gives_the_style_and_a_bad_one_is_refused(client: Client, tmp_path: Path) -> None:
    path, info = client.predict("styletts2", "tiny-single", "Hello there.", handle_file(reference_file(tmp_path / "me.wav", 3.0)),
                                QUICK, "wav", {}, {}, False, api_name="/generate")
    assert soundfile.info(path).samplerate == info["sample_rate"] == RATE
    with pytest.raises(AppError, match="the reference recording is 1.0 s; it must be at least 1.5 s"):
        client.predict("styletts2", "tiny-single", "Hello.", handle_file(reference_file(tmp_path / "short.wav", 1.0)), QUICK, "wav",
                       {}, {}, False, api_name="/generate")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10)
    with pytest.raises(AppError, match="corrupt.wav: not a readable audio file"):
        client.predict("styletts2", "tiny-single", "Hello.", handle_file(str(corrupt)), QUICK, "wav", {}, {}, False, api_name="/generate")
    with pytest.raises(AppError, match="multi-speaker model: it needs a style"):
        client.predict("styletts2", MULTI, "Hello.", None, dict(QUICK, style_source="none"), "wav", {}, {}, False, api_name="/generate")


def test_the_http_route_streams_a_piece_per_sentence_and_speed_is_the_models_own(server: AppServer, tmp_path: Path) -> None:
    body = {"model": "styletts2", "voice": "tiny-single", "input": "Hello there. How are you? Fine, thanks.", "cache": False}
    with httpx.stream("POST", server.url + "v1/audio/speech", json=body, timeout=300) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
        chunks = list(response.iter_bytes())
    audio, rate = wav_samples(b"".join(chunks))
    assert rate == RATE and len(chunks) >= 2 and audio.size > 0.5 * RATE
    fast = httpx.post(server.url + "v1/audio/speech", json=dict(body, speed=2.0, stream=False, response_format="flac"), timeout=300)
    assert fast.status_code == 200 and fast.headers["content-type"] == "audio/flac"
    fast_audio, fast_rate = soundfile.read(io.BytesIO(fast.content), dtype="float32")
    assert fast_rate == RATE and 0.35 * audio.size < fast_audio.size < 0.75 * audio.size, (fast_audio.size, audio.size)
    encoded = base64.b64encode(Path(reference_file(tmp_path / "me.wav", 2.5)).read_bytes()).decode("ascii")
    styled = httpx.post(server.url + "v1/audio/speech", json=dict(body, input="Hello.", reference_audio=encoded, stream=False), timeout=300)
    assert styled.status_code == 200, styled.text[:300]
    assert soundfile.read(io.BytesIO(styled.content))[1] == RATE
