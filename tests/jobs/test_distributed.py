"""Jobs beyond one host, with real parts: a real Redis (broker and bus), a real PostgreSQL (the job's truth), worker
hosts as their own processes (``tests/jobs/host_process.py``: the real host, bus and Celery worker around a runner
standing in for the Workstation), a shared artifact folder, and the front (``DistributedJobQueue``) in this process.
Hosts die by SIGKILL, Redis and PostgreSQL are restarted under running jobs."""

from __future__ import annotations

import collections
import contextlib
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

from jobs.artifacts import LocalFolderStore
from jobs.distributed.bus import Bus
from jobs.distributed.celery_app import make_celery, publisher
from jobs.distributed.front import DistributedJobQueue
from jobs.errors import JobError
from jobs.schema import CANCELLED, RUNNING, SUCCEEDED
from jobs.spec import JobSpec
from jobs.store import JobStore
from tests.conftest import wait_until
from tests.jobs.host_process import SleepRunner
from tests.services import PostgresServer, postgres_server, redis_server

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 4.0  # renewed every 1.3 s: a loaded 2-core machine must not lose a live host's lease
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass
class Cluster:
    database_url: str
    broker_url: str
    folder: Path
    postgres: PostgresServer
    redis_restart: Callable[[], None]
    hosts: Dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    fronts: List[DistributedJobQueue] = field(default_factory=list)

    def start_host(self, name: str, slots: int = 1, loaded: str = "", queues: str = "generate.cpu") -> subprocess.Popen[bytes]:
        with (self.folder / ("%s.log" % name)).open("ab") as log:  # the child keeps its own handle
            process = subprocess.Popen([sys.executable, "-m", "tests.jobs.host_process", "--database", self.database_url,
                                        "--broker", self.broker_url, "--artifacts", str(self.folder), "--name", name, "--slots",
                                        str(slots), "--lease-s", str(LEASE_S), "--loaded", loaded, "--queues", queues], cwd=ROOT,
                                       stdout=log, stderr=log)
        self.hosts[name] = process
        return process

    def start_host_as(self, name: str, log_name: str) -> subprocess.Popen[bytes]:
        """Another process with the host name ``name``, logging to ``<log_name>.log``."""
        with (self.folder / ("%s.log" % log_name)).open("ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "tests.jobs.host_process", "--database", self.database_url,
                                        "--broker", self.broker_url, "--artifacts", str(self.folder), "--name", name,
                                        "--lease-s", str(LEASE_S)], cwd=ROOT, stdout=log, stderr=log)
        self.hosts[log_name] = process
        return process

    def front(self, republish_after_s: float = 30.0) -> DistributedJobQueue:
        queue = DistributedJobQueue(JobStore(self.database_url), SleepRunner(self.folder, "front"), LocalFolderStore(self.folder),
                                    Bus(self.broker_url, heartbeat_ttl_s=3.0), publisher(make_celery(self.broker_url)),
                                    result_of=lambda row: row["output_path"], tick_s=0.05, republish_after_s=republish_after_s,
                                    lease_grace_s=LEASE_S)
        self.fronts.append(queue)
        return queue

    def wait_for_hosts(self, queue: DistributedJobQueue, names: List[str]) -> None:
        assert wait_until(lambda: sorted(h.name for h in queue.bus.hosts()) == sorted(names), 30), self.logs()

    def runs(self) -> List[List[str]]:
        log = self.folder / "runs.log"
        return [line.split() for line in log.read_text().splitlines()] if log.exists() else []

    def logs(self) -> str:
        return "\n".join("--- %s\n%s" % (path.name, path.read_text()[-3000:]) for path in self.folder.glob("*.log"))


@pytest.fixture(scope="module")
def servers() -> Iterator[Dict[str, Any]]:
    with contextlib.ExitStack() as stack:
        postgres = stack.enter_context(postgres_server())
        yield {"postgres": postgres, "redis": stack}


@pytest.fixture
def cluster(servers: Dict[str, Any], tmp_path: Path) -> Iterator[Cluster]:
    postgres: PostgresServer = servers["postgres"]
    database_url = postgres.new_database("jobs_%s" % uuid.uuid4().hex[:12])
    with redis_server() as broker:
        made = Cluster(database_url, broker.url, tmp_path, postgres, broker.restart)
        try:
            yield made
        finally:
            for front in made.fronts:
                front.close()
                front.store.close()
            for process in made.hosts.values():
                process.kill()
                process.wait(10)
            if postgres_down(postgres):
                postgres.start()


