"""One host's side: run a job the broker delivered, at most once, under a lease the host renews while it runs.

A delivery is only a hint: the job store decides. The host claims the job with a conditional update (queued -> running,
its name, a lease); a delivery of a job that already runs elsewhere, ended or was cancelled is acknowledged and
dropped, so a message Redis delivers twice (a restart, ``acks_late`` after a dead worker) never runs a job twice. While
it runs, a thread renews the lease and reads a Cancel asked from another host; the end is recorded only while this
host still holds the job (a host cut off long enough to lose its lease finds the job taken back and records nothing)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Set

from sqlalchemy.exc import DBAPIError

from jobs.artifacts import ArtifactStore
from jobs.kept_inputs import spec_of
from jobs.schema import CANCELLED, FAILED, INTERRUPTED, QUEUED, RUNNING, SUCCEEDED
from jobs.service import INTERRUPTED_REASON, Runner
from jobs.store import JobStore

logger = logging.getLogger(__name__)
LOST_REASON = "the host running this job stopped; it ran again on another host and stopped there too: Retry runs it again"


@dataclass
class _Running:
    job_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    lost: bool = False
    """The lease went to someone else: this host must not record the end."""


def take_back_lost(store: JobStore, row: Dict[str, Any], now: float) -> Optional[str]:
    """A running job whose host died: queued again the first time (it runs on another host), interrupted the second,
    cancelled where a Cancel was asked meanwhile. Conditional on the row still being that run (its claim and lease): a
    front and a restarted host may both try. Returns the state it moved to, or None if someone else moved it first."""
    where = {"state": RUNNING, "claim": row["claim"], "lease_until": row["lease_until"]}
    if row.get("cancel_requested"):
        moved = store.change(row["id"], where, state=CANCELLED, lease_until=None, finished_at=now,
                             error="the job was cancelled (its host stopped meanwhile)")
        return CANCELLED if moved else None
    if int(row.get("host_losses") or 0) == 0:
        moved = store.change(row["id"], where, state=QUEUED, host=None, claim=None, lease_until=None, published_at=None,
                             started_at=None, host_losses=1, error=None)
        return QUEUED if moved else None
    moved = store.change(row["id"], where, state=INTERRUPTED, lease_until=None, finished_at=now, error=LOST_REASON,
                         host_losses=int(row["host_losses"]) + 1)
    return INTERRUPTED if moved else None


class JobHost:
    def __init__(self, store: JobStore, runner: Runner, artifacts: ArtifactStore, name: str, lease_s: float = 30.0,
                 publish: Optional[Any] = None, input_copy_max_bytes: int = 50 << 20,
                 fetch_files: Optional[Callable[[Dict[str, Any]], object]] = None) -> None:
        """``publish``: the bus (``progress``/``ended``) or None (no one listens: tests of the host alone). ``fetch_files``:
        brings the files a job's row needs (its character's) to this host before it runs."""
        self.store, self.runner, self.artifacts, self.name = store, runner, artifacts, name
        self.lease_s = lease_s
        self.input_copy_max_bytes = input_copy_max_bytes
        self.fetch_files = fetch_files
        self.record_retry_s = 300.0
        """How long a finished job's end is retried through a store outage."""
        self.bus = publish
        self.token = uuid.uuid4().hex[:16]
        """This process's claim: renewals and ends match it, so another process under the same name holds nothing."""
        self._lock = threading.Lock()
        self._running: Dict[str, _Running] = {}
        self.runs = 0
        """Jobs this host ran (claimed), for tests and status."""

    # the broker's delivery
    def run(self, job_id: str, published_at: Optional[float] = None) -> str:
        """Run one delivered job if this host can claim it; what happened, in a word (for the log and tests).
        ``published_at``: the publishing the delivery came from; an older one's delivery is dropped."""
        now = time.time()
        row = self.store.get(job_id)
        if row is None:  # a job of another job store: this host and the front do not share one
            logger.warning("job %s is not in this host's job store: is its --database-url the front's?", job_id)
            return "unknown"
        if row["state"] != QUEUED or row.get("cancel_requested"):
            return "skipped:" + str(row["state"])  # ran elsewhere, ended, or a duplicate delivery
        current = {"state": QUEUED, "cancel_requested": False}
        if published_at is not None:
            if row["published_at"] != published_at:
                return "skipped:stale"  # published again since, or retried: that publishing's delivery starts it
            current["published_at"] = published_at
        if not self.store.change(job_id, current, state=RUNNING, host=self.name,
                                 claim=self.token, lease_until=self.store.now_sql() + self.lease_s, started_at=now,
                                 attempts=int(row["attempts"]) + 1):
            return "skipped:raced"
        run = _Running(job_id)
        with self._lock:
            self._running[job_id] = run
            self.runs += 1
        renewer = threading.Thread(target=self._renew, args=(run,), name="lease-%s" % job_id[:8], daemon=True)
        renewer.start()
        try:
            return self._execute(run, row, now)
        finally:
            with self._lock:
                self._running.pop(job_id, None)

    def _execute(self, run: _Running, row: Dict[str, Any], started: float) -> str:
        state, error = FAILED, None
        columns: Dict[str, Any] = {}
        try:
            if self.fetch_files is not None:
                self.fetch_files(row)
            spec = spec_of(row, self.artifacts, self.input_copy_max_bytes)
            prepared = self.runner.prepare(spec)
            _, columns = self.runner.execute(prepared, run.job_id, self._progress(run.job_id), run.cancel,
                                             row.get("client") or row["owner"])
            state = SUCCEEDED
        except Exception as exc:
            state = CANCELLED if run.cancel.is_set() and not run.lost else FAILED
            error = "the job was cancelled" if state == CANCELLED else self.runner.message_for(exc)
        timings = dict(columns.get("timings") or {}, queue_wait_s=round(started - float(row["created_at"]), 4))
        values = dict(columns, state=state, finished_at=time.time(), error=error, lease_until=None, timings=timings)
        if run.lost or not self._record_end(run.job_id, values):
            logger.warning("job %s: this host no longer holds it (its lease was taken back): its end is not recorded", run.job_id)
            return "lost"
        if self.bus is not None:
            self.bus.ended(run.job_id, state)
        return state

    def _record_end(self, job_id: str, values: Dict[str, Any]) -> bool:
        """Record the end while this host holds the job; through a store outage, again until ``record_retry_s``."""
        deadline, delay_s = time.monotonic() + self.record_retry_s, 0.2
        while True:
            try:
                return self.store.change(job_id, {"state": RUNNING, "claim": self.token}, **values)
            except DBAPIError as exc:  # the database is away: the work is done, keep it if the store comes back
                if time.monotonic() > deadline:
                    logger.error("job %s: its end could not be recorded (%s); its lease lapses and it runs again", job_id, exc)
                    return False
                logger.warning("job %s: recording its end failed (%s); again in %.1f s", job_id, exc, delay_s)
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    def _progress(self, job_id: str) -> Any:
        def report(fraction: Optional[float], message: str) -> None:
            if self.bus is not None:
                self.bus.progress(job_id, fraction, message)
        return report

    # the lease
    def _renew(self, run: _Running) -> None:
        every_s = max(0.2, self.lease_s / 3)
        while True:
            with self._lock:
                if run.job_id not in self._running:
                    return
            time.sleep(every_s)
            with self._lock:
                if run.job_id not in self._running:
                    return
            try:
                held = self.store.change(run.job_id, {"state": RUNNING, "claim": self.token},
                                         lease_until=self.store.now_sql() + self.lease_s)
                if not held:
                    run.lost = True
                    run.cancel.set()
                    logger.warning("job %s: lease lost (taken back or ended elsewhere): stopping it here", run.job_id)
                    return
                row = self.store.get(run.job_id)
                if row is not None and row.get("cancel_requested"):
                    run.cancel.set()
            except Exception as exc:  # the database is away: keep running; the lease may lapse and the job move
                logger.warning("job %s: could not renew its lease: %s", run.job_id, exc)

    # cancels from the bus
    def cancel(self, job_id: str) -> bool:
        with self._lock:
            run = self._running.get(job_id)
        if run is None:
            return False
        run.cancel.set()
        return True

    def running(self) -> Set[str]:
        with self._lock:
            return set(self._running)

    def recover_own(self) -> int:
        """At this host's start (once no other live process holds its name): jobs an earlier process under this name
        left running are taken back (queued again, interrupted, or cancelled as asked)."""
        moved = 0
        for row in self.store.where(state=RUNNING, host=self.name):
            if row["claim"] != self.token and take_back_lost(self.store, row, time.time()) is not None:
                moved += 1
        return moved

    def hand_back_all(self) -> None:
        """This host is stopping: its running jobs go back to the queue (no loss counted; cancelled if a Cancel was
        asked) and stop here; their ends are not recorded by this host."""
        with self._lock:
            runs = list(self._running.values())
        for run in runs:
            run.lost = True
            held = {"state": RUNNING, "claim": self.token}
            if not self.store.change(run.job_id, dict(held, cancel_requested=True), state=CANCELLED, lease_until=None,
                                     finished_at=time.time(), error="the job was cancelled"):
                self.store.change(run.job_id, held, state=QUEUED, host=None, claim=None, lease_until=None, published_at=None,
                                  started_at=None)
            run.cancel.set()


__all__ = ["INTERRUPTED_REASON", "LOST_REASON", "JobHost", "take_back_lost"]
