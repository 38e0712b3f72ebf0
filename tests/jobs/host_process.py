"""A worker host as its own process for the tests of jobs beyond one host: the real host, bus and Celery worker
(``jobs.distributed.celery_app.serve``) around a runner that stands in for the app's Workstation.

The runner's text says what a job does: ``sleep:<seconds>:<label>`` works that long (stopping on a cancel), anything
else returns at once. Each run writes ``outputs/<job id>.txt`` (host and text) in the shared artifact folder and
appends ``<job id> <host>`` to ``runs.log`` there, so a test counts how often and where each job ran.

    python -m tests.jobs.host_process --database URL --broker URL --artifacts DIR --name NAME --slots N"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, Tuple

from jobs.artifacts import LocalFolderStore
from jobs.distributed.bus import Bus
from jobs.distributed.celery_app import make_celery, serve
from jobs.distributed.host import JobHost
from jobs.errors import JobError
from jobs.spec import JobSpec
from jobs.store import JobStore


class SleepRunner:
    def __init__(self, folder: Path, host: str) -> None:
        self.folder, self.host = folder, host

    def prepare(self, spec: JobSpec) -> JobSpec:
        if spec.text == "bad":
            raise JobError("the text 'bad' is refused")
        return spec

    def execute(self, prepared: Any, job_id: str, progress: Any, cancel: threading.Event, client: str) -> Tuple[Path, Dict[str, Any]]:
        spec: JobSpec = prepared
        with (self.folder / "runs.log").open("a") as log:
            log.write("%s %s start\n" % (job_id, self.host))
        if spec.text.startswith("sleep:"):
            seconds = float(spec.text.split(":")[1])
            deadline = time.monotonic() + seconds
            progress(0.5, "working on %s" % self.host)
            while time.monotonic() < deadline:
                if cancel.wait(0.05):
                    raise JobError("the job was cancelled")
        path = self.folder / "outputs" / ("%s.txt" % job_id)
        path.parent.mkdir(exist_ok=True)
        path.write_text("%s %s" % (self.host, spec.text))
        with (self.folder / "runs.log").open("a") as log:
            log.write("%s %s end\n" % (job_id, self.host))
        return path, {"output_path": "outputs/%s.txt" % job_id, "output_bytes": path.stat().st_size,
                      "timings": {"generate_s": 0.001}, "provenance": {"host": self.host}}

    def message_for(self, exc: BaseException) -> str:
        return str(exc) if isinstance(exc, JobError) else "something went wrong (error id test)"


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--database", "--broker", "--artifacts", "--name"):
        parser.add_argument(name, required=True)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--queues", default="generate.cpu")
    parser.add_argument("--lease-s", type=float, default=2.0)
    parser.add_argument("--loaded", default="", help="models this host says it holds warm (architecture/character, commas)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s " + args.name + " %(name)s %(message)s")
    folder = Path(args.artifacts)
    bus = Bus(args.broker, heartbeat_ttl_s=3.0)
    host = JobHost(JobStore(args.database), SleepRunner(folder, args.name), LocalFolderStore(folder), args.name,
                   lease_s=args.lease_s, publish=bus)
    loaded = tuple(item for item in args.loaded.split(",") if item)
    print("host %s pid %d ready" % (args.name, os.getpid()), flush=True)
    serve(make_celery(args.broker), host, bus, args.queues.split(","), args.slots, loaded=lambda: loaded)


if __name__ == "__main__":
    main()