def running_try(front: DistributedJobQueue, job: str) -> int:
    """Which run of the job is running now (0: it is not running)."""
    row = front.store.get(job)
    return int(row["attempts"]) if row["state"] == RUNNING else 0


def postgres_down(server: PostgresServer) -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(server.port)], capture_output=True).returncode != 0


def test_200_jobs_of_several_owners_spread_over_two_hosts_none_lost_or_run_twice(cluster: Cluster) -> None:
    front = cluster.front()
    owners = {"ann": 120, "bob": 50, "cid": 30}  # ann asks first and most
    ids: Dict[str, str] = {}
    for owner, count in owners.items():
        for index in range(count):
            ids[front.submit(JobSpec("piper", "joe", "%s-%d" % (owner, index)), owner)] = owner
    cluster.start_host("alpha")
    cluster.start_host("beta")
    assert wait_until(lambda: len(front.store.where(state=SUCCEEDED)) == 200, 240), cluster.logs()
    runs = cluster.runs()
    ends = [job for job, _, what in runs if what == "end"]
    assert sorted(ends) == sorted(ids) and len(set(ends)) == 200  # every job once, none lost, none twice
    assert all(row["attempts"] == 1 for row in front.store.where(state=SUCCEEDED))
    per_host = collections.Counter(host for _, host, what in runs if what == "end")
    assert per_host["alpha"] >= 40 and per_host["beta"] >= 40, per_host  # both hosts worked
    started_by = [ids[job] for job, _, what in runs if what == "start"]
    # owners take turns: in the first 60 starts each owner had about a third, not ann's 120 first
    first = collections.Counter(started_by[:60])
    assert all(15 <= first[owner] <= 25 for owner in owners), first
    assert started_by.index("bob") <= 4 and started_by.index("cid") <= 4, started_by[:10]


def test_a_host_killed_mid_job_its_job_finishes_on_the_other_exactly_once(cluster: Cluster) -> None:
    front = cluster.front()
    cluster.start_host("alpha")
    cluster.start_host("beta")
    cluster.wait_for_hosts(front, ["alpha", "beta"])
    job = front.submit(JobSpec("piper", "joe", "sleep:3:long"), "ann")
    assert wait_until(lambda: front.store.get(job)["state"] == RUNNING, 20)
    victim = front.store.get(job)["host"]
    survivor = "beta" if victim == "alpha" else "alpha"
    cluster.hosts[victim].send_signal(signal.SIGKILL)
    assert front.wait(job) == "outputs/%s.txt" % job
    row = front.store.get(job)
    assert row["state"] == SUCCEEDED and row["host"] == survivor and row["attempts"] == 2 and row["host_losses"] == 1
    assert (cluster.folder / row["output_path"]).read_text() == "%s sleep:3:long" % survivor
    runs = cluster.runs()
    assert [host for j, host, what in runs if j == job and what == "end"] == [survivor]  # finished once, on the other
    assert [host for j, host, what in runs if j == job and what == "start"] == [victim, survivor]


def test_a_second_lost_host_interrupts_the_job_with_the_reason(cluster: Cluster) -> None:
    front = cluster.front()
    cluster.start_host("alpha")
    cluster.wait_for_hosts(front, ["alpha"])
    job = front.submit(JobSpec("piper", "joe", "sleep:30:doomed"), "ann")
    for attempt in (1, 2):
        assert wait_until(lambda tries=attempt: running_try(front, job) == tries, 30), cluster.logs()
        cluster.hosts["alpha"].kill()
        cluster.hosts["alpha"].wait(10)
        if attempt == 1:
            cluster.start_host("alpha")  # the same host back: it takes its lost job back at start
    with pytest.raises(JobError, match="the host running this job stopped; it ran again on another host and stopped there too"):
        front.wait(job)
    assert front.store.get(job)["host_losses"] == 2


