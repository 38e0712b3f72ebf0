"""Downloads from a local stand-in for the hub and for plain HTTP hosts, through the real
``huggingface_hub`` and ``httpx``: resume, checksums, dead links, cancel, disk space, shared
dependencies downloaded once, and the established app's catalogue files accepted as they are."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from models.manager import ModelManager
from runtimes.adapters.rvc import RvcAdapter
from runtimes.adapters.sovits import SovitsAdapter
from tests.models.hub_server import Fault, Hub

MB = 1 << 20


def random_bytes(size: int, seed: int = 0) -> bytes:
    return hashlib.shake_256(b"%d" % seed).digest(size)


LOOPBACK = ("127.0.0.0/8",)
"""The operator's setting for a private mirror: the local stand-in hub listens on loopback."""


def manager_with(tmp_path: Path, hub: Hub, entries: List[Dict[str, Any]]) -> ModelManager:
    data = tmp_path / "data"
    (data / "catalogues").mkdir(parents=True, exist_ok=True)
    (data / "catalogues" / "test.json").write_text(json.dumps({"format": "voicegen-catalogue", "version": 1, "entries": entries}))
    return ModelManager(data, {"rvc": RvcAdapter.describe, "sovits": SovitsAdapter.describe}, hf_endpoint=hub.url, timeout_s=10,
                        allow_private_urls=LOOPBACK, manifests=[RvcAdapter.manifest, SovitsAdapter.manifest])


def hf_file(repo: str, path: str, **extra: Any) -> Dict[str, Any]:
    return dict({"source": "huggingface", "repo": repo, "path": path, "save_as": path.rsplit("/", 1)[-1]}, **extra)


def character(name: str, files: List[Dict[str, Any]], **extra: Any) -> Dict[str, Any]:
    return dict({"name": name, "architecture": "rvc", "files": files}, **extra)


def finished(manager: ModelManager, entry_id: str) -> Dict[str, Any]:
    task = manager.wait(entry_id, timeout_s=60)
    assert task.done.is_set(), "the download did not finish"
    return task.summary()


def nothing_left(manager: ModelManager) -> bool:
    staging = manager.layout.staging_dir
    return not staging.exists() or not any(staging.iterdir())


