"""Job files by key: the job service keeps recordings in its artifact store (rows hold keys), retention deletes through
the store and never a file a row names by key or by a legacy absolute path, rows written before keys are read as
before, and the app's coming wiring (outputs and masters put in the store, columns holding keys) works today."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest

from jobs.artifacts import ArtifactStore, LocalFolderStore
from jobs.retention import RetentionLoop, RetentionPolicy
from jobs.schema import INTERRUPTED, RUNNING, SUCCEEDED
from jobs.service import JobService
from jobs.spec import JobSpec
from jobs.store import JobStore, sqlite_url
from tests.conftest import wait_until
from tests.jobs.test_service import FileRunner


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data folder laid out as the app lays it out: outputs/, jobs/inputs/, jobs.sqlite3."""
    (tmp_path / "data" / "outputs").mkdir(parents=True)
    return tmp_path / "data"


@pytest.fixture
def app_like(data: Path) -> Iterator[Tuple[JobService, FileRunner, RetentionLoop]]:
    """Built exactly as app/bootstrap.py builds it today: an inputs folder, no artifact store named; retention over
    the outputs and inputs folders (the loop's thread not started: run_once is called)."""
    store = JobStore(sqlite_url(data / "jobs.sqlite3"))
    runner = FileRunner(data / "outputs")
    inputs_dir = data / "jobs" / "inputs"
    service = JobService(store, runner, inputs_dir, 1, 1)
    loop = RetentionLoop(store, RetentionPolicy(1, 1 << 30, 3600.0, (data / "outputs", inputs_dir), orphan_grace_s=0, grace_s=0))
    yield service, runner, loop
    runner.release.set()
    service.close()
    store.close()


def upload(folder: Path, content: bytes) -> str:
    path = folder / ("upload-%d.wav" % time.monotonic_ns())
    path.write_bytes(content)
    return str(path)


def test_the_apps_retention_keeps_a_waiting_jobs_recording_and_removes_it_with_its_job(app_like: Any, data: Path, tmp_path: Path) -> None:
    service, runner, loop = app_like
    assert service.artifacts.key_of(data / "jobs" / "inputs" / "x.wav") == "inputs/x.wav"  # the store is the folder above inputs
    blocker = service.submit(JobSpec("piper", "joe", "hold"), "a")
    assert wait_until(lambda: service.status(blocker, "a")["state"] == RUNNING, 5)
    waiting = service.submit(JobSpec("rvc", "x", "converted", audio_path=upload(tmp_path, b"RIFF waiting")), "a")
    key = service.store.get(waiting)["input_path"]
    assert key == "inputs/%s.wav" % waiting and (data / "jobs" / key).read_bytes() == b"RIFF waiting"
    orphan = data / "jobs" / "inputs" / "left-by-a-crash.wav"
    orphan.write_bytes(b"x")
    old = time.time() - 10
    os.utime(orphan, (old, old))
    os.utime(data / "jobs" / key, (old, old))
    loop.run_once()  # the sweep: every file older than its grace of 0 s that no row names
    assert not orphan.exists() and (data / "jobs" / key).is_file()  # named by key: kept
    runner.release.set()
    service.wait(waiting)
    service.wait(blocker)
    done = service.submit(JobSpec("piper", "joe", "the newest"), "a")
    service.wait(done)
    loop.run_once()  # keep 1 per owner: the two older jobs go, their files with them
    assert {row["id"] for row in service.store.page(None)} == {done}
    assert not (data / "jobs" / key).exists() and list((data / "jobs" / "inputs").iterdir()) == []
    assert Path(service.store.get(done)["output_path"]).is_file()


def test_rows_written_before_keys_are_read_and_removed_as_before(app_like: Any, data: Path) -> None:
    service, runner, _ = app_like
    legacy = data / "jobs" / "inputs" / ("b" * 32 + ".wav")
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"RIFF from an older version")
    service.store.add({"id": "b" * 32, "owner": "a", "session": "", "state": INTERRUPTED, "architecture": "rvc", "character": "x",
                       "text": "legacy", "input_name": "take.wav", "input_path": str(legacy), "input_bytes": 26, "request": {},
                       "created_at": time.time() - 60, "attempts": 1, "timings": {}, "output_bytes": 0, "cached": False,
                       "provenance": {}})
    assert service.get("b" * 32, "a")["input_path"] == str(legacy)
    runner.release.set()
    service.retry("b" * 32, "a")
    service.wait("b" * 32)
    assert Path(runner.prepared[-1].audio_path or "").read_bytes() == b"RIFF from an older version"
    # another take of it: a new key sharing the stored copy
    again = service.submit(JobSpec.from_row(service.get("b" * 32, "a")).edited({"use_cache": False}), "a")
    service.wait(again)
    again_path = data / "jobs" / "inputs" / ("%s.wav" % again)
    assert os.stat(again_path).st_ino == os.stat(legacy).st_ino
    service.delete("b" * 32, "a")  # its file goes through the store (the legacy path is one of its names)
    assert not legacy.exists() and again_path.read_bytes() == b"RIFF from an older version"