def test_cancel_reaches_a_job_running_on_another_host(cluster: Cluster) -> None:
    front = cluster.front()
    cluster.start_host("alpha")
    cluster.wait_for_hosts(front, ["alpha"])
    job = front.submit(JobSpec("piper", "joe", "sleep:60:cancel me"), "ann")
    assert wait_until(lambda: front.store.get(job)["state"] == RUNNING, 20)
    assert wait_until(lambda: front.status(job, "ann")["message"] == "working on alpha", 10)  # progress came over the bus
    started = time.monotonic()
    assert front.cancel(job, "ann")
    with pytest.raises(JobError, match="the job was cancelled"):
        front.wait(job)
    assert time.monotonic() - started < 5
    assert front.store.get(job)["state"] == CANCELLED
    assert [what for j, _, what in cluster.runs() if j == job] == ["start"]  # it stopped, never finished
    after = front.submit(JobSpec("piper", "joe", "next"), "ann")  # the host's slot is free again
    assert front.wait(after) == "outputs/%s.txt" % after


def test_a_job_for_a_model_a_host_holds_warm_goes_to_that_host(cluster: Cluster) -> None:
    front = cluster.front()
    cluster.start_host("cold")
    cluster.start_host("warm", loaded="piper/joe")
    cluster.wait_for_hosts(front, ["cold", "warm"])
    for index in range(8):
        job = front.submit(JobSpec("piper", "joe", "warm %d" % index), "ann")
        front.wait(job)
        assert front.store.get(job)["host"] == "warm"
    other = [front.submit(JobSpec("piper", "kim", "cold %d" % index), "ann") for index in range(8)]
    for job in other:
        front.wait(job)
    assert {front.store.get(job)["host"] for job in other} == {"cold", "warm"}  # queued at once: both free hosts take some


def test_redis_restarted_mid_run_the_jobs_still_run_once(cluster: Cluster) -> None:
    front = cluster.front(republish_after_s=3.0)
    cluster.start_host("alpha")
    cluster.start_host("beta")
    cluster.wait_for_hosts(front, ["alpha", "beta"])
    jobs = [front.submit(JobSpec("piper", "joe", "sleep:0.3:%d" % index), "ann") for index in range(20)]
    assert wait_until(lambda: len(front.store.where(state=SUCCEEDED)) >= 4, 30)
    cluster.redis_restart()  # queued messages and heartbeats are gone with it
    assert wait_until(lambda: len(front.store.where(state=SUCCEEDED)) == 20, 120), cluster.logs()
    ends = [job for job, _, what in cluster.runs() if what == "end"]
    assert sorted(ends) == sorted(jobs)  # each once
    assert all(front.store.get(job)["attempts"] == 1 for job in jobs)


def test_postgres_restarted_the_front_says_so_and_recovers(cluster: Cluster) -> None:
    front = cluster.front()
    cluster.start_host("alpha")
    cluster.wait_for_hosts(front, ["alpha"])
    running = front.submit(JobSpec("piper", "joe", "sleep:4:through the outage"), "ann")
    assert wait_until(lambda: front.store.get(running)["state"] == RUNNING, 20)
    cluster.postgres.stop()
    try:
        with pytest.raises(JobError, match="the job store cannot be reached"):
            front.submit(JobSpec("piper", "joe", "while it is down"), "ann")
        with pytest.raises(JobError, match="the job store cannot be reached"):
            front.status(running, "ann")
        time.sleep(LEASE_S * 2)  # longer than a lease: the host could not renew it
    finally:
        cluster.postgres.start()
    assert front.wait(running) == "outputs/%s.txt" % running  # its end, recorded once the store was back
    row = front.store.get(running)
    assert row["state"] == SUCCEEDED and row["attempts"] == 1 and row["host_losses"] == 0  # not taken back meanwhile
    after = front.submit(JobSpec("piper", "joe", "after"), "ann")
    assert front.wait(after) == "outputs/%s.txt" % after


def test_a_busy_gpu_host_does_not_hold_back_jobs_a_free_cpu_host_serves(cluster: Cluster) -> None:
    """A host taking generate.gpu.rvc (the GPU check is the worker entry's, not this stand-in's) is busy; a CPU host is
    free: the next rvc job and a piper job both go to the free host at once."""
    front = cluster.front()
    cluster.start_host("gpu", queues="generate.gpu.rvc")
    cluster.start_host("cpu", queues="generate.cpu")
    cluster.wait_for_hosts(front, ["cpu", "gpu"])
    first = front.submit(JobSpec("rvc", "x", "sleep:20:long on the gpu"), "ann")
    assert wait_until(lambda: front.store.get(first)["host"] == "gpu", 20)  # a GPU queue for rvc: the GPU host first
    for job in (front.submit(JobSpec("rvc", "x", "next rvc"), "bob"), front.submit(JobSpec("piper", "joe", "piper"), "cid")):
        started = time.monotonic()
        front.wait(job)
        assert front.store.get(job)["host"] == "cpu" and time.monotonic() - started < 10
    front.cancel(first)


