"""The job service over a real SQLite store, real threads and real files. The runner here stands in for the
app's Workstation (which the end-to-end tests use): it writes a real output file and can be held or fail."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from sqlalchemy.exc import OperationalError

from jobs.errors import JobError, QuotaError, UnknownJobError
from jobs.fairness import Waiting, pick_next
from jobs.quotas import OwnerQuotas
from jobs.schema import CANCELLED, FAILED, INTERRUPTED, QUEUED, RUNNING, SCHEMA_REVISION, SUCCEEDED
from jobs.service import INTERRUPTED_REASON, JobService
from jobs.spec import JobSpec
from jobs.store import MIGRATIONS, JobStore, sqlite_url
from tests.conftest import wait_until


class FileRunner:
    """Writes ``text`` to a file per job; a job whose text is "hold" runs until released or cancelled."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.release = threading.Event()
        self.started: List[str] = []
        self.prepared: List[JobSpec] = []
        self.lock = threading.Lock()
        self.made: Dict[str, Tuple[Path, Optional[Path]]] = {}

    def prepare(self, spec: JobSpec) -> JobSpec:
        self.prepared.append(spec)
        if spec.text == "bad":
            raise JobError("the text 'bad' is refused")
        return spec

    def execute(self, prepared: Any, job_id: str, progress: Any, cancel: threading.Event, client: str) -> Tuple[Path, Dict[str, Any]]:
        spec: JobSpec = prepared
        with self.lock:
            self.started.append(spec.text)
        progress(0.5, "half way")
        if spec.text.startswith("hold"):
            while not self.release.wait(0.05):
                if cancel.is_set():
                    raise JobError("the job was cancelled")
        if spec.text == "explode":
            raise RuntimeError("/secret/path/model.pth is corrupt")
        if spec.text.startswith("share:"):  # what a cache hit did: the files of an earlier job
            path, master = self.made[spec.text[len("share:"):]]
        else:
            path = self.folder / ("%s.txt" % job_id)
            path.write_text(spec.text)
            master = path.with_suffix(".master.flac") if spec.output_format == "mp3" else None
            if master is not None:
                master.write_text("lossless " + spec.text)
        self.made[job_id] = (path, master)
        return path, {"output_path": str(path), "master_path": str(master) if master else None,
                      "output_bytes": path.stat().st_size + (master.stat().st_size if master else 0),
                      "timings": {"generate_s": 0.001}, "provenance": {"text": spec.text}}

    def message_for(self, exc: BaseException) -> str:
        return str(exc) if isinstance(exc, JobError) else "something went wrong (error id test)"


@pytest.fixture
def made(tmp_path: Path) -> Any:
    services: List[JobService] = []

    def make(max_concurrent: int = 4, max_per_architecture: int = 2, runner: Optional[FileRunner] = None) -> Tuple[JobService, FileRunner]:
        runner = runner or FileRunner(tmp_path)
        service = JobService(JobStore(sqlite_url(tmp_path / "jobs.sqlite3")), runner, tmp_path / "inputs", max_concurrent,
                             max_per_architecture)
        services.append(service)
        return service, runner

    yield make
    for service in services:
        service.runner.release.set()  # type: ignore[attr-defined]
        service.close()


def state(service: JobService, job_id: str) -> str:
    return str(service.status(job_id, None)["state"])


def test_a_job_is_recorded_run_and_waited_on(made: Any) -> None:
    service, _ = made()
    job_id = service.submit(JobSpec("piper", "joe", "hello"), owner="a")
    seen: List[Tuple[Optional[float], str]] = []
    path = service.wait(job_id, lambda fraction, message: seen.append((fraction, message)))
    assert Path(path).read_text() == "hello"
    row = service.get(job_id, "a")
    assert row["state"] == SUCCEEDED and row["attempts"] == 1 and row["provenance"] == {"text": "hello"}
    assert set(row["timings"]) == {"generate_s", "queue_wait_s"}
    assert row["finished_at"] >= row["started_at"] >= row["created_at"]


