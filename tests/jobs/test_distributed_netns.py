"""Two worker hosts, each in a network namespace of its own with its own address (``ip netns`` and a veth pair),
reaching Redis and PostgreSQL only over that link, as two machines would: their loopback is their own, so nothing but
the network and the artifact folder is shared with the front. Skipped, naming why, where namespaces cannot be made
(not root, no iproute2)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from jobs.artifacts import LocalFolderStore
from jobs.distributed.bus import Bus
from jobs.distributed.celery_app import make_celery, publisher
from jobs.distributed.front import DistributedJobQueue
from jobs.schema import RUNNING, SUCCEEDED
from jobs.spec import JobSpec
from jobs.store import JobStore
from tests.conftest import wait_until
from tests.jobs.host_process import SleepRunner
from tests.services import postgres_server, redis_server

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def namespaces(count: int) -> Iterator[List[Tuple[str, str, str]]]:
    """``count`` namespaces, each (name, this side's address, its address) on a /24 of its own."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2's ip")
    tag = "%05d" % (os.getpid() % 100000)
    made: List[Tuple[str, str, str]] = []
    try:
        for index in range(1, count + 1):
            name, outside, inside = "vg%s-%d" % (tag, index), "vh%s%d" % (tag, index), "vn%s%d" % (tag, index)
            try:
                ip("netns", "add", name)
            except subprocess.CalledProcessError as exc:
                pytest.skip("ip netns add failed here: %s" % exc.stderr.decode(errors="replace").strip())
            made.append((name, "10.231.%d.1" % index, "10.231.%d.2" % index))
            ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            ip("link", "set", inside, "netns", name)
            ip("addr", "add", "10.231.%d.1/24" % index, "dev", outside)
            ip("link", "set", outside, "up")
            ip("netns", "exec", name, "ip", "addr", "add", "10.231.%d.2/24" % index, "dev", inside)
            ip("netns", "exec", name, "ip", "link", "set", inside, "up")
            ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield made
    finally:
        for index, (name, _, _) in enumerate(made, start=1):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            subprocess.run(["ip", "link", "del", "vh%s%d" % (tag, index)], capture_output=True)


def reaches(namespace: str, address: str, port: int) -> bool:
    probe = "import socket; socket.create_connection((%r, %d), timeout=2)" % (address, port)
    return subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", probe], capture_output=True).returncode == 0


def test_hosts_with_their_own_addresses_share_the_work_and_survive_one_dying(tmp_path: Path) -> None:
    with namespaces(2) as spaces, postgres_server(["127.0.0.1", *(outside for _, outside, _ in spaces)]) as postgres, \
            redis_server(["127.0.0.1", *(outside for _, outside, _ in spaces)]) as broker:
        database = postgres.new_database("netns_%s" % uuid.uuid4().hex[:8])
        redis_port = int(broker.url.rsplit(":", 1)[1].split("/")[0])
        name, outside, _ = spaces[0]
        assert not reaches(name, "127.0.0.1", redis_port)  # its loopback is its own: the broker is only over the link
        assert reaches(name, outside, redis_port)
        hosts: Dict[str, subprocess.Popen[bytes]] = {}
        front = DistributedJobQueue(JobStore(database), SleepRunner(tmp_path, "front"), LocalFolderStore(tmp_path),
                                    Bus(broker.url, heartbeat_ttl_s=3.0), publisher(make_celery(broker.url)),
                                    result_of=lambda row: row["output_path"], tick_s=0.05, lease_grace_s=4.0)
        try:
            for index, (space, outside, _) in enumerate(spaces, start=1):
                with (tmp_path / ("host-%d.log" % index)).open("ab") as log:
                    hosts["host-%d" % index] = subprocess.Popen(
                        ["ip", "netns", "exec", space, sys.executable, "-m", "tests.jobs.host_process",
                         "--database", database.replace("127.0.0.1", outside), "--broker", broker.url.replace("127.0.0.1", outside),
                         "--artifacts", str(tmp_path), "--name", "host-%d" % index, "--lease-s", "4"],
                        cwd=ROOT, stdout=log, stderr=log)
            assert wait_until(lambda: len(front.bus.hosts()) == 2, 30), [p.read_text()[-1500:] for p in tmp_path.glob("*.log")]
            jobs = [front.submit(JobSpec("piper", "joe", "sleep:0.2:%d" % index), owner) for index in range(12)
                    for owner in ("ann", "bob")]
            assert wait_until(lambda: len(front.store.where(state=SUCCEEDED)) == len(jobs), 120)
            runs = [line.split() for line in (tmp_path / "runs.log").read_text().splitlines()]
            ends = [job for job, _, what in runs if what == "end"]
            assert sorted(ends) == sorted(jobs)  # each once
            assert {host for _, host, what in runs if what == "end"} == {"host-1", "host-2"}  # both addresses served
            long = front.submit(JobSpec("piper", "joe", "sleep:4:across the link"), "ann")
            assert wait_until(lambda: front.store.get(long)["state"] == RUNNING, 20)
            victim = front.store.get(long)["host"]
            hosts[victim].send_signal(signal.SIGKILL)
            assert front.wait(long) == "outputs/%s.txt" % long
            assert front.store.get(long)["host"] != victim and front.store.get(long)["attempts"] == 2
        finally:
            front.close()
            front.store.close()
            for process in hosts.values():
                process.kill()
                process.wait(10)