def test_a_cancel_asked_before_its_host_died_ends_the_job_cancelled(cluster: Cluster) -> None:
    front = cluster.front()
    cluster.start_host("alpha")
    cluster.wait_for_hosts(front, ["alpha"])
    job = front.submit(JobSpec("piper", "joe", "sleep:60:cancel then die"), "ann")
    assert wait_until(lambda: front.store.get(job)["state"] == RUNNING, 20)
    cluster.hosts["alpha"].send_signal(signal.SIGSTOP)  # it cannot act on the cancel
    try:
        assert front.cancel(job, "ann")
        cluster.hosts["alpha"].kill()
        with pytest.raises(JobError, match="cancelled"):
            front.wait(job)  # not left queued forever: the lapsed lease ends it cancelled
    finally:
        cluster.hosts["alpha"].kill()
    assert front.store.get(job)["state"] == CANCELLED


def test_a_second_process_under_a_live_hosts_name_is_refused(cluster: Cluster) -> None:
    front = cluster.front()
    cluster.start_host("alpha")
    cluster.wait_for_hosts(front, ["alpha"])
    job = front.submit(JobSpec("piper", "joe", "sleep:4:kept by the first"), "ann")
    assert wait_until(lambda: front.store.get(job)["state"] == RUNNING, 20)
    twin = cluster.start_host_as("alpha", "alpha-twin")
    assert twin.wait(60) != 0
    assert "another worker host named 'alpha' is running" in (cluster.folder / "alpha-twin.log").read_text()
    assert front.wait(job) == "outputs/%s.txt" % job
    row = front.store.get(job)
    assert row["attempts"] == 1 and row["host_losses"] == 0  # the first kept it: never taken back, never run twice


def test_a_stopped_host_hands_its_running_job_back_at_once(cluster: Cluster) -> None:
    front = cluster.front()
    cluster.start_host("alpha")
    cluster.wait_for_hosts(front, ["alpha"])
    job = front.submit(JobSpec("piper", "joe", "sleep:30:handed back"), "ann")
    assert wait_until(lambda: front.store.get(job)["state"] == RUNNING, 20)
    cluster.start_host("beta")
    cluster.wait_for_hosts(front, ["alpha", "beta"])
    stopped = time.monotonic()
    cluster.hosts["alpha"].send_signal(signal.SIGTERM)  # compose down, a rolling update
    assert cluster.hosts["alpha"].wait(20) is not None and time.monotonic() - stopped < 15  # not the job's 30 s
    assert wait_until(lambda: front.store.get(job)["host"] == "beta" and front.store.get(job)["state"] == RUNNING, 15), cluster.logs()
    row = front.store.get(job)
    assert row["host_losses"] == 0 and row["attempts"] == 2  # handed back, not lost
    front.cancel(job)


def test_a_delivery_of_an_earlier_publishing_never_starts_the_job(cluster: Cluster) -> None:
    """A retried job's old message (or one of a publishing since repeated) is dropped by the host: only the delivery
    of the row's current publishing claims it, in its fair turn."""
    from jobs.distributed.host import JobHost

    front = cluster.front()
    job = front.submit(JobSpec("piper", "joe", "old message"), "ann")  # no host yet: it waits unpublished
    store = front.store
    assert store.change(job, {"state": "queued"}, published_at=1000.0)  # as a front that published it once
    host = JobHost(JobStore(cluster.database_url), SleepRunner(cluster.folder, "direct"), LocalFolderStore(cluster.folder),
                   "direct", lease_s=LEASE_S)
    try:
        assert host.run(job, 999.0) == "skipped:stale"  # an earlier publishing's delivery
        assert store.get(job)["state"] == "queued" and host.runs == 0
        assert host.run(job, 1000.0) == SUCCEEDED and host.runs == 1  # the current one's
        assert host.run(job, 1000.0) == "skipped:succeeded"  # delivered twice: run once
    finally:
        host.store.close()  # its connections closed here, not collected during a later test
