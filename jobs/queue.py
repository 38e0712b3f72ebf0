"""The job-queue seam (issue 17 rooms): what the app asks of a queue of jobs, whatever carries them.

Today's one implementation is ``jobs.service.JobService``, in this process (per-architecture lanes, the fair pick of
``jobs.fairness.pick_next``, one thread per running job). A Celery queue on Redis (issue 22) is another module beside
it with the same methods: the job's truth stays in the job store (``store``), its files in the artifact store
(``artifacts``), and the app never branches on the kind. ``tests/jobs/test_queue_contract.py`` runs the same cases
against every implementation."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Protocol

from jobs.artifacts import ArtifactStore
from jobs.spec import JobSpec
from jobs.store import JobStore

ProgressFn = Callable[[Optional[float], str], None]
"""(fraction done or None, what is happening): a job's progress, and a queued job's place in line."""


@dataclass(frozen=True)
class JobEnd:
    """A job's end as observers see it (metrics, traces): times are the epoch's seconds."""

    job_id: str
    architecture: str
    state: str
    timings: Dict[str, Any]
    created_at: float
    started_at: float
    finished_at: float


def no_progress(fraction: Optional[float], message: str) -> None:
    pass


class JobQueue(Protocol):
    store: JobStore
    """The job's truth (rows; the history pages read it)."""
    on_end: Optional[Callable[[JobEnd], None]]
    """Told each job's end (the app's metrics and traces); it must not raise."""
    artifacts: ArtifactStore
    """Where the job's files live, by key: kept input recordings today; outputs and masters once the app writes them here."""

    def submit(self, spec: JobSpec, owner: str, session: str = "", batch_id: Optional[str] = None, *,
               client: Optional[str] = None) -> str:
        """Check the request (raising ``JobError`` with what is wrong before anything is recorded; ``QuotaError`` when
        ``client`` holds its share), keep its recording, record it as queued and return its id at once. ``owner``: whose
        history it joins; ``session``: what ``cancel_session`` reaches; ``client``: the stable identity its quota and
        fair turns count against (default: the owner)."""

    def cancel(self, job_id: str, owner: Optional[str] = None) -> bool:
        """A queued job never starts; a running one is asked to stop. False if it had ended (or is another owner's)."""

    def cancel_session(self, session: str) -> int:
        """Cancel every queued and running job of one session; how many."""

    def wait(self, job_id: str, progress: ProgressFn = no_progress, cancel: Optional[threading.Event] = None) -> Any:
        """Block until the job ends, relaying its progress (and, while queued, its place in line); the runner's result,
        else ``JobError`` with the message a person should read. ``cancel`` set while waiting cancels the job."""

    def status(self, job_id: str, owner: Optional[str]) -> Dict[str, Any]:
        """State, place in line, progress, times, error: what a poller shows (``UnknownJobError`` for another owner's)."""

    def get(self, job_id: str, owner: Optional[str]) -> Dict[str, Any]:
        """The job's row, its kept recording (``input_path``) as a local path to read (None if no longer kept);
        ``UnknownJobError`` for another owner's job, exactly as for one that does not exist."""

    def retry(self, job_id: str, owner: Optional[str]) -> str:
        """Run a failed, cancelled or interrupted job again in the same row (its attempts count up)."""

    def delete(self, job_id: str, owner: Optional[str]) -> None:
        """Remove an ended job and its files that no other job names."""

    def recover(self) -> Dict[str, int]:
        """At start: jobs a stopped app was running are interrupted (kept for Retry), queued ones run again;
        ``{"interrupted": n, "requeued": n, "failed": n}``."""

    def queue_summary(self) -> List[Dict[str, Any]]:
        """Per architecture: running, queued, owners waiting (no one's jobs named)."""

    def queue_position(self, job_id: str) -> Optional[int]:
        """1 = next among its architecture's queued jobs; None when not queued."""

    def hosts(self) -> List[Dict[str, Any]]:
        """The worker hosts running this queue's jobs, as an operator reads them (host, queues, slots, running, warm
        models); empty where jobs run in this process."""

    def is_active(self, job_id: str) -> bool:
        """Queued or running in this queue."""

    def close(self) -> None:
        """Stop starting jobs; running ones are asked to stop (a restart finds them interrupted)."""
