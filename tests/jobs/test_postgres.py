"""The job store on a real PostgreSQL server (what server mode uses), started here for the test: the same
code as on SQLite: migrations, the job life cycle, a restart's recovery, search and retention."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from jobs.schema import INTERRUPTED, SUCCEEDED
from jobs.service import JobService
from jobs.spec import JobSpec
from jobs.store import JobStore
from tests.conftest import wait_until
from tests.jobs.test_service import FileRunner
from tests.services import postgres_server


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as server:
        yield server.url


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
