"""A person in a real (headless) Chromium: type text, press Generate, get a player with speech."""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import AppServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = pytest.mark.browser


@contextlib.contextmanager
def browser_page(url: str) -> Iterator[Any]:
    """A page of a real headless Chromium at ``url`` (the test is skipped where Chromium is not installed)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run does this)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(url)
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(app_server: AppServer) -> Iterator[object]:
    with browser_page(app_server.url) as opened:
        yield opened


def test_generate_from_the_ui(page: object, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    # text to speech: a text box, no recording, no preprocessing; Generate right there
    expect(page.get_by_label("Input audio (upload or record)")).to_have_count(0)
    expect(page.get_by_text("Preprocessing (input recordings)")).to_be_hidden()
    page.get_by_label("Text", exact=True).fill("Hello from a real browser.")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("audio[src]").first).to_be_attached(timeout=60_000)
    download = page.locator("a[download][href*='piper-joe-']").first
    expect(download).to_be_attached(timeout=10_000)
    body = page.request.get(download.get_attribute("href") or "").body()
    assert body[:4] == b"RIFF" and len(body) > 20_000  # a real WAV of about a second of speech
    expect(page.get_by_text("piper-joe-").first).to_be_visible(timeout=10_000)  # the history lists it
    page.screenshot(path=str(tmp_path / "generate.png"), full_page=True)


def test_empty_text_shows_a_clear_error(page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.get_by_label("Text", exact=True).fill("")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_text("needs text").first).to_be_visible(timeout=20_000)


def test_runtimes_panel_shows_real_workers(page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.get_by_role("tab", name="Runtimes").click()
    expect(page.get_by_text("no NVIDIA driver").first).to_be_visible(timeout=10_000)
    expect(page.get_by_text("ready", exact=True).filter(visible=True).first).to_be_visible(timeout=10_000)
    expect(page.get_by_text("joe", exact=True).filter(visible=True).first).to_be_visible(timeout=10_000)  # what it holds
    expect(page.get_by_text("Memory per worker (MB), last 30 minutes").first).to_be_visible(timeout=10_000)
    expect(page.locator(".vega-embed, canvas, svg").filter(visible=True).first).to_be_visible(timeout=10_000)  # the plot
    page.get_by_role("button", name="Pin (never unload)").click()
    expect(page.get_by_text("pinned: never unloaded").first).to_be_visible(timeout=10_000)
    page.get_by_role("button", name="Unload character").click()
    expect(page.get_by_text("piper / joe unloaded").first).to_be_visible(timeout=10_000)


def test_preview_preprocessing_and_save_a_preset(page: object, tmp_path: Path) -> None:
    import numpy as np
    import soundfile
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.get_by_role("tab", name="Generate").click()
    page.get_by_label("Architecture").first.click()
    page.get_by_role("option", name="Praat voice changer (recordings)").click()  # takes a recording: its controls appear
    expect(page.get_by_label("Text", exact=True)).to_be_hidden(timeout=10_000)
    recording = tmp_path / "take.wav"
    soundfile.write(str(recording), 0.3 * np.sin(2 * np.pi * 220 * np.arange(22050) / 22050), 22050)
    page.locator("input[type=file]").first.set_input_files(str(recording))
    page.get_by_text("Preprocessing (input recordings)").click()
    page.get_by_role("button", name="Preview preprocessing").click()
    download = page.locator("a[download][href*='preview-']").first
    expect(download).to_be_attached(timeout=20_000)
    body = page.request.get(download.get_attribute("href") or "").body()
    assert body[:4] == b"RIFF"
    page.get_by_text("Output format, cache and presets").click()
    page.get_by_label("Save current settings as").fill("from the browser")
    page.get_by_role("button", name="Save preset").click()
    expect(page.get_by_text("saved preset 'from the browser'").first).to_be_visible(timeout=10_000)


def test_history_survives_a_reload_and_plays_a_take(page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.reload()  # the browser keeps its history id: the jobs of this browser are still its own
    page.get_by_role("tab", name="History").click()  # opening the tab lists the jobs
    cell = page.get_by_text("Hello from a real browser.").filter(visible=True).first
    expect(cell).to_be_visible(timeout=10_000)
    cell.click()
    expect(page.get_by_label("Job", exact=True)).to_have_value(re.compile(r"^[0-9a-f]{32}$"), timeout=10_000)
    expect(page.locator("a[download][href*='piper-joe-']").first).to_be_attached(timeout=10_000)  # take A's player, after a reload
    expect(page.get_by_text('"provenance"').first).to_be_attached(timeout=10_000)  # how it was made
    page.get_by_role("button", name="Export").click()
    expect(page.locator("a[download][href*='-mp3.mp3']").first).to_be_attached(timeout=20_000)
    expect(page.get_by_text('"text": "Hello from a real browser."').first).to_be_attached(timeout=10_000)  # editable settings
    page.get_by_role("button", name="Another take (settings below)").click()
    message = page.get_by_text("new take: job").first
    expect(message).to_be_visible(timeout=60_000)
    new_job = re.search(r"[0-9a-f]{32}", message.inner_text())
    assert new_job is not None
    expect(page.get_by_text(new_job.group(0)).filter(visible=True).first).to_be_visible(timeout=10_000)  # the list has it too
    expect(page.locator("a[download][href*='piper-joe-'][href$='.wav']")).to_have_count(2, timeout=10_000)  # takes A and B


def test_speech_plays_while_it_is_spoken(page: object) -> None:
    """The live player gets the first sentences while the rest is still being made (the result player comes at the end)."""
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.get_by_role("tab", name="Generate").click()
    sentences = " ".join("This is sentence number %d of a longer paragraph read aloud." % n for n in range(1, 13))
    page.get_by_label("Text", exact=True).fill(sentences)
    before = page.locator("a[download][href*='piper-joe-']").count()
    with page.expect_response(lambda r: "/live/" in r.url) as live_response:
        page.get_by_role("button", name="Generate").click()
    response = live_response.value
    assert response.status == 200 and response.headers["content-type"] == "audio/mpeg"
    live = page.locator("#live-player audio")
    expect(live).to_be_attached(timeout=10_000)
    page.wait_for_function("document.querySelector('#live-player audio').readyState >= 2", timeout=30_000)
    # audio to play, and the whole take not made yet: the result player has not changed
    assert page.locator("a[download][href*='piper-joe-']").count() == before, "the take ended before the player had audio"
    page.wait_for_function("n => document.querySelectorAll(\"a[download][href*='piper-joe-']\").length > n", arg=before,
                           timeout=60_000)  # then the whole take arrives in the result player and the history