@pytest.mark.parametrize("source", ["huggingface", "url"])
def test_a_download_cut_by_the_server_resumes(tmp_path: Path, hub: Hub, source: str) -> None:
    from models.fetch import CHUNK_BYTES

    chunk = CHUNK_BYTES  # what the fetcher reads at a time, for the hub and for plain URLs
    data = random_bytes(chunk * 2 + MB)
    if source == "huggingface":
        hub.put_hf("someone/voices", "big/model.pth", data)
        spec = hf_file("someone/voices", "big/model.pth", sha256=hashlib.sha256(data).hexdigest())
        path = "/someone/voices/resolve/main/big/model.pth"
    else:
        url = hub.put_url("model.pth", data)
        spec = {"source": "url", "url": url, "save_as": "model.pth", "sha256": hashlib.sha256(data).hexdigest()}
        path = "/files/model.pth"
    hub.faults[path] = Fault(drop_after_bytes=chunk + MB // 2)
    manager = manager_with(tmp_path, hub, [character("Resumed", [spec])])
    manager.download("rvc/Resumed")
    summary = finished(manager, "rvc/Resumed")
    assert summary["state"] == "installed", summary
    assert (manager.layout.characters_dir("rvc") / "Resumed" / "model.pth").read_bytes() == data
    assert hub.gets[path] == 2  # the second request asked only for the rest
    assert hub.served_bytes[path] - len(data) <= chunk  # fetched twice: at most one chunk
    assert nothing_left(manager)


def test_a_checksum_mismatch_installs_nothing(tmp_path: Path, hub: Hub) -> None:
    hub.put_hf("someone/voices", "model.pth", b"tampered" * 1000)
    manager = manager_with(tmp_path, hub, [character("Tampered", [hf_file("someone/voices", "model.pth", sha256="0" * 64)])])
    manager.download("Tampered")
    summary = finished(manager, "rvc/Tampered")
    assert summary["state"] == "failed" and "model.pth: checksum mismatch" in summary["error"]
    assert "nothing was installed" in summary["error"]
    assert not (manager.layout.characters_dir("rvc") / "Tampered").exists() and nothing_left(manager)


def test_without_a_catalogue_hash_the_measured_one_is_kept_and_a_change_flagged(tmp_path: Path, hub: Hub) -> None:
    hub.put_hf("someone/voices", "model.pth", b"first" * 1000)
    manager = manager_with(tmp_path, hub, [character("Changing", [hf_file("someone/voices", "model.pth")])])
    manager.download("Changing")
    first = finished(manager, "rvc/Changing")
    assert first["state"] == "installed" and first["files"][0]["sha256"] == hashlib.sha256(b"first" * 1000).hexdigest()
    record = json.loads((manager.layout.characters_dir("rvc") / "Changing" / ".voicegen-model.json").read_text())
    assert record["files"][0]["sha256_from"] == "measured"
    manager.delete("rvc/Changing")
    hub.put_hf("someone/voices", "model.pth", b"second" * 1000)
    manager.download("Changing")
    second = finished(manager, "rvc/Changing")
    assert second["state"] == "installed" and "differs from the first download" in second["flags"][0]


def test_dead_links_fail_clearly_and_leave_nothing(tmp_path: Path, hub: Hub) -> None:
    manager = manager_with(tmp_path, hub, [
        character("Gone", [hf_file("someone/voices", "missing.pth")]),
        character("Gone too", [{"source": "url", "url": hub.url + "/files/missing.zip", "save_as": "m.zip"}]),
        character("On Drive", [{"source": "gdrive", "url": hub.url + "/files/gone-from-drive", "save_as": "m.pth"}]),
        character("On Mega", [{"source": "mega", "url": "https://mega.nz/file/abc", "save_as": "m.pth"}]),
    ])
    names = ("Gone", "Gone too", "On Drive", "On Mega")
    for name in names:
        manager.download(name)
    errors = {name: finished(manager, "rvc/" + name)["error"] for name in names}
    assert "missing.pth: dead link" in errors["Gone"]
    assert "m.zip: dead link (HTTP 404" in errors["Gone too"]
    assert "m.pth: Google Drive would not give" in errors["On Drive"] and "import it" in errors["On Drive"]
    assert "Mega downloads are not supported" in errors["On Mega"] and "import" in errors["On Mega"]
    assert nothing_left(manager) and not manager.layout.characters_dir("rvc").exists()


def test_offline_is_one_clear_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "catalogues").mkdir(parents=True)
    (data / "catalogues" / "test.json").write_text(json.dumps({"format": "voicegen-catalogue", "version": 1, "entries": [
        character("Far", [hf_file("someone/voices", "model.pth")])]}))
    manager = ModelManager(data, {"rvc": RvcAdapter.describe}, hf_endpoint="http://127.0.0.1:9", timeout_s=2,
                           allow_private_urls=LOOPBACK)
    manager.download("Far")
    summary = finished(manager, "rvc/Far")
    assert summary["state"] == "failed" and summary["error"].startswith("model.pth:") and "Traceback" not in summary["error"]
    assert nothing_left(manager)


