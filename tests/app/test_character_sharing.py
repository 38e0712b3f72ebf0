"""A character folder the front has reaches a worker host once, verified: published to the shared artifact store with
a manifest of sha256s, fetched by a host that lacks it or holds another version (real folders, the real store)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from app.character_sharing import MARKER, CharacterSharing, SharingError, blob_key
from jobs.artifacts import LocalFolderStore
from jobs.errors import ArtifactKeyError


def make_character(characters: Path) -> Path:
    folder = characters / "rvc" / "ann"
    (folder / "index").mkdir(parents=True)
    (folder / "model.pth").write_bytes(b"weights " * 1000)
    (folder / "index" / "added.index").write_bytes(b"an index")
    return folder


def test_a_character_is_published_once_and_fetched_once_verified(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "shared")
    front, host = CharacterSharing(store, tmp_path / "front"), CharacterSharing(store, tmp_path / "host")
    folder = make_character(tmp_path / "front")
    assert front.publish("rvc", "ann")
    stored = store.path_for(blob_key(hashlib.sha256(b"weights " * 1000).hexdigest()))
    first_write = stored.stat().st_mtime_ns
    assert front.publish("rvc", "ann") and stored.stat().st_mtime_ns == first_write  # unchanged: not written again
    assert host.fetch("rvc", "ann")
    copy = tmp_path / "host" / "rvc" / "ann"
    assert (copy / "model.pth").read_bytes() == (folder / "model.pth").read_bytes()
    assert (copy / "index" / "added.index").read_bytes() == b"an index" and (copy / MARKER).is_file()
    assert not host.fetch("rvc", "ann") and host.fetches == 1  # the next job: one small file compared
    # the front's character changes: only the changed file travels, and the host takes the new version
    (folder / "index" / "added.index").write_bytes(b"a better index")
    (folder / "notes.txt").write_text("v2")
    assert front.publish("rvc", "ann") and stored.stat().st_mtime_ns == first_write
    assert host.fetch("rvc", "ann") and (copy / "index" / "added.index").read_bytes() == b"a better index"
    assert (copy / "notes.txt").read_text() == "v2" and host.fetches == 2
    assert not [p for p in copy.parent.iterdir() if p.name.startswith(".")]  # no staging or retired folders left


def test_a_shared_copy_that_does_not_match_is_refused_and_the_hosts_copy_kept(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "shared")
    front, host = CharacterSharing(store, tmp_path / "front"), CharacterSharing(store, tmp_path / "host")
    folder = make_character(tmp_path / "front")
    front.publish("rvc", "ann")
    host.fetch("rvc", "ann")
    (folder / "model.pth").write_bytes(b"new weights")
    front.publish("rvc", "ann")
    store.put(blob_key(hashlib.sha256(b"new weights").hexdigest()), b"cut sho")  # a copy changed or cut short in the store
    with pytest.raises(SharingError, match="character rvc/ann: its file model.pth in the shared store does not match its sha256"):
        host.fetch("rvc", "ann")
    copy = tmp_path / "host" / "rvc" / "ann"
    assert (copy / "model.pth").read_bytes() == b"weights " * 1000  # the working copy stays
    assert sorted(p.name for p in copy.parent.iterdir()) == ["ann"]


def test_builtin_voices_share_nothing_and_names_cannot_leave_the_store(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "shared")
    sharing = CharacterSharing(store, tmp_path / "front")
    assert not sharing.publish("piper", "joe") and not sharing.fetch("piper", "joe")  # no folder, nothing shared
    with pytest.raises(ArtifactKeyError):
        sharing.fetch("rvc", "../../etc")
    assert list(store.keys("")) == []


def test_shared_assets_folders_and_single_files_reach_a_host_once(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "shared")
    front = CharacterSharing(store, tmp_path / "front" / "characters")
    host = CharacterSharing(store, tmp_path / "host" / "characters")
    assets = tmp_path / "front" / "assets"
    (assets / "hubert").mkdir(parents=True)
    (assets / "hubert" / "model.safetensors").write_bytes(b"encoder " * 500)
    (assets / "rmvpe.pt").write_bytes(b"pitch model")
    assert front.publish_assets(["hubert", "rmvpe.pt", "not-here"]) == ["hubert", "rmvpe.pt"]
    assert host.fetch_assets(["hubert", "rmvpe.pt", "not-here"]) == ["hubert", "rmvpe.pt"]
    copies = tmp_path / "host" / "assets"
    assert (copies / "hubert" / "model.safetensors").read_bytes() == b"encoder " * 500
    assert (copies / "rmvpe.pt").read_bytes() == b"pitch model"  # a single file stays a file
    assert host.fetch_assets(["hubert", "rmvpe.pt"]) == []  # once
    stamp = store.path_for("models/assets/rmvpe.pt.manifest.json").stat().st_mtime_ns
    again = CharacterSharing(store, tmp_path / "front" / "characters")  # a restarted front over unchanged files
    assert again.publish_assets(["rmvpe.pt"]) == ["rmvpe.pt"]
    assert store.path_for("models/assets/rmvpe.pt.manifest.json").stat().st_mtime_ns == stamp  # not hashed and written again
    (assets / "rmvpe.pt").write_bytes(b"a newer pitch model")
    again.publish_assets(["rmvpe.pt"])
    assert host.fetch_assets(["rmvpe.pt"]) == ["rmvpe.pt"] and (copies / "rmvpe.pt").read_bytes() == b"a newer pitch model"
    assert sorted(p.name for p in copies.iterdir() if not p.name.endswith(".shared-manifest")) == ["hubert", "rmvpe.pt"]
