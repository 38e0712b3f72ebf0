"""A person in a real (headless) Chromium: uploads ten seconds of a voice, saves it as a voice, hears a typed line in it
(F5-TTS); then turns a song into a cover in a character's voice on the Covers tab and downloads its stems."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import soundfile

from tests.app.test_browser import browser_page
from tests.conftest import AppServer, start_app
from tests.contract import voiced_phrases
from tests.demucs_fixtures import demucs_models, demucs_python, demucs_spec, install_demucs_models, mixed_song
from tests.f5_tts_fixtures import ASSETS as F5_ASSETS
from tests.f5_tts_fixtures import f5_tts_built, f5_tts_python, f5_tts_spec

__all__ = ["demucs_models", "demucs_python", "demucs_spec", "f5_tts_built", "f5_tts_python", "f5_tts_spec"]  # fixtures by name

pytestmark = pytest.mark.browser
RATE = 44100


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, f5_tts_built: Path, demucs_models: Path, sovits_models: Path) -> Iterator[AppServer]:
    data_dir = tmp_path_factory.mktemp("data")
    for name in F5_ASSETS:
        shutil.copytree(f5_tts_built / "assets" / name, data_dir / "assets" / name)
    shutil.copytree(sovits_models / "assets", data_dir / "assets", dirs_exist_ok=True)
    shutil.copytree(sovits_models / "characters", data_dir / "characters" / "sovits")
    install_demucs_models(demucs_models, data_dir)
    app = start_app(data_dir, extra_env={"VOICEGEN_PREWARM": ""})
    yield app
    app.stop()


def test_a_voice_from_a_recording_then_a_cover(server: AppServer, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    recording = tmp_path / "my-voice.wav"
    voice = np.concatenate([np.zeros(RATE // 2), voiced_phrases(RATE, 9.0), np.zeros(RATE // 2)]).astype(np.float32)
    soundfile.write(str(recording), voice, RATE)
    song = tmp_path / "song.wav"
    soundfile.write(str(song), mixed_song(3.0, RATE).T, RATE)
    with browser_page(server.url) as page:
        page.get_by_label("Architecture").first.click()
        page.get_by_role("option", name="F5-TTS (any voice from a short recording)").click()
        expect(page.get_by_text("CC-BY-NC").first).to_be_visible(timeout=10_000)  # the weights' licence, where the model is chosen
        page.locator("input[type=file]").first.set_input_files(str(recording))
        page.get_by_text("Save the recording above as a voice").click()
        page.get_by_label("Voice name").fill("Dee")
        page.get_by_label("What the recording says (F5-TTS needs it)").fill("Hello there, this is how my voice sounds.")
        page.get_by_role("button", name="Save voice").click()
        expect(page.get_by_text("Saved voice").first).to_be_visible(timeout=30_000)
        expect(page.get_by_label("Character")).to_have_value(re.compile(r"^dee \("), timeout=10_000)  # the new voice is chosen
        page.get_by_label("Text", exact=True).fill("A typed line in my own voice.")
        page.get_by_role("button", name="Generate").click()
        download = page.locator("a[download][href*='f5_tts-dee-']").first
        expect(download).to_be_attached(timeout=180_000)
        body = page.request.get(download.get_attribute("href") or "").body()
        assert body[:4] == b"RIFF" and len(body) > 10_000
        page.get_by_role("button", name="Save voice").click()  # the same name again: a clear message, nothing lost
        expect(page.get_by_text("a voice called 'dee' exists").first).to_be_visible(timeout=20_000)

        page.get_by_role("tab", name="Covers").click()
        page.locator("#cover-song input[type=file]").set_input_files(str(song))
        page.get_by_label("Conversion architecture").click()
        page.get_by_role("option", name="so-vits-svc 3.0/4.0/4.1 (voice conversion)").click()
        expect(page.get_by_label("Character").filter(visible=True).first).to_have_value(re.compile(r"^tiny"), timeout=10_000)
        page.get_by_label("Character").filter(visible=True).first.click()
        page.get_by_role("option", name=re.compile(r"^tiny-40")).click()
        page.get_by_role("button", name="Make cover").click()
        cover = page.locator("a[download][href*='sovits-tiny-40-']").first
        try:
            expect(cover).to_be_attached(timeout=180_000)
        finally:
            page.screenshot(path=str(tmp_path / "covers.png"), full_page=True)
        for stem in ("vocals.wav", "accompaniment.wav", "converted_vocals.wav"):
            link = page.locator("a[download][href$='%s']" % stem).first
            expect(link).to_be_attached(timeout=10_000)
            assert page.request.get(link.get_attribute("href") or "").body()[:4] == b"RIFF"

        page.get_by_role("tab", name="History").click()  # the cover is in this browser's history, with its stems
        page.get_by_text("tiny-40", exact=True).filter(visible=True).first.click()
        expect(page.locator("a[download][href$='converted_vocals.wav']")).to_have_count(2, timeout=20_000)  # Covers tab's + History's
