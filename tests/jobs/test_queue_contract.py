"""The job-queue seam: the same cases against every implementation of ``jobs.queue.JobQueue`` (the in-process
``JobService``, and the distributed front of ``jobs.distributed`` with a real Celery worker on a real Redis server, its
host in this process), over a real SQLite job store, a real artifact folder and real threads. The runner stands in for
the app's Workstation (``FileRunner``: writes a real file per job; "hold" runs until released or cancelled, "explode"
fails unexpectedly, "bad" is refused)."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from celery.contrib.testing.worker import start_worker

from jobs.artifacts import LocalFolderStore, is_legacy_path
from jobs.distributed.bus import Bus
from jobs.distributed.celery_app import make_celery, publisher, start_host, worker_queues
from jobs.distributed.front import DistributedJobQueue
from jobs.distributed.host import JobHost
from jobs.distributed.routing import CPU_QUEUE
from jobs.errors import JobError, QuotaError, UnknownJobError
from jobs.queue import JobQueue
from jobs.quotas import OwnerQuotas
from jobs.schema import CANCELLED, FAILED, INTERRUPTED, RUNNING, SUCCEEDED
from jobs.service import INTERRUPTED_REASON, JobService
from jobs.spec import JobSpec
from jobs.store import JobStore, sqlite_url
from tests.conftest import wait_until
from tests.jobs.test_service import FileRunner
from tests.services import redis_server

Factory = Callable[..., JobQueue]


def in_process(database_url: str, artifacts_root: Path, runner: FileRunner, max_concurrent: int, max_per_architecture: int,
               quotas: OwnerQuotas, services: Services) -> JobQueue:
    return JobService(JobStore(database_url), runner, max_concurrent=max_concurrent, max_per_architecture=max_per_architecture,
                      quotas=quotas, artifacts=LocalFolderStore(artifacts_root))


def distributed(database_url: str, artifacts_root: Path, runner: FileRunner, max_concurrent: int, max_per_architecture: int,
                quotas: OwnerQuotas, services: Services) -> JobQueue:
    """The front, and one host of ``max_concurrent`` slots (a Celery worker with the threads pool) in this process, each
    with its own store connection and bus, as on two machines. ``max_per_architecture``: a host has slots, not lanes."""
    redis_url = services.redis_url()
    app = make_celery(redis_url)
    artifacts = LocalFolderStore(artifacts_root)
    host_bus = Bus(redis_url)
    host = JobHost(JobStore(database_url), runner, artifacts, "host-%d" % len(services.stack._exit_callbacks), lease_s=3.0,
                   publish=host_bus)
    stop = start_host(host, host_bus, [CPU_QUEUE], max_concurrent)
    services.stack.enter_context(start_worker(app, pool="threads", concurrency=max_concurrent, perform_ping_check=False,
                                              queues=worker_queues(host, [CPU_QUEUE]), shutdown_timeout=10))
    services.stack.callback(host.store.close)
    services.stack.callback(host_bus.close)
    services.stack.callback(stop.set)
    services.stack.callback(host.hand_back_all)
    front = DistributedJobQueue(JobStore(database_url), runner, artifacts, Bus(redis_url), publisher(app),
                                result_of=lambda row: Path(row["output_path"]), inputs_prefix="inputs", quotas=quotas, tick_s=0.05)
    assert wait_until(lambda: bool(front.bus.hosts()), 10)
    return front


IMPLEMENTATIONS: Dict[str, Callable[..., JobQueue]] = {"in-process": in_process, "distributed": distributed}


class Services:
    """What an implementation needs beyond the database and folder: a Redis server (started on first use, emptied for
    each test) and a place to stop what it started."""

    def __init__(self, stack: contextlib.ExitStack, server: Callable[[], str]) -> None:
        self.stack, self._server, self._flushed = stack, server, False

    def redis_url(self) -> str:
        url = self._server()
        if not self._flushed:
            import redis

            redis.Redis.from_url(url).flushall()
            self._flushed = True
        return url


@pytest.fixture(scope="module")
def redis_once() -> Iterator[Callable[[], str]]:
    with contextlib.ExitStack() as stack:
        url: List[str] = []

        def get() -> str:
            if not url:
                url.append(stack.enter_context(redis_server()).url)
            return url[0]
        yield get


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def make(request: pytest.FixtureRequest, tmp_path: Path,
         redis_once: Callable[[], str]) -> Iterator[Callable[..., Tuple[JobQueue, FileRunner]]]:
    """Queues of one implementation over one database and one artifact folder: a second one made is what a restarted
    app finds."""
    made: List[Tuple[JobQueue, FileRunner]] = []
    (tmp_path / "outputs").mkdir()
    with contextlib.ExitStack() as stack:
        services = Services(stack, redis_once)

        def factory(max_concurrent: int = 4, max_per_architecture: int = 2,
                    quotas: OwnerQuotas = OwnerQuotas()) -> Tuple[JobQueue, FileRunner]:
            runner = FileRunner(tmp_path / "outputs")
            queue = IMPLEMENTATIONS[request.param](sqlite_url(tmp_path / "jobs.sqlite3"), tmp_path / "artifacts", runner,
                                                   max_concurrent, max_per_architecture, quotas, services)
            made.append((queue, runner))
            return queue, runner

        factory.kind = request.param  # type: ignore[attr-defined]
        yield factory
        for queue, runner in made:
            runner.release.set()
            queue.close()
            queue.store.close()


def state(queue: JobQueue, job_id: str) -> str:
    return str(queue.status(job_id, None)["state"])


def recording(folder: Path, content: bytes = b"RIFF....WAVEfmt ") -> str:
    path = folder / "upload.wav"
    path.write_bytes(content)
    return str(path)


def test_the_queue_is_the_seam() -> None:
    for implementation in (JobService, DistributedJobQueue):
        assert JobQueue in implementation.__mro__  # declared, so mypy checks every method against the protocol


def test_a_job_is_submitted_run_and_waited_on(make: Any) -> None:
    queue, _ = make()
    job_id = queue.submit(JobSpec("piper", "joe", "hello"), "a", "tab-1", client="browser-1")
    result = queue.wait(job_id)
    assert Path(result).read_text() == "hello"
    status = queue.status(job_id, "a")
    assert status["state"] == SUCCEEDED and status["error"] is None and status["file"] == Path(result).name
    assert status["queue_position"] is None and not queue.is_active(job_id)
    row = queue.get(job_id, "a")
    assert row["attempts"] == 1 and row["client"] == "browser-1" and row["session"] == "tab-1"
    assert queue.store.get(job_id)["state"] == SUCCEEDED


def test_progress_and_the_place_in_line_are_watched(make: Any) -> None:
    queue, runner = make(max_concurrent=1, max_per_architecture=1)
    running = queue.submit(JobSpec("piper", "joe", "hold"), "a")
    assert wait_until(lambda: queue.status(running, "a")["progress"] == 0.5, 5)
    assert queue.status(running, "a")["message"] == "half way" and state(queue, running) == RUNNING
    waiting = queue.submit(JobSpec("piper", "joe", "next"), "b")
    later = queue.submit(JobSpec("piper", "joe", "after"), "b")
    assert queue.queue_position(waiting) == 1 and queue.queue_position(later) == 2
    assert queue.status(waiting, "b")["message"] == "queued: next for piper (1 of its jobs running)"
    assert queue.status(later, "b")["message"] == "queued: 1 job(s) ahead for piper"
    assert queue.queue_summary() == [{"architecture": "piper", "running": 1, "queued": 2, "owners_waiting": 1}]
    seen: Dict[str, List[Tuple[Optional[float], str]]] = {running: [], waiting: []}
    watchers = [threading.Thread(target=queue.wait, args=(job_id, lambda fraction, message, job_id=job_id: seen[job_id].append(
        (fraction, message)))) for job_id in (running, waiting)]
    for watcher in watchers:
        watcher.start()
    assert wait_until(lambda: (0.5, "half way") in seen[running], 5)  # a running job's progress, as it reports it
    assert wait_until(lambda: (None, "queued: next for piper (1 of its jobs running)") in seen[waiting], 5)  # a place in line
    runner.release.set()
    for watcher in watchers:
        watcher.join(10)
        assert not watcher.is_alive()
    queue.wait(later)
    assert queue.queue_summary() == []


def test_cancel_a_queued_job_a_running_one_and_one_whose_waiter_gives_up(make: Any) -> None:
    queue, _ = make(max_concurrent=1, max_per_architecture=1)
    running = queue.submit(JobSpec("piper", "joe", "hold"), "a", "tab-1")
    queued = queue.submit(JobSpec("piper", "joe", "never"), "a", "tab-1")
    other_tab = queue.submit(JobSpec("piper", "joe", "hold, other tab"), "a", "tab-2")
    assert wait_until(lambda: state(queue, running) == RUNNING, 5)
    assert not queue.cancel(queued, "b")  # another owner's job: nothing happens
    assert queue.cancel(queued, "a") and state(queue, queued) == CANCELLED
    assert queue.store.get(queued)["started_at"] is None  # it never started
    with pytest.raises(JobError, match="cancelled"):
        queue.wait(queued)
    assert queue.cancel_session("tab-1") == 1  # the running one; the queued one had ended
    with pytest.raises(JobError, match="the job was cancelled"):
        queue.wait(running)
    assert state(queue, running) == CANCELLED and not queue.cancel(running, "a")
    gave_up = threading.Event()
    gave_up.set()
    with pytest.raises(JobError, match="cancelled"):
        queue.wait(other_tab, cancel=gave_up)  # the waiter left (a closed browser tab): the job goes too
    assert state(queue, other_tab) == CANCELLED
    assert queue.store.get(queued)["error"] == "cancelled before it started"


def test_clients_take_turns(make: Any) -> None:
    """The fair pick counts the stable client, not the owner or the request: a client with four jobs waiting does not
    keep another client (of the same shared owner) behind all four."""
    queue, runner = make(max_concurrent=1, max_per_architecture=1)
    blocker = queue.submit(JobSpec("piper", "joe", "hold"), "shared", client="c")
    assert wait_until(lambda: state(queue, blocker) == RUNNING, 5)
    greedy = [queue.submit(JobSpec("piper", "joe", "a%d" % index), "shared", client="a") for index in range(4)]
    other = queue.submit(JobSpec("piper", "joe", "b0"), "shared", client="b")
    runner.release.set()
    for job_id in [*greedy, other]:
        queue.wait(job_id)
    order = runner.started[1:]
    assert order.index("b0") <= 1, order
    assert order.index("a0") < order.index("a1") < order.index("a2") < order.index("a3")  # one client's own in order


def test_a_restart_interrupts_what_ran_and_runs_what_waited_from_its_kept_recording(make: Any, tmp_path: Path) -> None:
    if make.kind == "distributed":
        pytest.skip("a restarted front interrupts nothing: jobs run on hosts; tests/jobs/test_distributed.py covers hosts that die")
    first, _ = make(max_concurrent=1, max_per_architecture=1)
    running = first.submit(JobSpec("piper", "joe", "hold"), "a")
    assert wait_until(lambda: state(first, running) == RUNNING, 5)
    upload = recording(tmp_path, b"RIFF kept for after the restart")
    queued = first.submit(JobSpec("rvc", "x", "converted after the restart", audio_path=upload), "a")
    lost = first.submit(JobSpec("rvc", "x", "its copy went", audio_path=upload), "a")
    Path(upload).unlink()  # the person's upload goes: the job has its own copy, by key
    assert not is_legacy_path(first.store.get(queued)["input_path"])
    first.artifacts.delete(first.store.get(lost)["input_path"])
    # a second queue over the same database and artifacts: what a restarted app finds after the first one died
    second, second_runner = make(max_concurrent=1, max_per_architecture=1)
    assert second.recover() == {"interrupted": 1, "requeued": 1, "failed": 1}
    assert second.store.get(running)["state"] == INTERRUPTED and second.store.get(running)["error"] == INTERRUPTED_REASON
    assert second.store.get(lost)["state"] == FAILED
    assert "input recording is no longer kept" in second.store.get(lost)["error"]
    assert Path(second.wait(queued)).read_text() == "converted after the restart"
    again = second_runner.prepared[-1]
    assert again.audio_path is not None and Path(again.audio_path).read_bytes() == b"RIFF kept for after the restart"
    second_runner.release.set()
    assert second.retry(running, "a") == running
    second.wait(running)
    assert second.store.get(running)["state"] == SUCCEEDED and second.store.get(running)["attempts"] == 2
    assert second.recover() == {"interrupted": 0, "requeued": 0, "failed": 0}  # nothing twice


def test_failures_come_back_as_clear_messages(make: Any, tmp_path: Path) -> None:
    queue, runner = make(max_concurrent=1, max_per_architecture=1, quotas=OwnerQuotas(max_queued_jobs=1))
    with pytest.raises(JobError, match="the text 'bad' is refused"):
        queue.submit(JobSpec("piper", "joe", "bad"), "a")
    assert queue.store.count() == 0  # refused before anything is recorded
    exploded = queue.submit(JobSpec("piper", "joe", "explode"), "a")
    with pytest.raises(JobError, match=r"something went wrong \(error id test\)"):
        queue.wait(exploded)
    assert queue.status(exploded, "a")["error"] == "something went wrong (error id test)"  # not the internal details
    fine = queue.submit(JobSpec("piper", "joe", "fine"), "a")
    queue.wait(fine)
    with pytest.raises(JobError, match="job %s is succeeded: only a failed, cancelled or interrupted job can be retried" % fine):
        queue.retry(fine, "a")
    for call in (lambda: queue.status(exploded, "b"), lambda: queue.get(exploded, "b"), lambda: queue.retry(exploded, "b"),
                 lambda: queue.delete(exploded, "b")):
        with pytest.raises(UnknownJobError, match="no job '%s' in your history" % exploded):
            call()  # another owner's job reads as one that does not exist
    with pytest.raises(UnknownJobError, match="is not running"):
        queue.wait("0" * 32)
    blocker = queue.submit(JobSpec("piper", "joe", "hold"), "a")
    assert wait_until(lambda: state(queue, blocker) == RUNNING, 5)
    with pytest.raises(JobError, match="is running: cancel it first"):
        queue.delete(blocker, "a")
    queue.submit(JobSpec("piper", "joe", "waits"), "a")
    with pytest.raises(QuotaError, match="you have 1 jobs waiting; this server takes up to 1 per person"):
        queue.submit(JobSpec("piper", "joe", "one too many"), "a")
    runner.release.set()


def test_the_kept_recording_is_a_key_in_the_artifact_store(make: Any, tmp_path: Path) -> None:
    queue, _ = make()
    job_id = queue.submit(JobSpec("rvc", "x", "converted", audio_path=recording(tmp_path, b"RIFF mine")), "a")
    queue.wait(job_id)
    key = queue.store.get(job_id)["input_path"]
    assert key == "inputs/%s.wav" % job_id and queue.artifacts.exists(key)
    local = queue.get(job_id, "a")["input_path"]  # what another take reads: a local path
    assert Path(local).read_bytes() == b"RIFF mine"
    again = queue.submit(JobSpec.from_row(queue.get(job_id, "a")).edited({"use_cache": False}), "a")
    queue.wait(again)
    assert queue.artifacts.exists("inputs/%s.wav" % again)
    queue.delete(job_id, "a")
    assert not queue.artifacts.exists(key) and queue.artifacts.exists("inputs/%s.wav" % again)  # each take its own key
    queue.delete(again, "a")
    assert list(queue.artifacts.keys("inputs")) == []
