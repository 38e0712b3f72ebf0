"""A person turns a song into a cover in a character's voice, through the app: the song separated by Demucs (a tiny
random HTDemucs of demucs's own classes), its vocals converted by so-vits-svc (tiny random characters), remixed. Random
weights say nothing about how a cover sounds: the checks are the shapes, rates and lengths, that the mix is the
gain-weighted sum of the stems it hands back, and that another character on the same song reuses the stems (counted by
/metrics: the separation is not run again)."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.conftest import AppServer, start_app
from tests.demucs_fixtures import demucs_models, demucs_python, demucs_spec, install_demucs_models, mixed_song

__all__ = ["demucs_models", "demucs_python", "demucs_spec"]  # fixtures this module uses by name

SONG_RATE = 48000
"""Not the separator's 44.1 kHz: the cover must come back at the song's own rate."""
SONG_S = 4.0
SOVITS = {"f0_method": "dio", "speaker": "bob"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sovits_models: Path, demucs_models: Path) -> Iterator[AppServer]:
    data_dir = tmp_path_factory.mktemp("data")
    shutil.copytree(sovits_models / "assets", data_dir / "assets")
    shutil.copytree(sovits_models / "characters", data_dir / "characters" / "sovits")
    install_demucs_models(demucs_models, data_dir)
    app = start_app(data_dir, extra_env={"VOICEGEN_PREWARM": ""})
    yield app
    app.stop()


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("song") / "song.flac"
    soundfile.write(str(path), mixed_song(SONG_S, SONG_RATE).T, SONG_RATE, subtype="PCM_24")
    return path


def separations(server: AppServer) -> float:
    text = httpx.get(server.url.rstrip("/") + "/metrics", timeout=30).text
    found = re.search(r"^voicegen_cover_separations_total (\S+)$", text, re.MULTILINE)
    assert found, "the separation count is not in /metrics"
    return float(found.group(1))


def read(path: str) -> tuple:
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return audio.T, rate


def test_a_song_becomes_a_cover_and_another_character_reuses_its_stems(server: AppServer, song: Path) -> None:
    client = Client(server.url, verbose=False)
    before = separations(server)
    remix = {"vocals_gain_db": 2.0, "accompaniment_gain_db": -3.0}
    mix_path, stems, info = client.predict(handle_file(str(song)), "sovits", "tiny-41", SOVITS, {"remix": remix}, "wav",
                                           api_name="/cover")
    mix, rate = read(mix_path)
    assert rate == SONG_RATE and mix.shape == (2, int(SONG_S * SONG_RATE))  # the song's rate and length, stereo
    cover = info["cover"]
    assert cover["stems_reused"] is False and cover["separator"] == "demucs" and cover["separator_model"] == "htdemucs"
    assert separations(server) == before + 1
    by_name = {Path(p).stem: read(p) for p in stems}
    assert set(by_name) == {"vocals", "accompaniment", "converted_vocals"}
    assert info["job_id"] in cover["stems"]["converted_vocals"]  # this job's own
    for audio, stem_rate in by_name.values():
        assert stem_rate == SONG_RATE and audio.shape == mix.shape and np.isfinite(audio).all()
    converted, accompaniment = by_name["converted_vocals"][0], by_name["accompaniment"][0]
    assert np.abs(converted).max() > 1e-3  # the character sang something
    gain = 10 ** (cover["match_gain_db"] / 20)
    expected = gain * (10 ** (2 / 20) * converted + 10 ** (-3 / 20) * accompaniment)
    assert np.abs(mix - expected).max() < 2e-4  # the mix is the gain-weighted sum of its parts (16-bit output)

    # another character, same song: only conversion and the remix run
    _, _, again = client.predict(handle_file(str(song)), "sovits", "tiny-40", {"f0_method": "dio"}, {"remix": remix}, "wav",
                                 api_name="/cover")
    assert again["cover"]["stems_reused"] is True and separations(server) == before + 1
    assert again["cover"]["stems"]["vocals"] == cover["stems"]["vocals"]
    _, _, repeat = client.predict(handle_file(str(song)), "sovits", "tiny-40", {"f0_method": "dio"}, {"remix": remix}, "wav",
                                  api_name="/cover")  # the same cover again: made anew from the kept stems, its stems with it
    assert repeat["cover"]["stems_reused"] is True and repeat["job_id"] in repeat["cover"]["stems"]["converted_vocals"]
    record = client.predict(again["job_id"], api_name="/job")
    assert record["state"] == "succeeded"
    _, kept = client.predict(again["job_id"], api_name="/history_item")
    assert kept["provenance"]["cover"]["stems_reused"] is True and kept["provenance"]["cover"]["separator"] == "demucs"


def test_the_http_route_answers_the_mix_and_its_stems(server: AppServer, song: Path) -> None:
    with song.open("rb") as handle:
        answer = httpx.post(server.url.rstrip("/") + "/v1/audio/covers", files={"file": ("song.flac", handle, "audio/flac")},
                            data={"model": "sovits", "voice": "tiny-41", "options": '{"f0_method": "dio", "speaker": "alice"}',
                                  "cover": '{"remix": {"backing_vocals": "keep", "reverb_wet": 0.3}}'}, timeout=300)
    assert answer.status_code == 200, answer.text
    mix, rate = soundfile.read(io.BytesIO(answer.content), always_2d=True)
    assert rate == SONG_RATE and mix.shape == (int(SONG_S * SONG_RATE), 2)
    job_id = answer.headers["x-job-id"]
    stem = httpx.get(server.url.rstrip("/") + "/v1/jobs/%s/stems/accompaniment" % job_id, timeout=30)
    assert stem.status_code == 200 and soundfile.read(io.BytesIO(stem.content))[1] == SONG_RATE
    missing = httpx.get(server.url.rstrip("/") + "/v1/jobs/%s/stems/drums" % job_id, timeout=30)
    assert missing.status_code == 404 and "converted_vocals" in missing.json()["error"]["message"]


@pytest.mark.parametrize(("architecture", "character", "cover", "problem"), [
    ("piper", "joe", {}, "Piper .* does not convert recordings: a cover needs a conversion architecture"),
    ("sovits", "tiny-41", {"separator": "uvr"}, "unknown separator 'uvr' \\(available: demucs\\)"),
    ("sovits", "tiny-41", {"remix": {"vocals_gain_db": 99}}, "vocals_gain_db must be a number of dB from -60 to 24"),
    ("sovits", "tiny-41", {"separator_model": "htdemucs_6s"}, "htdemucs_6s"),
    ("sovits", "tiny-41", {"echo": True}, "cover takes separator, separator_model, separator_options, remix, not echo"),
])
def test_bad_covers_get_a_clear_message(server: AppServer, song: Path, architecture: str, character: str, cover: dict,
                                        problem: str) -> None:
    client = Client(server.url, verbose=False)
    with pytest.raises(AppError, match=problem):
        client.predict(handle_file(str(song)), architecture, character, {}, cover, "wav", api_name="/cover")


def test_a_cover_needs_a_song(server: AppServer) -> None:
    client = Client(server.url, verbose=False)
    with pytest.raises(AppError, match="a cover needs the song"):
        client.predict(None, "sovits", "tiny-41", {}, {}, "wav", api_name="/cover")
