"""A person puts GPT-SoVITS character folders (one with its own reference recording and transcript) and the shared
BERT/HuBERT in place and has a typed text spoken through the app: gradio_client and the plain HTTP route. The tiny
random models speak noise-like audio: what is checked is the rate, the length growing with the text, and the
folder checks the Models tab shows."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import soundfile
from gradio_client import Client

from tests.conftest import AppServer, start_app
from tests.gpt_sovits_fixtures import *  # noqa: F403  (its fixtures, found by name)

pytestmark = [pytest.mark.slow, pytest.mark.heavy_env]
RATE = 32000
SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gpt_sovits_models: Path) -> Iterator[AppServer]:
    data_dir = tmp_path_factory.mktemp("data")
    shutil.copytree(gpt_sovits_models / "assets", data_dir / "assets")
    shutil.copytree(gpt_sovits_models / "characters", data_dir / "characters" / "gpt_sovits")  # links copied as files
    app = start_app(data_dir, extra_env={"VOICEGEN_PREWARM": ""})
    yield app
    app.stop()


def test_folders_are_listed_and_a_text_is_spoken_at_32_khz(server: AppServer) -> None:
    client = Client(server.url, verbose=False)
    listed = {c["id"]: c for c in client.predict("gpt_sovits", api_name="/list_characters")}
    assert listed["tiny"]["usable"] and listed["tiny"]["version"] == "v1"
    assert "reference recording with its transcript" in listed["tiny"]["extras"]
    assert listed["tiny-v2"]["usable"] and listed["tiny-v2"]["version"] == "v2"
    assets = {(a["architecture"], a["asset"]): a for a in client.predict(api_name="/list_assets")}
    assert assets[("gpt_sovits", "chinese-roberta-wwm-ext-large")]["present"] and assets[("gpt_sovits", "chinese-hubert-base")]["present"]
    short, _ = client.predict("gpt_sovits", "tiny", SENTENCE, None, {}, "wav", {}, {}, False, None, api_name="/generate")
    long, info = client.predict("gpt_sovits", "tiny", " ".join([SENTENCE] * 3), None, {"top_k": 5}, "wav", {}, {}, False, None,
                                api_name="/generate")
    one, rate = soundfile.read(short)
    three, rate_three = soundfile.read(long)
    assert rate == rate_three == info["sample_rate"] == RATE
    assert three.shape[0] > 2.5 * one.shape[0] > 0


def test_the_http_speech_route_speaks_a_gpt_sovits_character(server: AppServer) -> None:
    response = httpx.post(server.url + "v1/audio/speech", json={"model": "gpt_sovits", "voice": "tiny", "input": "Hello there.",
                                                               "stream": False}, timeout=300)
    assert response.status_code == 200 and response.content[:4] == b"RIFF", response.text[:300]
    audio, rate = soundfile.read(io.BytesIO(response.content))
    assert rate == RATE and audio.shape[0] > RATE


def test_the_http_speech_route_speaks_a_v2_character(server: AppServer) -> None:
    response = httpx.post(server.url + "v1/audio/speech", json={"model": "gpt_sovits", "voice": "tiny-v2", "input": "Hello there. Goodbye.",
                                                               "stream": False}, timeout=300)
    assert response.status_code == 200 and response.content[:4] == b"RIFF", response.text[:300]
    audio, rate = soundfile.read(io.BytesIO(response.content))
    assert rate == RATE and audio.shape[0] > 0.2 * RATE


def test_a_character_without_a_reference_says_what_it_needs(server: AppServer) -> None:
    response = httpx.post(server.url + "v1/audio/speech", json={"model": "gpt_sovits", "voice": "tiny-noref", "input": "Hello.",
                                                               "stream": False}, timeout=300)
    assert response.status_code >= 400 and "has no reference recording" in response.text
