"""A song cover beyond one host: the front has the characters and the separation model, the worker host has nothing of
them; the host fetches what the cover needs (the converter's character and assets, and Demucs's model), makes it, and
its stems land in the shared store, where another character's cover of the same song, on the host, reuses them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, Iterator, Tuple

import pytest
import soundfile
from gradio_client import Client, handle_file

from tests.app.test_distributed_end_to_end import cluster
from tests.conftest import AppServer
from tests.demucs_fixtures import demucs_models, demucs_python, demucs_spec, install_demucs_models, mixed_song

__all__ = ["demucs_models", "demucs_python", "demucs_spec"]  # fixtures this module uses by name

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def front_and_host(tmp_path_factory: pytest.TempPathFactory, sovits_models: Path,
                   demucs_models: Path) -> Iterator[Tuple[AppServer, Dict[str, str], Path]]:
    front_data, host_data = tmp_path_factory.mktemp("front-data"), tmp_path_factory.mktemp("host-data")
    shutil.copytree(sovits_models / "assets", front_data / "assets")
    shutil.copytree(sovits_models / "characters", front_data / "characters" / "sovits")
    install_demucs_models(demucs_models, front_data)
    with cluster(tmp_path_factory, front_data, host_data, {"VOICEGEN_SHARED_DIR": str(tmp_path_factory.mktemp("shared"))}) as made:
        yield made


def test_a_cover_made_on_a_host_that_had_none_of_its_models(front_and_host: Tuple[AppServer, Dict[str, str], Path],
                                                            tmp_path: Path) -> None:
    front, env, host_log = front_and_host
    song = tmp_path / "song.wav"
    soundfile.write(str(song), mixed_song(3.0, 44100).T, 44100)
    client = Client(front.url, verbose=False)
    mix, stems, info = client.predict(handle_file(str(song)), "sovits", "tiny-41", {"f0_method": "dio", "speaker": "bob"}, {}, "wav",
                                      api_name="/cover")
    assert soundfile.info(mix).frames == 3 * 44100 and len(stems) == 3, host_log.read_text()[-3000:]
    assert info["cover"]["stems_reused"] is False
    assert client.predict(info["job_id"], api_name="/job")["host"] == "host-a"
    host_data = Path(env["HOST_DATA"])
    assert (host_data / "assets" / "demucs_htdemucs").is_dir() and (host_data / "characters" / "sovits" / "tiny-41").is_dir()
    _, _, again = client.predict(handle_file(str(song)), "sovits", "tiny-40", {"f0_method": "dio"}, {}, "wav", api_name="/cover")
    assert again["cover"]["stems_reused"] is True and client.predict(again["job_id"], api_name="/job")["host"] == "host-a"