def test_cancel_mid_way_leaves_nothing_and_others_carry_on(tmp_path: Path, hub: Hub) -> None:
    hub.put_hf("someone/voices", "slow.pth", random_bytes(4 * MB))
    hub.faults["/someone/voices/resolve/main/slow.pth"] = Fault(delay_per_chunk_s=0.05)
    hub.put_hf("someone/voices", "quick.pth", random_bytes(MB, seed=1))
    manager = manager_with(tmp_path, hub, [character("Slow", [hf_file("someone/voices", "slow.pth")]),
                                           character("Quick", [hf_file("someone/voices", "quick.pth")])])
    manager.download("Slow")
    manager.download("Quick")
    deadline = time.monotonic() + 20
    while manager.installer.tasks["rvc/Slow"].summary()["done_bytes"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    progress = manager.installer.tasks["rvc/Slow"].summary()
    assert progress["done_bytes"] > 0 and progress["total_bytes"] == 4 * MB and progress["state"] == "downloading"
    assert manager.cancel("rvc/Slow")
    assert finished(manager, "rvc/Slow")["state"] == "cancelled"
    assert finished(manager, "rvc/Quick")["state"] == "installed"
    assert not (manager.layout.characters_dir("rvc") / "Slow").exists() and nothing_left(manager)


def test_not_enough_disk_space_is_said_before_any_byte(tmp_path: Path, hub: Hub) -> None:
    hub.put_hf("someone/voices", "model.pth", b"x")
    manager = manager_with(tmp_path, hub, [character("Huge", [hf_file("someone/voices", "model.pth", size_bytes=50 << 40)])])
    manager.download("Huge")
    summary = finished(manager, "rvc/Huge")
    assert summary["state"] == "failed" and "not enough disk space: this download needs 54975.58 GB" in summary["error"]
    assert "GB are free" in summary["error"] and not hub.gets


def test_a_disk_that_fills_up_mid_download_leaves_nothing(tmp_path: Path, hub: Hub) -> None:
    small = tmp_path / "small"
    small.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small filesystem needs root and mount rights")
    try:
        hub.put_hf("someone/voices", "model.pth", random_bytes(4 * MB))
        (small / "catalogues").mkdir()
        (small / "catalogues" / "test.json").write_text(json.dumps({"format": "voicegen-catalogue", "version": 1, "entries": [
            character("Big", [hf_file("someone/voices", "model.pth")])]}))
        manager = ModelManager(small, {"rvc": RvcAdapter.describe}, hf_endpoint=hub.url, timeout_s=10, allow_private_urls=LOOPBACK)
        import models.installer as installer_module  # its free-space reserve (256 MB) would refuse before a byte

        reserve = installer_module.FREE_SPACE_RESERVE_BYTES
        installer_module.FREE_SPACE_RESERVE_BYTES = 0
        try:
            manager.download("Big")
            summary = finished(manager, "rvc/Big")
        finally:
            installer_module.FREE_SPACE_RESERVE_BYTES = reserve
        assert summary["state"] == "failed" and "the disk is full while downloading Big" in summary["error"]
        assert nothing_left(manager) and not (small / "characters" / "rvc" / "Big").exists()
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_a_shared_model_two_characters_need_is_downloaded_once(tmp_path: Path, hub: Hub) -> None:
    config = {"data": {"sampling_rate": 44100}, "model": {}, "spk": {"alice": 0, "bob": 1}}
    hub.put_hf("someone/multi", "G_100.pth", random_bytes(2 * MB))
    hub.put_hf("someone/multi", "config.json", json.dumps(config).encode())
    hub.faults["/someone/multi/resolve/main/G_100.pth"] = Fault(delay_per_chunk_s=0.01)
    for speaker in ("alice", "bob"):
        hub.put_hf("someone/speakers", "%s/speaker.json" % speaker, json.dumps({"speaker": speaker}).encode())
    links = [{"target": "G_100.pth", "save_as": "G_100.pth"}, {"target": "config.json", "save_as": "config.json"}]
    entries = [{"name": "Multi", "architecture": "sovits", "kind": "shared",
                "files": [hf_file("someone/multi", "G_100.pth"), hf_file("someone/multi", "config.json")]}]
    entries += [{"name": speaker.title(), "architecture": "sovits", "depends_on": ["sovits/shared/Multi"], "links": links,
                 "files": [hf_file("someone/speakers", "%s/speaker.json" % speaker)]} for speaker in ("alice", "bob")]
    manager = manager_with(tmp_path, hub, entries)
    threads = [threading.Thread(target=manager.download, args=(name,)) for name in ("Alice", "Bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    states = {name: finished(manager, "sovits/" + name)["state"] for name in ("Alice", "Bob")}
    assert states == {"Alice": "installed", "Bob": "installed"}
    assert hub.gets["/someone/multi/resolve/main/G_100.pth"] == 1
    for speaker in ("alice", "bob"):
        folder = manager.layout.characters_dir("sovits") / speaker.title()
        assert (folder / "G_100.pth").is_symlink() and (folder / "G_100.pth").resolve().parent.name == "Multi"
        info = SovitsAdapter.describe(str(folder))
        assert info.usable and list(info.speakers) == [speaker], info
    usage = manager.disk_usage()
    assert 2.0 < usage["by_architecture_mb"]["sovits"] < 2.2  # the shared model counted once, links not at all
    with pytest.raises(Exception, match="used by 2 character"):
        manager.delete("sovits/shared/Multi")
    freed = manager.delete("sovits/Alice")
    assert freed["freed_mb"] < 0.01 and not (manager.layout.characters_dir("sovits") / "Alice").exists()


def test_a_zip_download_is_unpacked_by_its_strategy(tmp_path: Path, hub: Hub) -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Some Model/weights/model.pth", b"w" * 100)
        archive.writestr("Some Model/added.index", b"i" * 100)
    url = hub.put_url("pack.zip", buffer.getvalue())
    manager = manager_with(tmp_path, hub, [character("Zipped", [{"source": "url", "url": url, "save_as": "pack.zip",
                                                                  "unzip": "flatten"}])])
    manager.download("Zipped")
    assert finished(manager, "rvc/Zipped")["state"] == "installed"
    folder = manager.layout.characters_dir("rvc") / "Zipped"
    assert sorted(p.name for p in folder.iterdir()) == [".voicegen-model.json", "added.index", "model.pth"]


def test_the_established_apps_catalogue_files_are_accepted_as_they_are(tmp_path: Path, hub: Hub) -> None:
    hay_say = [
        {"Model Name": "Cozy Glow", "License": "UNSPECIFIED", "Creator": "someone", "Files": [
            {"URL": "https://huggingface.co/therealvul/RVC/resolve/main/CozyGlow/CozyGlow.pth", "Download With": "HUGGINGFACE_HUB",
             "Download As": "CozyGlow.pth", "Size (bytes)": 55125567}]},
        {"Model Name": "Broken", "Files": [{"URL": "ftp://x", "Download With": "CARRIER_PIGEON", "Download As": "a"}]},
        {"Model Name": "Escaping", "Files": [{"URL": "https://files.catbox.moe/x.zip", "Download With": "REQUESTS",
                                              "Download As": "../../outside.zip", "Size (bytes)": 5}]},
    ]
    manager = manager_with(tmp_path, hub, [])
    result = manager.add_catalogue(json.dumps(hay_say).encode(), "rvc.character_models.json")
    assert result["entries"] == 1 and len(result["skipped"]) == 2
    assert "'Broken' skipped: unknown download method 'CARRIER_PIGEON'" in result["skipped"][0]
    assert "'Escaping' skipped" in result["skipped"][1] and "not a plain relative path" in result["skipped"][1]
    [row] = [r for r in manager.search("cozy") if r["id"] == "rvc/Cozy Glow"]
    assert row["status"] == "available" and row["size_mb"] == 55.1 and row["creator"] == "someone"
    assert row["depends_on"] == ["rvc/asset/hubert", "rvc/asset/rmvpe.pt"]  # shared assets come with it
    with pytest.raises(Exception, match="must be named <architecture>.character_models.json"):
        manager.add_catalogue(json.dumps(hay_say).encode(), "my-list.json")


def test_the_shipped_catalogue_offers_every_established_character(tmp_path: Path) -> None:
    from runtimes.adapters.gpt_sovits import GptSovitsAdapter
    from runtimes.adapters.sovits5.adapter import Sovits5Adapter
    from runtimes.adapters.styletts2 import StyleTTS2Adapter

    adapters = (RvcAdapter, SovitsAdapter, StyleTTS2Adapter, GptSovitsAdapter, Sovits5Adapter)
    manager = ModelManager(tmp_path, {a.manifest.architecture: a.describe for a in adapters})
    catalogue = manager.catalogue
    characters = [e for e in catalogue.entries.values() if e.kind == "character"]
    assert len(characters) >= 420 and not catalogue.problems
    names = ("sovits", "rvc", "styletts2", "gpt_sovits", "sovits5")
    by_arch = {arch: sum(1 for e in characters if e.architecture == arch) for arch in names}
    assert by_arch == {"sovits": 136, "rvc": 163, "styletts2": 4, "gpt_sovits": 27, "sovits5": 35}  # sovits: 105 of 4.x, 31 of 3.0
    rows = {r["architecture"]: r["status"] for r in manager.search("", "")}
    assert rows["rvc"] == rows["styletts2"] == rows["gpt_sovits"] == rows["sovits5"] == "available"
    assert rows["controllable_talknet"] == "architecture not installed"
    for entry in characters:
        if entry.architecture in by_arch:
            closure = catalogue.closure(entry)  # every dependency resolves: the shared assets come with the first character
            if entry.architecture in ("styletts2", "gpt_sovits"):
                assert {e.name for e in closure if e.kind == "asset"} == {a.name for a in adapters[2 + (entry.architecture == "gpt_sovits")]
                                                                           .manifest.assets}


def test_the_conversion_script_reproduces_the_shipped_catalogue(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    source = root.parent / "shared" / "reference" / "hay-say-catalogues"
    if not source.is_dir():
        pytest.skip("the established app's catalogue files are not beside this checkout")
    written = tmp_path / "hay-say.json"
    subprocess.run([sys.executable, str(root / "scripts" / "convert_hay_say_catalogues.py"), str(source), str(written)],
                   check=True, capture_output=True)
    assert json.loads(written.read_text()) == json.loads((root / "models" / "catalogues" / "hay-say.json").read_text())


def test_google_drive_files_come_through_gdown_with_progress_and_cancel(tmp_path: Path, hub: Hub) -> None:
    """gdown fetches any URL the way it fetches Drive's (Drive itself is not reachable here)."""
    data = random_bytes(2 * MB, seed=5)
    url = hub.put_url("drive-file", data)
    slow_url = hub.put_url("slow-drive-file", random_bytes(4 * MB, seed=6))
    hub.faults["/files/slow-drive-file"] = Fault(delay_per_chunk_s=0.05)
    manager = manager_with(tmp_path, hub, [
        character("From Drive", [{"source": "gdrive", "url": url, "save_as": "model.pth", "sha256": hashlib.sha256(data).hexdigest()}]),
        character("Slow Drive", [{"source": "gdrive", "url": slow_url, "save_as": "model.pth"}]),
    ])
    manager.download("From Drive")
    summary = finished(manager, "rvc/From Drive")
    assert summary["state"] == "installed", summary
    assert (manager.layout.characters_dir("rvc") / "From Drive" / "model.pth").read_bytes() == data
    assert summary["files"][0]["done_bytes"] == len(data) and summary["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    manager.download("Slow Drive")
    deadline = time.monotonic() + 20
    while manager.installer.tasks["rvc/Slow Drive"].summary()["done_bytes"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert manager.installer.tasks["rvc/Slow Drive"].summary()["total_bytes"] == 4 * MB
    manager.cancel("rvc/Slow Drive")
    assert finished(manager, "rvc/Slow Drive")["state"] == "cancelled"
    assert not (manager.layout.characters_dir("rvc") / "Slow Drive").exists() and nothing_left(manager)
