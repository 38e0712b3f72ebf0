"""The artifact-store seam: the same cases against every implementation (the local folder, a shared folder being the
same class on a shared mount; the fsspec store over a local filesystem and over S3: s3fs against moto's S3 server on
loopback, a real HTTP S3 API), then what only a local folder does."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from jobs.artifacts import ArtifactStore, LocalFolderStore, is_legacy_path, local_path
from jobs.artifacts_fsspec import FsspecStore
from jobs.errors import ArtifactKeyError, JobError, MissingArtifactError
from tests.conftest import free_port

_S3: List[str] = []


def s3_endpoint() -> str:
    """moto's S3 server on a loopback port, started once for the session (a thread of this process)."""
    if not _S3:
        from moto.server import ThreadedMotoServer

        port = free_port()
        ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
        _S3.append("http://127.0.0.1:%d" % port)
    return _S3[0]


def s3_store(folder: Path) -> ArtifactStore:
    import boto3

    endpoint, bucket = s3_endpoint(), "voicegen-%s" % uuid.uuid4().hex[:12]
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    return FsspecStore("s3://%s/artifacts" % bucket, folder / "cache", key="test", secret="test", skip_instance_cache=True,
                       client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"})


STORES: Dict[str, Callable[[Path], ArtifactStore]] = {
    "local-folder": lambda folder: LocalFolderStore(folder / "store"),
    "fsspec-local": lambda folder: FsspecStore("file://%s" % (folder / "remote"), folder / "cache"),
    "fsspec-s3": s3_store,
}
BAD_KEYS = ["", "/etc/passwd", "../outside.wav", "inputs/../../outside.wav", "inputs/./a.wav", "inputs//a.wav", "inputs/",
            "inputs\\a.wav", "..\\outside.wav", "C:/Windows/win.ini", "c:relative.wav", "inputs/a\x00.wav", "."]


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    return STORES[request.param](tmp_path)


def read(store: ArtifactStore, key: str) -> bytes:
    with store.open(key) as handle:
        data = handle.read()
    assert store.path_for(key).read_bytes() == data  # the local path to read holds the same bytes
    return data


def test_put_bytes_or_a_file_and_read_it_back(store: ArtifactStore, tmp_path: Path) -> None:
    store.put("inputs/a.wav", b"RIFF a")
    source = tmp_path / "upload.wav"
    source.write_bytes(b"RIFF from a file")
    store.put("outputs/2025-01-31/b.wav", source)
    store.put("outputs/2025-01-31/c.wav", str(source))
    source.unlink()  # the store kept its own copy
    assert read(store, "inputs/a.wav") == b"RIFF a"
    assert read(store, "outputs/2025-01-31/b.wav") == read(store, "outputs/2025-01-31/c.wav") == b"RIFF from a file"
    assert store.exists("inputs/a.wav") and not store.exists("inputs/none.wav")
    assert store.size("outputs/2025-01-31/b.wav") == len(b"RIFF from a file")
    assert abs(store.modified("inputs/a.wav") - time.time()) < 60
    store.put("inputs/a.wav", b"replaced")
    assert read(store, "inputs/a.wav") == b"replaced"


def test_a_missing_key_is_a_clear_error(store: ArtifactStore, tmp_path: Path) -> None:
    for call in (store.path_for, store.open, store.size, store.modified):
        with pytest.raises(MissingArtifactError, match="nothing is stored under 'inputs/none.wav'"):
            call("inputs/none.wav")
    with pytest.raises(MissingArtifactError):
        store.link("inputs/none.wav", "inputs/other.wav")
    assert store.delete("inputs/none.wav") is False
    with pytest.raises(FileNotFoundError):  # a missing source file is the caller's mistake, said as such
        store.put("inputs/a.wav", tmp_path / "no-such-upload.wav")
    assert list(store.keys()) == []


def test_a_link_is_one_artifact_under_two_keys_each_deleted_on_its_own(store: ArtifactStore) -> None:
    store.put("inputs/first.wav", b"kept recording")
    store.link("inputs/first.wav", "inputs/second.wav")
    assert read(store, "inputs/second.wav") == b"kept recording"
    assert store.delete("inputs/first.wav") is True
    assert not store.exists("inputs/first.wav") and read(store, "inputs/second.wav") == b"kept recording"
    store.link("inputs/second.wav", "outputs/elsewhere/third.wav")
    assert store.delete("inputs/second.wav") and read(store, "outputs/elsewhere/third.wav") == b"kept recording"


def test_keys_list_a_folder_of_keys_for_the_sweep(store: ArtifactStore) -> None:
    for key in ("inputs/a.wav", "inputs/b.wav", "outputs/2025-01-30/x.wav", "outputs/2025-01-31/y.mp3", "outputs-other/z.wav"):
        store.put(key, key.encode())
    assert sorted(store.keys()) == ["inputs/a.wav", "inputs/b.wav", "outputs-other/z.wav", "outputs/2025-01-30/x.wav",
                                    "outputs/2025-01-31/y.mp3"]
    assert sorted(store.keys("outputs")) == ["outputs/2025-01-30/x.wav", "outputs/2025-01-31/y.mp3"]  # a folder, not a string prefix
    assert sorted(store.keys("outputs/")) == sorted(store.keys("outputs"))
    assert list(store.keys("nothing-here")) == []
    store.delete("outputs/2025-01-30/x.wav")
    assert sorted(store.keys("outputs")) == ["outputs/2025-01-31/y.mp3"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_a_key_that_escapes_the_store_is_refused_before_anything_is_touched(store: ArtifactStore, key: str, tmp_path: Path) -> None:
    store.put("inputs/a.wav", b"mine")
    calls: Dict[str, Callable[[], object]] = {
        "put": lambda: store.put(key, b"x"), "path_for": lambda: store.path_for(key), "open": lambda: store.open(key),
        "link from": lambda: store.link(key, "inputs/b.wav"), "link to": lambda: store.link("inputs/a.wav", key),
        "delete": lambda: store.delete(key), "exists": lambda: store.exists(key), "size": lambda: store.size(key),
        "modified": lambda: store.modified(key), "names": lambda: store.names(key),
    }
    for name, call in calls.items():
        with pytest.raises(ArtifactKeyError, match="artifact key"):
            call()
            pytest.fail("%s accepted %r" % (name, key))
    if key and not key.endswith("/"):  # "" is the whole store for keys() and "inputs/" a folder of keys; the others are refused there too
        with pytest.raises(ArtifactKeyError):
            list(store.keys(key))
    assert sorted(store.keys()) == ["inputs/a.wav"] and not (tmp_path / "outside.wav").exists()
    assert issubclass(ArtifactKeyError, JobError) and issubclass(ArtifactKeyError, ValueError)


def test_rows_written_before_keys_name_files_by_absolute_path(store: ArtifactStore, tmp_path: Path) -> None:
    """A legacy row value is an absolute path; the store tells its key where it holds the file, and lists every
    spelling a row may use (retention checks them all before a file goes)."""
    store.put("inputs/a.wav", b"old")
    local = store.path_for("inputs/a.wav")
    assert store.key_of(local) == "inputs/a.wav" and store.key_of(str(local)) == "inputs/a.wav"
    assert store.key_of(tmp_path / "elsewhere.wav") is None
    assert store.names("inputs/a.wav")[0] == "inputs/a.wav"
    assert is_legacy_path(str(local)) and not is_legacy_path("inputs/a.wav")
    assert local_path(store, "inputs/a.wav").read_bytes() == b"old" and local_path(store, str(local)) == Path(str(local))


# what only the local folder does


def test_the_local_folder_keeps_one_copy_for_a_link_and_its_files_are_the_keys(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "store")
    store.put("inputs/a.wav", b"one copy")
    store.link("inputs/a.wav", "inputs/b.wav")
    assert store.path_for("inputs/a.wav") == tmp_path / "store" / "inputs" / "a.wav"
    assert os.stat(store.path_for("inputs/a.wav")).st_ino == os.stat(store.path_for("inputs/b.wav")).st_ino
    assert store.names("inputs/a.wav") == ("inputs/a.wav", str(tmp_path / "store" / "inputs" / "a.wav"))


def test_the_local_folder_refuses_a_link_out_of_it_and_tidies_empty_folders(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "store")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.pem").write_bytes(b"private")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "escape").symlink_to(tmp_path / "secret")
    with pytest.raises(ArtifactKeyError, match="leads out of"):
        store.path_for("escape/key.pem")
    with pytest.raises(ArtifactKeyError, match="leads out of"):
        store.put("escape/new.wav", b"x")
    assert list(store.keys()) == [] and not (tmp_path / "secret" / "new.wav").exists()
    store.put("outputs/2025-01-31/a.wav", b"a")
    store.delete("outputs/2025-01-31/a.wav")
    assert not (tmp_path / "store" / "outputs" / "2025-01-31").exists()
    assert (tmp_path / "store" / "outputs").is_dir()  # the top-level folders stay (the app names them in its settings)
    store.put("outputs/2025-01-31/b.wav", b"b")  # and a later put makes its folder again
    assert store.path_for("outputs/2025-01-31/b.wav").read_bytes() == b"b"