def test_a_bad_request_is_refused_at_submit_and_not_recorded(made: Any) -> None:
    service, _ = made()
    with pytest.raises(JobError, match="'bad' is refused"):
        service.submit(JobSpec("piper", "joe", "bad"), owner="a")
    assert service.store.count() == 0


def test_an_unexpected_failure_is_recorded_without_its_details(made: Any) -> None:
    service, _ = made()
    job_id = service.submit(JobSpec("piper", "joe", "explode"), owner="a")
    with pytest.raises(JobError, match="error id"):
        service.wait(job_id)
    row = service.get(job_id, "a")
    assert row["state"] == FAILED and "/secret" not in row["error"]


def test_another_owners_job_reads_as_unknown(made: Any) -> None:
    service, _ = made()
    job_id = service.submit(JobSpec("piper", "joe", "mine"), owner="a")
    service.wait(job_id)
    with pytest.raises(UnknownJobError):
        service.get(job_id, "b")
    assert not service.cancel(job_id, "b")
    assert service.store.page("b") == [] and [r["id"] for r in service.store.page("a")] == [job_id]


def test_a_slow_architecture_never_takes_every_slot(made: Any) -> None:
    service, runner = made(max_concurrent=3, max_per_architecture=2)
    slow = [service.submit(JobSpec("sovits", "x", "hold %d" % i), owner="a") for i in range(4)]
    assert wait_until(lambda: sum(state(service, j) == RUNNING for j in slow) == 2, 5)
    quick = service.submit(JobSpec("piper", "joe", "quick"), owner="a")
    assert Path(service.wait(quick)).read_text() == "quick"  # ran beside the two slow ones
    assert [state(service, j) for j in slow[2:]] == [QUEUED, QUEUED]
    assert service.queue_position(slow[2]) == 1 and service.queue_position(slow[3]) == 2
    assert service.queue_summary() == [{"architecture": "sovits", "running": 2, "queued": 2, "owners_waiting": 1}]
    runner.release.set()
    for job_id in slow:
        service.wait(job_id)


def test_owners_take_turns(made: Any) -> None:
    service, runner = made(max_concurrent=1, max_per_architecture=1)
    blocker = service.submit(JobSpec("piper", "joe", "hold"), owner="c")
    assert wait_until(lambda: state(service, blocker) == RUNNING, 5)
    greedy = [service.submit(JobSpec("piper", "joe", "a%d" % i), owner="a") for i in range(4)]
    other = service.submit(JobSpec("piper", "joe", "b0"), owner="b")
    runner.release.set()
    for job_id in [*greedy, other]:
        service.wait(job_id)
    order = runner.started[1:]
    assert order.index("b0") <= 1, order  # not behind all four of a's jobs


def test_cancel_a_queued_and_a_running_job(made: Any) -> None:
    service, _ = made(max_concurrent=1, max_per_architecture=1)
    running = service.submit(JobSpec("piper", "joe", "hold"), owner="a", session="s1")
    queued = service.submit(JobSpec("piper", "joe", "later"), owner="a", session="s1")
    assert wait_until(lambda: state(service, running) == RUNNING, 5)
    assert service.cancel(queued, "a")
    assert state(service, queued) == CANCELLED
    assert service.cancel_session("s1") == 1
    with pytest.raises(JobError, match="cancelled"):
        service.wait(running)
    assert state(service, running) == CANCELLED
    assert service.store.get(queued)["started_at"] is None  # it never started


