"""Text to speech in the voice of a reference recording (``Manifest.reference``), through the app: the recording given
with the text is decoded and checked before the job is queued (missing but required, silent, too short, too long,
unreadable: refused, naming the problem, with no job and no worker), reaches the worker as the request's audio at its
own rate (mono, not pre-processed), keys the output cache, and the Generate tab shows the input under the reference's
label. The architecture is the test-only tests/fakes/fake_reference_adapter.py (required, 3-10 s; its take is the
reference itself), from its own spec root (tests/envs_reference), so only this module's app lists it."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import httpx
import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app.errors import UserFacingError
from app.request_checks import RequestChecks
from app.settings import Settings
from runtimes.manifest import Manifest, Reference
from tests.conftest import PROJECT_ROOT, TEST_SPECS, AppServer, start_app
from tests.fakes.fake_reference_adapter import MANIFEST

ARCH = "fake_reference"
REFERENCE_RATE = 22050
"""Not the app's nor any model's usual rate: a result at this rate came from the reference as given."""
LABEL = "Voice to speak like (required, 3-10 s)"


def tone(path: Path, seconds: float, rate: int = REFERENCE_RATE, amplitude: float = 0.3, channels: int = 2) -> str:
    t = np.arange(int(seconds * rate)) / rate
    mono = (amplitude * np.sin(2 * np.pi * 180.0 * t)).astype(np.float32)
    soundfile.write(str(path), np.stack([mono] * channels, axis=1), rate, subtype="FLOAT")
    return str(path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    extra = os.pathsep.join([str(TEST_SPECS), str(PROJECT_ROOT / "tests" / "envs_reference")])
    app = start_app(tmp_path_factory.mktemp("data"), extra_env={
        "VOICEGEN_EXTRA_SPEC_DIRS": extra, "VOICEGEN_DEFAULT_ARCHITECTURE": ARCH, "VOICEGEN_PREWARM": ""})
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(server: AppServer) -> Client:
    return Client(server.url, verbose=False)


def generate(client: Client, text: str, reference: Any, use_cache: bool = False) -> Any:
    return client.predict(ARCH, "echo", text, handle_file(reference) if reference else None, {}, "wav", {}, {}, use_cache,
                          api_name="/generate")


def test_the_generate_tab_shows_the_reference_input_with_its_label(server: AppServer) -> None:
    config = httpx.get(server.url + "config", timeout=30).json()
    audio_inputs: List[Dict[str, Any]] = [c["props"] for c in config["components"] if c.get("type") == "audio"]
    [shown] = [props for props in audio_inputs if props.get("label") == LABEL]
    assert shown.get("visible", True) is not False and shown.get("interactive") is not False
    architectures = {a["id"]: a for a in Client(server.url, verbose=False).predict(api_name="/list_architectures")}
    assert architectures[ARCH]["reference"] == {"required": True, "min_s": 3, "max_s": 10, "label": "Voice to speak like"}
    assert architectures["fake"]["reference"] is None


@pytest.mark.browser
def test_switching_architecture_relabels_the_recording_input(server: AppServer) -> None:
    from playwright.sync_api import expect

    from tests.app.test_browser import browser_page

    with browser_page(server.url) as page:
        expect(page.get_by_text(LABEL).first).to_be_visible(timeout=20_000)  # beside the text box, for the reference
        expect(page.get_by_label("Text", exact=True)).to_be_visible()
        page.get_by_label("Architecture").first.click()
        page.get_by_role("option", name="Fake converter (tests)").click()  # a converter: its input, under its own label
        expect(page.get_by_text("Input audio (upload or record)").first).to_be_visible(timeout=10_000)
        expect(page.get_by_text(LABEL)).to_have_count(0)
        page.get_by_label("Architecture").first.click()
        page.get_by_role("option", name=MANIFEST.display_name).click()
        expect(page.get_by_text(LABEL).first).to_be_visible(timeout=10_000)


def test_a_bad_or_missing_reference_is_refused_before_any_job(client: Client, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10)
    cases = [
        (tone(tmp_path / "short.wav", 2.0), "the reference recording is 2.0 s; it must be at least 3 s"),
        (tone(tmp_path / "long.wav", 12.0), "the reference recording is 12.0 s; it must be at most 10 s"),
        (tone(tmp_path / "silent.wav", 5.0, amplitude=0.0), "the reference recording is silent"),
        (str(corrupt), "the reference recording: corrupt.wav: not a readable audio file"),
        (None, "needs a reference recording of the voice to speak like \\(3-10 s\\)"),
    ]
    for reference, problem in cases:
        started = time.monotonic()
        with pytest.raises(AppError, match=problem):
            generate(client, "Say this in my voice.", reference)
        assert time.monotonic() - started < 15.0, "refused at once, not after a worker started"
    # refused before queuing: no job in history, and this architecture's worker never started
    assert client.predict(None, ARCH, api_name="/history") == []
    assert not [row for row in client.predict(api_name="/runtime_status") if row["pid"] and row["architecture"] == ARCH]


def test_text_with_a_reference_speaks_in_its_voice(client: Client, tmp_path: Path) -> None:
    path, info = generate(client, "Say this in my voice.", tone(tmp_path / "five.wav", 5.0))
    audio, rate = soundfile.read(path)
    # the take is the reference: whole (5 s), mono, at its own rate (not resampled by the converters' chain)
    assert rate == info["sample_rate"] == REFERENCE_RATE and audio.ndim == 1
    assert abs(audio.size / rate - 5.0) < 0.05
    [row] = client.predict(None, ARCH, api_name="/history")
    assert row["job_id"] == info["job_id"]


def test_two_references_do_not_share_a_cached_result(client: Client, tmp_path: Path) -> None:
    first = tone(tmp_path / "four.wav", 4.0)
    generate(client, "The same words.", first, use_cache=True)
    again_path, again = generate(client, "The same words.", first, use_cache=True)
    assert again["cached"] and abs(soundfile.info(again_path).duration - 4.0) < 0.05
    other_path, other = generate(client, "The same words.", tone(tmp_path / "six.wav", 6.0), use_cache=True)
    assert not other.get("cached") and abs(soundfile.info(other_path).duration - 6.0) < 0.05


def test_an_optional_reference_may_be_left_out_and_is_mixed_to_mono(tmp_path: Path) -> None:
    """The request checks alone: an architecture whose reference is optional takes text without one."""
    checks = RequestChecks(Settings(data_dir=tmp_path), None, None, None, None)  # type: ignore[arg-type]
    optional = Manifest.from_dict(dict(MANIFEST.to_dict(), reference={"required": False, "min_s": 1.0, "max_s": 0.0,
                                                                      "label": "Style reference"}))
    assert checks.reference(optional, None) is None
    reference = checks.reference(optional, tone(tmp_path / "stereo.wav", 1.5, rate=24000))
    assert reference is not None and reference.audio.shape == (36000,) and reference.sample_rate == 24000
    with pytest.raises(UserFacingError, match="at least 1 s"):
        checks.reference(optional, tone(tmp_path / "brief.wav", 0.5))
    assert checks.reference(Manifest.from_dict(dict(MANIFEST.to_dict(), reference=None)), tone(tmp_path / "x.wav", 5.0)) is None
    assert Reference(required=True).problem(5.0, 0.0) == "the reference recording is silent"


def test_the_http_speech_route_takes_the_reference_as_base64(server: AppServer, tmp_path: Path) -> None:
    import base64

    models = {m["id"]: m for m in httpx.get(server.url + "v1/models", timeout=30).json()["data"]}
    assert models[ARCH]["reference"]["required"] is True and models["fake"]["reference"] is None
    encoded = base64.b64encode(Path(tone(tmp_path / "five.wav", 5.0)).read_bytes()).decode("ascii")
    body = {"model": ARCH, "voice": "echo", "input": "Said in that voice.", "reference_audio": encoded, "cache": False}
    spoken = httpx.post(server.url + "v1/audio/speech", json=dict(body, stream=False), timeout=60)
    assert spoken.status_code == 200, spoken.text
    audio, rate = soundfile.read(io.BytesIO(spoken.content))
    assert rate == REFERENCE_RATE and abs(audio.shape[0] / rate - 5.0) < 0.1  # the reference reached the worker as given
    short = base64.b64encode(Path(tone(tmp_path / "two.wav", 2.0)).read_bytes()).decode("ascii")
    refused = httpx.post(server.url + "v1/audio/speech", json=dict(body, reference_audio=short), timeout=60)
    assert refused.status_code == 400 and "at least 3 s" in refused.json()["error"]["message"]
    missing = httpx.post(server.url + "v1/audio/speech", json={k: v for k, v in body.items() if k != "reference_audio"}, timeout=60)
    assert missing.status_code == 400 and "reference recording" in missing.json()["error"]["message"]
    garbled = httpx.post(server.url + "v1/audio/speech", json=dict(body, reference_audio="not base64!"), timeout=60)
    assert garbled.status_code == 400 and "base64" in garbled.json()["error"]["message"]
