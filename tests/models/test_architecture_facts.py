"""An architecture's own facts live in its manifest, and the model manager reads them there: the fake test
architecture (tests/envs/fake, tests/fakes/fake_adapter.py) declares its import pattern and its name in the
established app's lists, and is picked up with no line of models/ knowing it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest

from models.errors import ImportRefusedError
from models.manager import ModelManager
from runtimes.adapter import CharacterInfo
from runtimes.manifest import Detect, Manifest
from runtimes.registry import adapter_class, discover, read_manifest
from tests.conftest import PROJECT_ROOT, TEST_SPECS


def manager_as_the_app_makes_it(data: Path) -> ModelManager:
    """What app/bootstrap.py hands the model manager: every spec's describer and manifest, nothing else."""
    specs = discover([PROJECT_ROOT / "envs", TEST_SPECS])
    return ModelManager(data, {name: adapter_class(spec).describe for name, spec in specs.items()},
                        manifests=[read_manifest(spec) for spec in specs.values()])


def folder_of(path: Path, names: List[str]) -> Path:
    path.mkdir(parents=True)
    for name in names:
        (path / name).write_bytes(b"{}")
    return path


def test_the_importer_tells_a_fake_model_by_the_fake_manifests_own_pattern(tmp_path: Path) -> None:
    manager = manager_as_the_app_makes_it(tmp_path / "data")
    result = manager.import_model(folder_of(tmp_path / "mine", ["voice.fakevoice", "fake.json"]), "My Fake", "cc0")
    assert result["architecture"] == "fake" and result["id"] == "fake/My Fake"
    assert (manager.layout.characters_dir("fake") / "My Fake" / "voice.fakevoice").is_file()
    with pytest.raises(ImportRefusedError, match=r"cannot tell the architecture .* fake \(\*\.fakevoice \+ fake\.json\)"):
        manager.import_model(folder_of(tmp_path / "half", ["voice.fakevoice"]), "Half", "")


def test_the_established_apps_list_named_for_the_fake_is_the_fakes(tmp_path: Path) -> None:
    manager = manager_as_the_app_makes_it(tmp_path / "data")
    listing = [{"Model Name": "Faked", "Files": [
        {"URL": "https://huggingface.co/someone/fake/resolve/main/a.fakevoice", "Download With": "HUGGINGFACE_HUB",
         "Download As": "a.fakevoice", "Size (bytes)": 2}]}]
    assert manager.add_catalogue(json.dumps(listing).encode(), "fake_hay_say.character_models.json")["entries"] == 1
    [row] = manager.search("faked")
    assert row["id"] == "fake/Faked" and row["status"] == "available"


def test_the_rule_that_fills_most_patterns_wins_and_a_tie_is_for_the_person_to_settle(tmp_path: Path) -> None:
    def manifest(name: str, detect: Detect) -> Manifest:
        return Manifest(name, name, "1", ("convert",), False, True, detect=detect)

    usable = {name: (lambda folder: CharacterInfo()) for name in ("one", "two", "loose")}
    manager = ModelManager(tmp_path / "data", usable, manifests=[
        manifest("one", Detect("*.bin", ("a.json",))), manifest("two", Detect("*.bin", ("b.json",))), manifest("loose", Detect("*.bin"))])
    assert manager.import_model(folder_of(tmp_path / "plain", ["m.bin"]), "Plain", "")["architecture"] == "loose"
    assert manager.import_model(folder_of(tmp_path / "first", ["m.bin", "a.json"]), "First", "")["architecture"] == "one"
    both = folder_of(tmp_path / "both", ["m.bin", "a.json", "b.json"])
    with pytest.raises(ImportRefusedError, match=r"fit several architectures \(one, two\): choose one"):
        manager.import_model(both, "Both", "")
    assert manager.import_model(both, "Both", "", architecture="two")["architecture"] == "two"
