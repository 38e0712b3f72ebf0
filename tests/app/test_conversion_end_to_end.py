"""A person puts so-vits-svc and RVC character folders and their shared assets in place and converts
a recording, or a typed line, through the app (gradio_client and the plain HTTP route), with the
app's own pipeline around the conversion."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.conftest import AppServer, start_app


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sovits_models: Path, rvc_models: Path) -> Iterator[AppServer]:
    data_dir = tmp_path_factory.mktemp("data")
    shutil.copytree(sovits_models / "assets", data_dir / "assets")
    shutil.copytree(rvc_models / "assets", data_dir / "assets", dirs_exist_ok=True)
    shutil.copytree(sovits_models / "characters", data_dir / "characters" / "sovits")
    shutil.copytree(rvc_models / "characters", data_dir / "characters" / "rvc")
    (data_dir / "characters" / "sovits" / "half-copied").mkdir()
    shutil.copy(sovits_models / "characters" / "tiny-41" / "G_0.pth", data_dir / "characters" / "sovits" / "half-copied")
    app = start_app(data_dir, extra_env={"VOICEGEN_PREWARM": ""})
    yield app
    app.stop()


def test_character_folders_are_listed_with_version_and_speakers(server: AppServer) -> None:
    client = Client(server.url, verbose=False)
    assets = {(a["architecture"], a["asset"]): a for a in client.predict(api_name="/list_assets")}
    assert assets[("sovits", "contentvec")]["present"] and assets[("sovits", "contentvec")]["size_mb"] > 0
    assert assets[("rvc", "hubert")]["present"]
    assert not assets[("rvc", "rmvpe.pt")]["present"] and assets[("rvc", "rmvpe.pt")]["needed_for"] == "f0_method=rmvpe"
    listed = {c["id"]: c for c in client.predict("sovits", api_name="/list_characters")}
    assert listed["tiny-41"]["version"] == "4.1" and listed["tiny-41"]["speakers"] == ["alice", "bob"]
    assert listed["tiny-40"]["version"] == "4.0" and listed["tiny-41"]["label"] == "tiny-41 (v4.1, 2 speakers, cluster model)"
    assert not listed["half-copied"]["usable"] and "no config.json" in listed["half-copied"]["label"]
    assert "kmeans" in listed["tiny-40"]["unavailable"]["cluster_ratio"] and "cluster_ratio" not in listed["tiny-41"]["unavailable"]
    rvc = {c["id"]: c for c in client.predict("rvc", api_name="/list_characters")}
    assert (rvc["tiny-v1"]["version"], rvc["tiny-v2"]["version"]) == ("1", "2")  # read from the checkpoints, nothing loaded
    assert "no .index" in rvc["tiny-v1"]["unavailable"]["index_ratio"]
    architectures = {a["id"]: a for a in client.predict(api_name="/list_architectures")}
    assert "assets/rmvpe.pt, which is missing" in architectures["rvc"]["unavailable"]["f0_method=rmvpe"]
    assert all(not row["pid"] for row in client.predict(api_name="/runtime_status"))


def test_a_spoken_recording_is_converted(server: AppServer) -> None:
    client = Client(server.url, verbose=False)
    speech, spoken = client.predict("piper", "joe", "This sentence becomes a character's voice.", None, {}, "wav", {}, {}, False,
                                    api_name="/generate")
    path, info = client.predict("sovits", "tiny-41", "", handle_file(speech), {"speaker": "bob", "f0_method": "harvest"}, "flac",
                                {}, {}, False, api_name="/generate")
    audio, rate = soundfile.read(path)
    assert rate == info["sample_rate"] == 44100
    assert abs(audio.size / rate - spoken["duration_s"]) <= 0.05 * spoken["duration_s"]
    with pytest.raises(AppError, match="character 'half-copied' cannot be used: no config.json"):
        client.predict("sovits", "half-copied", "", handle_file(speech), {}, "wav", {}, {}, False, api_name="/generate")
    with pytest.raises(AppError, match="unknown speaker 'nobody'"):
        client.predict("sovits", "tiny-41", "", handle_file(speech), {"speaker": "nobody"}, "wav", {}, {}, False, api_name="/generate")


def test_the_enhancer_is_offered_with_its_weights_and_used(server: AppServer) -> None:
    client = Client(server.url, verbose=False)
    speech, spoken = client.predict("piper", "joe", "An enhanced take.", None, {}, "wav", {}, {}, False, api_name="/generate")
    path, info = client.predict("sovits", "tiny-41", "", handle_file(speech), {"nsf_hifigan_enhance": True, "enhancer_adaptive_key": 2},
                                "wav", {}, {}, False, api_name="/generate")
    audio, rate = soundfile.read(path)
    assert rate == info["sample_rate"] == 44100 and abs(audio.size / rate - spoken["duration_s"]) <= 0.05 * spoken["duration_s"]
    assets = {(a["architecture"], a["asset"]): a for a in client.predict(api_name="/list_assets")}
    assert assets[("sovits", "nsf_hifigan")]["present"]
    assert assets[("sovits", "nsf_hifigan")]["needed_for"] == "nsf_hifigan_enhance,enhancer_adaptive_key"
    weights = server.data_dir / "assets" / "nsf_hifigan"
    weights.rename(weights.with_name("nsf_hifigan.away"))
    try:
        gaps = {a["id"]: a for a in client.predict(api_name="/list_architectures")}["sovits"]["unavailable"]
        assert "assets/nsf_hifigan, which is missing" in gaps["nsf_hifigan_enhance"]
        assert "assets/nsf_hifigan, which is missing" in gaps["enhancer_adaptive_key"]
    finally:
        weights.with_name("nsf_hifigan.away").rename(weights)


def test_text_is_spoken_by_piper_then_converted_in_one_request(server: AppServer) -> None:
    client = Client(server.url, verbose=False)
    messages = []
    job = client.submit("sovits", "tiny-41", "Typed words, a character's voice.", None, {}, "wav", {}, {}, False,
                        {"architecture": "piper", "character": "joe", "options": {"length_scale": 1.2}}, api_name="/generate")
    path, info = job.result(timeout=180)
    for update in job.status().progress_data or []:
        messages.append(update.desc)
    audio, rate = soundfile.read(path)
    assert rate == 44100 and audio.size > rate and info["timings_s"]["speak_s"] > 0
    # the same through the plain HTTP route, as an OpenAI-style client asks for a character by name
    response = httpx.post(server.url + "v1/audio/speech", json={"model": "sovits", "voice": "tiny-41", "input": "Hello there."},
                          timeout=180)
    assert response.status_code == 200 and response.content[:4] == b"RIFF"
    written, written_rate = soundfile.read(io.BytesIO(response.content))
    assert written_rate == 44100 and written.size > 0.3 * written_rate


def test_text_is_spoken_by_piper_then_converted_by_rvc(server: AppServer) -> None:
    client = Client(server.url, verbose=False)
    listed = {c["id"]: c for c in client.predict("rvc", api_name="/list_characters")}
    assert listed["tiny-v2"]["usable"] and listed["tiny-v2"]["label"] == "tiny-v2 (v2, feature index, 40000 Hz)"
    path, info = client.predict("rvc", "tiny-v2", "Typed, spoken, then converted.", None, {"pitch_shift_semitones": 3}, "wav",
                                {}, {}, False, None, api_name="/generate")
    audio, rate = soundfile.read(path)
    assert rate == info["sample_rate"] == 40000 and audio.size > rate and "speak_s" in info["timings_s"]
    rows = {r["architecture"]: r for r in client.predict(api_name="/runtime_status") if r["pid"]}
    assert {"piper", "rvc"} <= set(rows) and rows["rvc"]["loaded"][0]["details"]["version"] == "v2"  # each stage in its own worker


@pytest.mark.browser
def test_in_the_browser_text_becomes_a_character_voice(server: AppServer) -> None:
    """A person picks so-vits-svc, types a line, gives no recording: the speak-first row is offered,
    and Generate gives a player."""
    from playwright.sync_api import expect

    from tests.app.test_browser import browser_page

    with browser_page(server.url) as page:
        expect(page.get_by_text("No recording? Type text to speak first")).to_be_hidden()  # Piper takes text itself
        page.get_by_label("Architecture").first.click()
        page.get_by_role("option", name="so-vits-svc 3.0/4.0/4.1 (voice conversion)").click()
        expect(page.get_by_text("No recording? Type text to speak first")).to_be_visible(timeout=10_000)
        expect(page.get_by_label("Text", exact=True)).to_be_hidden()  # a conversion takes a recording, or text to speak first
        expect(page.get_by_label("Character").first).to_have_value("tiny-40 (v4.0)", timeout=10_000)
        # options follow the character: no cluster model, so character likeness is disabled, with why
        page.get_by_text("Options", exact=True).first.click()  # folded by default
        likeness = page.get_by_label("range slider for Character likeness (cluster ratio)")
        expect(likeness).to_be_disabled(timeout=10_000)
        expect(page.get_by_text("Unavailable: this character has no kmeans*.pt cluster model")).to_be_visible()
        page.get_by_text("No recording? Type text to speak first").click()
        page.get_by_label("Text to speak first").fill("Typed words in a character's voice.")
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("audio[src]").first).to_be_attached(timeout=120_000)
        download = page.locator("a[download][href*='sovits-tiny-40-']").first
        expect(download).to_be_attached(timeout=10_000)
        body = page.request.get(download.get_attribute("href") or "").body()
        assert body[:4] == b"RIFF" and len(body) > 44_100  # a converted line at 44.1 kHz
        expect(page.locator("img[src]").filter(visible=True).first).to_be_visible(timeout=10_000)  # its spectrogram
