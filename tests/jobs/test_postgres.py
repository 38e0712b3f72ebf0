"""The job store on a real PostgreSQL server (what server mode uses), started here for the test: the same
code as on SQLite: migrations, the job life cycle, a restart's recovery, search and retention."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, List

import pytest

from jobs.schema import INTERRUPTED, SUCCEEDED
from jobs.service import JobService
from jobs.spec import JobSpec
from jobs.store import JobStore
from tests.conftest import free_port, wait_until
from tests.jobs.test_service import FileRunner


def postgres_bin() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does this)")
    return Path(candidates[-1]).parent


def as_postgres(command: List[str]) -> List[str]:
    """The server refuses to run as root: run it as the postgres user where the tests run as root."""
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no postgres user to run the server as")
    return ["runuser", "-u", "postgres", "--", *command]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    binaries = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="voicegen-postgres-"))  # not under pytest's root-only folders: the server user reads it
    data, sockets = folder / "data", folder / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(as_postgres([str(binaries / "initdb"), "-D", str(data), "-U", "jobs", "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    subprocess.run(as_postgres([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-o",
                                "-p %d -k %s -c listen_addresses=127.0.0.1" % (port, sockets), "start"]),
                   check=True, capture_output=True, timeout=120)
    try:
        yield "postgresql+psycopg://jobs@127.0.0.1:%d/postgres" % port
    finally:
        subprocess.run(as_postgres([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True,
                       timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def test_jobs_live_through_a_restart_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    first = JobService(JobStore(postgres_url), FileRunner(tmp_path), tmp_path / "inputs", 1, 1)
    second = None
    running = ""
    try:
        done = first.submit(JobSpec("piper", "joe", "Stored in PostgreSQL, 50% sure"), owner="a")
        assert Path(first.wait(done)).read_text() == "Stored in PostgreSQL, 50% sure"
        running = first.submit(JobSpec("piper", "joe", "hold"), owner="a")
        upload = tmp_path / "take.wav"
        upload.write_bytes(b"RIFF kept by key")
        queued = first.submit(JobSpec("rvc", "x", "after the restart", audio_path=str(upload)), owner="a")
        key = first.store.get(queued)["input_path"]
        assert key == "inputs/%s.wav" % queued and first.artifacts.exists(key)  # a key in the row, the file in the store
        assert wait_until(lambda: first.status(running, "a")["state"] == "running", 10)
        # a second app over the same database, as after a crash of the first
        second = JobService(JobStore(postgres_url), FileRunner(tmp_path), tmp_path / "inputs", 1, 1)
        assert second.recover() == {"interrupted": 1, "requeued": 1, "failed": 0}
        assert second.store.get(running)["state"] == INTERRUPTED
        assert Path(second.wait(queued)).read_text() == "after the restart"
        assert Path(second.runner.prepared[-1].audio_path or "").read_bytes() == b"RIFF kept by key"  # type: ignore[attr-defined]
        assert [r["id"] for r in second.store.page("a", query="50%")] == [done]  # % is literal here too
        assert second.store.page("b") == [] and second.store.get(done)["state"] == SUCCEEDED
        assert second.prune(keep=1, max_bytes=1 << 30, max_age_s=3600, grace_s=0) == 2  # the newest ended job stays
        second.delete(queued, "a")
        assert not second.artifacts.exists(key)  # its recording went with it, through the artifact store
    finally:
        first.runner.release.set()  # type: ignore[attr-defined]
        wait_until(lambda: not first.is_active(running), 10)
        for service in (first, second):
            if service is not None:
                service.close()
                service.store.close()