def test_a_restart_interrupts_running_jobs_and_runs_queued_ones(made: Any, tmp_path: Path) -> None:
    first, _ = made(max_concurrent=1, max_per_architecture=1)
    running = first.submit(JobSpec("piper", "joe", "hold"), owner="a")
    queued = first.submit(JobSpec("piper", "joe", "after the restart"), owner="a")
    assert wait_until(lambda: state(first, running) == RUNNING, 5)
    # a second service over the same database: what a restarted app sees after the first one died
    second, second_runner = made(max_concurrent=1, max_per_architecture=1, runner=FileRunner(tmp_path))
    assert second.recover() == {"interrupted": 1, "requeued": 1, "failed": 0}
    assert second.store.get(running)["state"] == INTERRUPTED and second.store.get(running)["error"] == INTERRUPTED_REASON
    assert Path(second.wait(queued)).read_text() == "after the restart"
    second_runner.release.set()
    assert second.retry(running, "a") == running
    second.wait(running)
    assert second.store.get(running)["state"] == SUCCEEDED and second.store.get(running)["attempts"] == 2


def test_retention_removes_the_oldest_ended_jobs_and_their_files(made: Any) -> None:
    service, runner = made()
    done = []
    for index in range(5):
        job_id = service.submit(JobSpec("piper", "joe", "take %d" % index), owner="a")
        service.wait(job_id)
        done.append(job_id)
    active = service.submit(JobSpec("piper", "joe", "hold"), owner="a")
    assert wait_until(lambda: state(service, active) == RUNNING, 5)
    service.store.update(active, created_at=0.0)  # the oldest of all, but running: never removed
    outputs = {job_id: Path(service.store.get(job_id)["output_path"]) for job_id in done}
    assert service.prune(keep=2, max_bytes=1 << 30, max_age_s=3600, grace_s=0) == 3
    assert {r["id"] for r in service.store.page(None)} == {*done[3:], active}
    assert [outputs[j].exists() for j in done] == [False, False, False, True, True]
    runner.release.set()


def test_history_filters_and_searches(made: Any) -> None:
    service, _ = made()
    for text, architecture in (("Hello world", "piper"), ("Goodbye", "piper"), ("50% off_sale", "praat")):
        service.wait(service.submit(JobSpec(architecture, "joe", text), owner="a"))
    assert [r["text"] for r in service.store.page("a", query="hello")] == ["Hello world"]
    assert [r["text"] for r in service.store.page("a", architecture="praat")] == ["50% off_sale"]
    assert [r["text"] for r in service.store.page("a", query="0% o")] == ["50% off_sale"]  # % is literal, not a wildcard
    assert len(service.store.page("a", state=SUCCEEDED)) == 3 and service.store.page("a", state=FAILED) == []


def test_the_schema_is_versioned_and_an_existing_database_is_kept(tmp_path: Path) -> None:
    from sqlalchemy import text

    url = sqlite_url(tmp_path / "jobs.sqlite3")
    first = JobStore(url)
    first.add({"id": "a" * 32, "owner": "me", "session": "", "state": SUCCEEDED, "architecture": "piper", "character": "joe",
               "text": "kept", "request": {}, "created_at": 1.0, "attempts": 1, "timings": {}, "output_bytes": 0, "cached": False,
               "provenance": {}})
    first.close()
    again = JobStore(url)  # opening runs the migrations again: a no-op on a current schema, never a reset
    with again.engine.connect() as connection:
        assert connection.execute(text("select version_num from alembic_version")).scalar_one() == SCHEMA_REVISION
    assert again.get("a" * 32)["text"] == "kept"
    again.close()