def test_a_folder_swept_above_the_store_still_sees_the_keys_rows_name(app_like: Any, data: Path, tmp_path: Path) -> None:
    service, runner, _ = app_like
    blocker = service.submit(JobSpec("piper", "joe", "hold"), "a")
    waiting = service.submit(JobSpec("rvc", "x", "converted", audio_path=upload(tmp_path, b"RIFF waiting")), "a")
    kept = data / "jobs" / service.store.get(waiting)["input_path"]
    stray = data / "jobs" / "stray.bin"
    stray.write_bytes(b"y")
    old = time.time() - 7200
    for path in (kept, stray):
        os.utime(path, (old, old))
    assert service.sweep_orphans([data], grace_s=3600) == 1  # the whole data folder, as one folder: only the stray goes
    assert kept.is_file() and not stray.exists() and (data / "jobs.sqlite3").exists()
    assert service.sweep_orphans(["inputs"], grace_s=3600) == 0  # a folder of keys of the service's store
    runner.release.set()
    service.wait(blocker)


class KeyRunner(FileRunner):
    """What the app does once wired to the store: its output (and a master) put in the artifact store, the columns
    holding keys; a "share:<job>" hit names an earlier job's keys (the output cache's one stored copy)."""

    artifacts: ArtifactStore

    def execute(self, prepared: Any, job_id: str, progress: Any, cancel: threading.Event, client: str) -> Tuple[Path, Dict[str, Any]]:
        spec: JobSpec = prepared
        if spec.text.startswith("share:"):
            earlier = self.made[spec.text[len("share:"):]]
            output_key, master_key = str(earlier[0]), str(earlier[1]) if earlier[1] else None
        else:
            output_key = "outputs/%s/%s.txt" % (time.strftime("%Y-%m-%d"), job_id)
            self.artifacts.put(output_key, spec.text.encode())
            master_key = output_key.replace(".txt", ".master.flac") if spec.output_format == "mp3" else None
            if master_key:
                self.artifacts.put(master_key, b"lossless " + spec.text.encode())
        self.made[job_id] = (Path(output_key), Path(master_key) if master_key else None)
        columns = {"output_path": output_key, "master_path": master_key, "output_bytes": self.artifacts.size(output_key),
                   "timings": {}, "provenance": {}}
        return self.artifacts.path_for(output_key), columns


def test_the_wiring_to_come_outputs_and_masters_by_key(data: Path) -> None:
    artifacts = LocalFolderStore(data / "jobs")
    store = JobStore(sqlite_url(data / "jobs.sqlite3"))
    runner = KeyRunner(data / "outputs")
    runner.artifacts = artifacts
    service = JobService(store, runner, artifacts=artifacts)
    loop = RetentionLoop(store, RetentionPolicy(2, 1 << 30, 3600.0, (data / "outputs",), orphan_grace_s=0, grace_s=0),
                         artifacts=service.artifacts)
    try:
        lossy = service.submit(JobSpec("piper", "joe", "with a master", output_format="mp3"), "a")
        assert Path(service.wait(lossy)).read_text() == "with a master"
        row = store.get(lossy)
        assert row["output_path"].startswith("outputs/") and row["master_path"].endswith(".master.flac")
        assert service.status(lossy, "a")["file"] == "%s.txt" % lossy
        shared = service.submit(JobSpec("piper", "joe", "share:" + lossy), "b")
        service.wait(shared)
        service.delete(lossy, "a")  # b's job names the same keys: they stay
        assert artifacts.exists(row["output_path"]) and artifacts.exists(row["master_path"])
        service.delete(shared, "b")
        assert not artifacts.exists(row["output_path"]) and not artifacts.exists(row["master_path"])
        kept = [service.submit(JobSpec("piper", "joe", "take %d" % index), "a") for index in range(3)]
        for job_id in kept:
            service.wait(job_id)
        store.update(kept[0], created_at=time.time() - 100)
        artifacts.put("outputs/orphan.txt", b"written, never recorded")
        old = time.time() - 10
        os.utime(artifacts.path_for("outputs/orphan.txt"), (old, old))
        loop.run_once()
        assert {r["id"] for r in store.page(None)} == set(kept[1:]) and store.get(kept[1])["state"] == SUCCEEDED
        assert sorted(artifacts.keys("outputs")) == sorted(store.get(j)["output_path"] for j in kept[1:])
    finally:
        service.close()
        store.close()