def test_the_known_revision_is_the_newest_migration() -> None:
    """A database at SCHEMA_REVISION opens without Alembic: that constant must follow every new migration."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION


def test_a_waiting_recording_is_not_held_in_memory(made: Any, tmp_path: Path) -> None:
    """A queued job with a recording keeps no decoded audio while it waits (a batch of long recordings would fill
    memory): it is prepared again, from the kept copy, when it starts."""
    service, runner = made(max_concurrent=1, max_per_architecture=1)
    blocker = service.submit(JobSpec("rvc", "x", "hold"), owner="a")
    assert wait_until(lambda: state(service, blocker) == RUNNING, 5)
    recording = tmp_path / "take.wav"
    recording.write_bytes(b"RIFF....WAVE")
    waiting = service.submit(JobSpec("rvc", "x", "converted", audio_path=str(recording)), owner="a")
    assert service._active[waiting].prepared is None
    recording.unlink()  # the person's upload may go: the job has its own copy
    runner.release.set()
    service.wait(waiting)
    again = runner.prepared[-1]
    assert again.text == "converted" and again.audio_path is not None and Path(again.audio_path).read_bytes() == b"RIFF....WAVE"


class FlakyStore(JobStore):
    """A real SQLite store whose next ``fail_updates`` end-of-job writes raise what a locked database (or a full disk,
    or a PostgreSQL restart) raises through SQLAlchemy."""

    fail_updates = 0

    def update(self, job_id: str, **values: Any) -> None:
        if self.fail_updates > 0 and values.get("state") in (SUCCEEDED, FAILED, CANCELLED):
            self.fail_updates -= 1
            raise OperationalError("UPDATE jobs", {}, sqlite3.OperationalError("database is locked"))
        super().update(job_id, **values)


def test_a_failed_store_write_never_leaks_a_job_slot(tmp_path: Path) -> None:
    """Issue 17, defect 4: four failed end-of-job writes used to leave four job threads dead before they released
    their slots, and no job ran again until a restart."""
    store = FlakyStore(sqlite_url(tmp_path / "jobs.sqlite3"))
    runner = FileRunner(tmp_path)
    service = JobService(store, runner, tmp_path / "inputs", max_concurrent=4, max_per_architecture=4)
    try:
        store.fail_updates = 8  # the success write and the failure write of four jobs
        doomed = [service.submit(JobSpec("piper", "joe", "take %d" % index), owner="a") for index in range(4)]
        assert wait_until(lambda: not any(service.is_active(job_id) for job_id in doomed), 10)
        for job_id in doomed:
            with pytest.raises(JobError, match=r"could not be recorded .*error id [0-9a-f]+"):
                service.wait(job_id)
        after = service.submit(JobSpec("piper", "joe", "the store is back"), owner="a")
        assert wait_until(lambda: not service.is_active(after), 10)
        assert Path(service.wait(after)).read_text() == "the store is back" and state(service, after) == SUCCEEDED
    finally:
        service.close()


def run_to_end(service: JobService, spec: JobSpec, owner: str) -> str:
    job_id = service.submit(spec, owner=owner)
    service.wait(job_id)
    return job_id


def test_retention_counts_jobs_and_never_removes_a_file_another_job_names(made: Any, tmp_path: Path) -> None:
    """Issue 17, defect 5: an mp3 and its lossless master are one job, not two files; a file two rows name (a cache
    hit's) goes only with the last of them; files no job names are swept after a grace period."""
    service, _ = made()
    lossy = run_to_end(service, JobSpec("piper", "joe", "with a master", output_format="mp3"), "a")
    shared = run_to_end(service, JobSpec("piper", "joe", "share:" + lossy, output_format="mp3"), "b")
    plain = run_to_end(service, JobSpec("piper", "joe", "plain"), "a")
    row = service.store.get(lossy)
    output, master = Path(row["output_path"]), Path(row["master_path"])
    assert service.prune(keep=2, max_bytes=1 << 30, max_age_s=3600, grace_s=0) == 0  # two jobs of a's: nothing to do
    service.delete(lossy, "a")  # b's job names the same two files: they stay for b
    assert output.is_file() and master.is_file()
    assert service.store.get(shared)["master_path"] == str(master)
    service.delete(shared, "b")
    assert not output.exists() and not master.exists()
    orphan, fresh = tmp_path / "left-behind.wav", tmp_path / "being-written.wav"
    orphan.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    assert service.sweep_orphans([tmp_path], grace_s=3600) == 1
    assert not orphan.exists() and fresh.exists() and Path(service.store.get(plain)["output_path"]).exists()


def test_retention_and_quotas_are_per_owner(made: Any, tmp_path: Path) -> None:
    """Issue 17, defect 6: one owner's many jobs used to purge everyone's history, and nothing bounded one owner."""
    service, runner = made(max_concurrent=1, max_per_architecture=1)
    theirs = run_to_end(service, JobSpec("piper", "joe", "b's only take"), "b")
    service.store.update(theirs, created_at=time.time() - 600)  # older than all of a's
    mine = [run_to_end(service, JobSpec("piper", "joe", "a's take %d" % index), "a") for index in range(4)]
    assert service.prune(keep=2, max_bytes=1 << 30, max_age_s=3600, grace_s=0) == 2
    assert {r["id"] for r in service.store.page(None)} == {theirs, *mine[2:]}
    # quotas: jobs waiting, and bytes of kept recordings, per client
    service.quotas = OwnerQuotas(max_queued_jobs=2, max_kept_input_bytes=150)
    blocker = service.submit(JobSpec("piper", "joe", "hold"), owner="a")
    assert wait_until(lambda: state(service, blocker) == RUNNING, 5)
    service.submit(JobSpec("piper", "joe", "one"), owner="a")
    service.submit(JobSpec("piper", "joe", "two"), owner="a")
    with pytest.raises(QuotaError, match="2 jobs waiting; this server takes up to 2 per person"):
        service.submit(JobSpec("piper", "joe", "three"), owner="a")
    service.submit(JobSpec("piper", "joe", "b may"), owner="b")
    cancelled = service.submit(JobSpec("piper", "joe", "b's second"), owner="b")
    service.cancel(cancelled, "b")
    service.submit(JobSpec("piper", "joe", "b's third"), owner="b")
    with pytest.raises(QuotaError, match="2 jobs waiting"):  # a Retry queues again: the same quota
        service.retry(cancelled, "b")
    recording = tmp_path / "take.wav"
    recording.write_bytes(b"R" * 100)
    service.submit(JobSpec("rvc", "x", "", audio_path=str(recording)), owner="c")
    with pytest.raises(QuotaError, match="kept recordings"):
        service.submit(JobSpec("rvc", "x", "", audio_path=str(recording)), owner="c")
    runner.release.set()


def test_the_fair_pick_is_a_pure_function_and_its_memory_is_bounded(made: Any) -> None:
    """Issue 17, defect 8: the map of when each owner last started grew by one entry per HTTP request."""
    queue = [Waiting("j1", "x", "piper", 1.0), Waiting("j2", "y", "piper", 2.0), Waiting("j3", "x", "piper", 3.0)]
    assert pick_next(queue, running_per_client={}, last_start={"x": 5.0}, has_room=lambda a: True).job_id == "j2"
    assert pick_next(queue, running_per_client={"y": 1}, last_start={}, has_room=lambda a: True).job_id == "j1"
    assert pick_next(queue, running_per_client={}, last_start={}, has_room=lambda a: a != "piper") is None
    service, _ = made()
    service.last_start_limit = 8
    for index in range(30):
        run_to_end(service, JobSpec("piper", "joe", "from %d" % index), "client-%d" % index)
    assert len(service._last_start) <= 8


def test_retention_holds_a_client_of_many_sessions_to_one_share() -> None:
    """Review of issue 17: without logins every HTTP request is an owner of its own, so keeping N jobs per owner kept
    every job one address ever asked for (up to the age limit)."""
    from jobs.retention import doomed_jobs

    rows = [{"id": "j%d" % index, "owner": "http::%d" % index, "client": "addr:10.0.0.9", "created_at": 1000.0 - index,
             "output_bytes": 10} for index in range(5)]
    rows.append({"id": "other", "owner": "browser:b", "client": "addr:10.0.0.7", "created_at": 900.0, "output_bytes": 10})
    doomed = {row["id"] for row in doomed_jobs(rows, keep=2, max_bytes=1 << 30, max_age_s=1e9, grace_s=0, now=2000.0)}
    assert doomed == {"j2", "j3", "j4"}
