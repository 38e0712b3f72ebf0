"""The web front's job queue when a broker is configured: same endpoints, ids and history as the in-process queue, but
jobs run on worker hosts.

The front validates and records a job (queued, in the job store), then its dispatcher decides what is published next:
the fair pick (``jobs.fairness.pick_next``) over everything waiting, limited to the free slots of the live hosts that
serve each architecture, so the broker never holds more than the hosts can start and fairness is the front's. A job
whose model some free host holds warm goes to that host's own queue. The dispatcher also takes back the jobs of a host
whose lease lapsed (queued again once, interrupted the second time) and publishes again a job the broker lost (Redis
restarted): a host claims a job with a conditional update, so a duplicate delivery never runs it twice."""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar, cast

from sqlalchemy.exc import DBAPIError, OperationalError

from jobs.artifacts import ArtifactStore, check_prefix
from jobs.distributed.bus import PROGRESS_CHANNEL, Bus
from jobs.distributed.host import take_back_lost
from jobs.distributed.routing import HostView, gpu_queue, host_queue, serving
from jobs.errors import JobError, QuotaError, StoreUnavailableError, UnknownJobError
from jobs.fairness import Waiting, bounded, pick_next
from jobs.kept_inputs import keep_input, spec_of
from jobs.queue import JobQueue, ProgressFn, no_progress
from jobs.quotas import OwnerQuotas
from jobs.rows import delete_ended, owned_row, status_record, with_local_input
from jobs.schema import ACTIVE_STATES, CANCELLED, ENDED_STATES, INTERRUPTED, QUEUED, RUNNING, SUCCEEDED
from jobs.service import INTERRUPTED_REASON, JobEnd, Runner
from jobs.spec import JobSpec
from jobs.store import JobStore

logger = logging.getLogger(__name__)
RUN_JOB_TASK = "voicegen.run_job"
Publish = Callable[[str, str, float], None]
"""(job id, queue name, its published_at): hand one job to the broker (``celery_app.publisher``). The delivery carries
published_at, and a host claims the job only while the row still says it: a message of an earlier publishing (published
again since, or cancelled and retried) can never start the job out of its turn."""


@contextlib.contextmanager
def store_reachable() -> Iterator[None]:
    """A database outage becomes the message a person reads (the front keeps serving pages meanwhile)."""
    try:
        yield
    except DBAPIError as exc:
        if not exc.connection_invalidated and not isinstance(exc, OperationalError):
            raise
        raise StoreUnavailableError("the job store cannot be reached right now (its database server does not answer): "
                                    "nothing was changed; try again in a moment") from None


F = TypeVar("F", bound=Callable[..., Any])


def reachable(method: F) -> F:
    @functools.wraps(method)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with store_reachable():
            return method(*args, **kwargs)
    return cast(F, wrapped)


class DistributedJobQueue(JobQueue):
    def __init__(self, store: JobStore, runner: Runner, artifacts: ArtifactStore, bus: Bus, publish: Publish,
                 result_of: Callable[[Dict[str, Any]], Any], inputs_prefix: str = "jobs/inputs",
                 input_copy_max_bytes: int = 50 << 20, quotas: OwnerQuotas = OwnerQuotas(), tick_s: float = 0.25,
                 republish_after_s: float = 30.0, lease_grace_s: float = 30.0,
                 publish_files: Optional[Callable[[JobSpec], object]] = None) -> None:
        """``result_of``: what a waiter gets from a finished job's row (the app: its Generation). ``republish_after_s``:
        a published job no host claimed by then is published again (the broker may have lost it). ``lease_grace_s``: after
        the store was away, hosts get this long to renew their leases before lapsed ones are taken back (at least a
        host's lease). ``publish_files``: puts the files a job needs (its character's) where every host can fetch them."""
        self.store, self.runner, self.artifacts, self.bus = store, runner, artifacts, bus
        self.publish, self.result_of = publish, result_of
        self.publish_files = publish_files
        self.inputs_prefix = check_prefix(inputs_prefix)
        self.input_copy_max_bytes = input_copy_max_bytes
        self.quotas = quotas
        self.tick_s, self.republish_after_s = tick_s, republish_after_s
        self.on_end: Optional[Callable[[JobEnd], None]] = None
        self._changed = threading.Condition()
        self._progress: collections.OrderedDict[str, Tuple[Optional[float], str]] = collections.OrderedDict()
        """The newest progress the bus brought of each running job (bounded: the oldest go first)."""
        self._last_start: Dict[str, float] = {}
        self._targets: Dict[str, str] = {}
        """The host each published job was sent to (a job whose host went away is published again at once)."""
        self._hosts: List[HostView] = []
        self._wake = threading.Event()
        self._closed = threading.Event()
        self.lease_grace_s = lease_grace_s
        self._store_ok_since = time.monotonic()
        self._store_failed = False
        self.housekeeping_s = 1.0
        self._housekept_at = -1e9
        self.broker_error: Optional[str] = None
        """Why the last publish failed (None once one succeeds): shown to a waiter."""
        self.bus.listen(PROGRESS_CHANNEL, self._on_event, "job-events")
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="job-dispatcher", daemon=True)
        self._dispatcher.start()

    # submitting
    @reachable
    def submit(self, spec: JobSpec, owner: str, session: str = "", batch_id: Optional[str] = None, *,
               client: Optional[str] = None) -> str:
        client = client or owner
        self._check_quotas(client, spec)
        self.runner.prepare(spec)  # what is wrong is said before anything is recorded
        if self.publish_files is not None:
            self.publish_files(spec)  # before it is queued: a host may take it at once
        job_id = uuid.uuid4().hex
        input_name, input_sha256, input_key = keep_input(self.artifacts, self.inputs_prefix, self.input_copy_max_bytes, job_id,
                                                         spec.audio_path)
        input_bytes = self.artifacts.size(input_key) if input_key else 0
        self.store.add({
            "id": job_id, "owner": owner, "session": session, "batch_id": batch_id, "state": QUEUED,
            "architecture": spec.architecture, "character": spec.character, "text": spec.text, "input_name": input_name,
            "input_sha256": input_sha256, "input_path": input_key, "request": spec.request(), "created_at": time.time(),
            "attempts": 0, "timings": {}, "output_bytes": 0, "cached": False, "provenance": {}, "client": client,
            "input_bytes": input_bytes,
        })
        self._wake.set()
        return job_id

    def _check_quotas(self, client: str, spec: JobSpec) -> None:
        """Quotas counted in the job store, so they hold across fronts and hosts."""
        quotas = self.quotas
        if not (quotas.max_queued_jobs or quotas.max_kept_input_bytes):
            return
        queued, kept_bytes = self.store.client_holdings(client)
        if quotas.max_queued_jobs and queued >= quotas.max_queued_jobs:
            raise QuotaError("you have %d jobs waiting; this server takes up to %d per person at once: wait for some to "
                             "finish, or cancel some" % (queued, quotas.max_queued_jobs))
        if quotas.max_kept_input_bytes and spec.audio_path:
            size = Path(spec.audio_path).stat().st_size
            if size <= self.input_copy_max_bytes and kept_bytes + size > quotas.max_kept_input_bytes:
                raise QuotaError("your kept recordings take %.1f MB and this one %.1f MB; this server keeps up to %.1f MB per "
                                 "person: delete older jobs in History" % (kept_bytes / 1e6, size / 1e6,
                                                                           quotas.max_kept_input_bytes / 1e6))

    # dispatching
    def _dispatch_loop(self) -> None:
        backoff_s = self.tick_s
        while not self._closed.is_set():
            self._wake.wait(backoff_s)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self.dispatch_once()
                backoff_s = self.tick_s
            except DBAPIError as exc:
                logger.warning("the job store cannot be reached (%s); dispatch waits for it", type(exc).__name__)
                self._store_failed = True
                backoff_s = min(max(backoff_s * 2, 0.5), 5.0)
            except Exception as exc:  # the broker is away: say it, wait longer, try again
                logger.warning("job dispatch failed (%s: %s); retrying", type(exc).__name__, exc)
                backoff_s = min(max(backoff_s * 2, 0.5), 5.0)

    def dispatch_once(self) -> int:
        """One round: take back lapsed leases, settle cancelled waiting jobs, then publish what the free slots allow,
        fairly, each to the host chosen for it. How many were published."""
        now = time.time()
        # leases and heartbeats change on the scale of seconds: read them at most every `housekeeping_s`, not on each
        # submit's or end's wake (those publish the next job, and its latency is every queued job's)
        if time.monotonic() - self._housekept_at >= self.housekeeping_s or self._store_failed:
            expired = self.store.leases_expired()
            if self._store_failed:  # back after an outage: hosts could not renew meanwhile; give them time first
                self._store_failed, self._store_ok_since = False, time.monotonic()
            for row in expired if time.monotonic() - self._store_ok_since >= self.lease_grace_s else []:
                moved = take_back_lost(self.store, row, now)
                if moved is not None:
                    logger.warning("job %s: its host %s stopped renewing its lease; %s", row["id"], row["host"], moved)
                    if moved != QUEUED:
                        self._ended_here(row["id"], moved)
            self._hosts = self.bus.hosts()
            self._housekept_at = time.monotonic()
        hosts = self._hosts
        alive = {host.name for host in hosts}
        running = self.store.where(state=RUNNING)
        busy = collections.Counter(row["host"] for row in running)
        free = {host.name: max(0, host.slots - busy[host.name]) for host in hosts}
        running_per_client = collections.Counter(row.get("client") or row["owner"] for row in running)
        published = 0
        # handed to a host and not claimed yet: it holds that host's slot; published again when its host went away or
        # nothing claimed it in time (the broker lost it); cancelled ones end here
        for row in self.store.published_unclaimed():
            if row["cancel_requested"]:
                self._cancel_waiting(row["id"])
                continue
            target = self._targets.get(row["id"])
            if target in alive and now - float(row["published_at"]) <= self.republish_after_s:
                free[target] -= 1
                continue
            full = self.store.get(row["id"])
            if full is not None and full["state"] == QUEUED and self._publish(full, hosts, free, now):
                published += 1
        if not any(count > 0 for count in free.values()):
            return published  # no slot anywhere: the waiting jobs need not even be read
        waiting = {row["id"]: row for row in self.store.where(state=QUEUED, published_at=None)}
        for job_id in [job_id for job_id, row in waiting.items() if row["cancel_requested"]]:
            self._cancel_waiting(job_id)
            del waiting[job_id]
        candidates = [Waiting(job_id, row.get("client") or row["owner"], row["architecture"], float(row["created_at"]))
                      for job_id, row in waiting.items()]

        def has_room(architecture: str) -> bool:
            return any(free.get(host.name, 0) > 0 for host in serving(architecture, hosts))

        while candidates:
            chosen = pick_next(candidates, running_per_client, self._last_start, has_room)
            if chosen is None:
                break
            candidates.remove(chosen)
            if self._publish(waiting[chosen.job_id], hosts, free, now):
                published += 1
                running_per_client[chosen.client] += 1  # in flight counts as running for the fair pick
                self._last_start[chosen.client] = time.monotonic()
        bounded(self._last_start, 4096, {c.client for c in candidates})
        return published

    def _cancel_waiting(self, job_id: str) -> None:
        if self.store.change(job_id, {"state": QUEUED}, state=CANCELLED, finished_at=time.time(), error="the job was cancelled"):
            self._ended_here(job_id, CANCELLED)

    def choose_host(self, row: Dict[str, Any], hosts: List[HostView], free: Dict[str, int]) -> Optional[HostView]:
        """Where a job goes: a free host that holds its model warm, else a free host with a GPU queue for its
        architecture, else the free host with the most free slots; None when none serves it now."""
        architecture, model = row["architecture"], "%s/%s" % (row["architecture"], row["character"])
        candidates = [host for host in serving(architecture, hosts) if free.get(host.name, 0) > 0]
        if not candidates:
            return None
        return max(candidates, key=lambda host: (model in host.loaded, gpu_queue(architecture) in host.queues, free[host.name],
                                                 -hosts.index(host)))

    def _publish(self, row: Dict[str, Any], hosts: List[HostView], free: Dict[str, int], now: float) -> bool:
        """Mark the row published (only if still queued as read) and hand it to the chosen host's own queue, taking one
        of its free slots. The queues a host consumes are configuration (which jobs it may take); the front addresses
        the host it chose, so a job never waits behind a busy host while another that serves it is free."""
        target = self.choose_host(row, hosts, free)
        if target is None:
            return False
        if not self.store.change(row["id"], {"state": QUEUED, "published_at": row["published_at"], "cancel_requested": False},
                                 published_at=now):
            return False  # cancelled or claimed meanwhile
        try:
            self.publish(row["id"], host_queue(target.name), now)
        except Exception as exc:
            self.store.change(row["id"], {"state": QUEUED, "published_at": now}, published_at=None)
            self.broker_error = "the job broker cannot be reached (%s)" % type(exc).__name__
            raise
        self.broker_error = None
        self._targets[row["id"]] = target.name
        if len(self._targets) > 100000:  # claimed jobs' entries: forget the oldest half
            for job_id in list(self._targets)[:50000]:
                del self._targets[job_id]
        free[target.name] -= 1
        return True

    # events from the hosts
    def _on_event(self, message: Dict[str, Any]) -> None:
        job_id = str(message.get("job") or "")
        ended = "state" in message
        with self._changed:
            if ended:
                self._progress.pop(job_id, None)
            else:
                fraction = message.get("fraction")
                self._progress[job_id] = (float(fraction) if fraction is not None else None, str(message.get("message") or ""))
                self._progress.move_to_end(job_id)
                while len(self._progress) > 10000:
                    self._progress.popitem(last=False)
            self._changed.notify_all()
        if ended:
            self._wake.set()  # a slot came free
            self._report_end(job_id)

    def progress_of(self, job_id: str) -> Tuple[Optional[float], str]:
        with self._changed:
            return self._progress.get(job_id, (None, ""))

    def _report_end(self, job_id: str) -> None:
        if self.on_end is None:
            return
        row = self.store.get(job_id)
        if row is not None and row["state"] in ENDED_STATES:
            self.on_end(JobEnd(job_id, row["architecture"], row["state"], dict(row["timings"] or {}), float(row["created_at"]),
                               float(row["started_at"] or row["created_at"]), float(row["finished_at"] or time.time())))

    def _ended_here(self, job_id: str, state: str) -> None:
        """A job ended by this front (cancelled while queued, interrupted): tell waiters everywhere."""
        try:
            self.bus.ended(job_id, state)
        finally:
            self._on_event({"job": job_id, "state": state})

    # waiting
    def wait(self, job_id: str, progress: ProgressFn = no_progress, cancel: Optional[threading.Event] = None) -> Any:
        """Block until the job ends wherever it runs: progress from the bus, the end read from the store (also when the bus
        says nothing: every half second)."""
        with store_reachable():
            row = self.store.get(job_id)
        if row is None:
            raise UnknownJobError("job %s is not running or waiting here (see its status)" % job_id)
        shown: Tuple[Optional[float], str] = (None, "")
        while row["state"] in ACTIVE_STATES:
            if cancel is not None and cancel.is_set():
                self.cancel(job_id)
            current = self.progress_of(job_id)
            if row["state"] == QUEUED:
                progress(None, self._waiting_message(row))
            elif current != shown:
                shown = current
                progress(*shown)
            with self._changed:
                if self.progress_of(job_id) == shown:
                    self._changed.wait(0.5)
            try:
                row = self.store.get(job_id) or row
            except DBAPIError:  # the store is away: the job may still run; wait for the store to come back
                time.sleep(1.0)
        if row["state"] != SUCCEEDED:
            raise JobError(row["error"] or "the job %s" % row["state"])
        return self.result_of(row)

    def _waiting_message(self, row: Dict[str, Any]) -> str:
        if self.broker_error:
            return "queued: %s; it starts once it is back" % self.broker_error
        hosts = serving(row["architecture"], self._hosts)
        if not hosts:
            return "queued: no worker host serving %s is connected" % row["architecture"]
        position = self.queue_position(row["id"])
        if position is None or position == 1:
            running = self.store.running_count(row["architecture"])
            return "queued: next for %s (%d of its jobs running)" % (row["architecture"], running)
        return "queued: %d job(s) ahead for %s" % (position - 1, row["architecture"])

    # control
    @reachable
    def cancel(self, job_id: str, owner: Optional[str] = None) -> bool:
        row = self.store.get(job_id)
        if row is None or (owner is not None and row["owner"] != owner) or row["state"] not in ACTIVE_STATES:
            return False
        if self.store.change(job_id, {"state": QUEUED}, state=CANCELLED, finished_at=time.time(), error="cancelled before it started"):
            self._ended_here(job_id, CANCELLED)
            return True
        # running on some host (or it just started): that host's lease renewal or the bus tells it
        if self.store.change(job_id, {"state": RUNNING}, cancel_requested=True):
            self.bus.cancel(job_id)
            return True
        return False

    @reachable
    def cancel_session(self, session: str) -> int:
        rows = [row for row in self.store.where(state=list(ACTIVE_STATES), session=session)]
        return sum(1 for row in rows if self.cancel(row["id"]))

    @reachable
    def retry(self, job_id: str, owner: Optional[str]) -> str:
        row = self._row(job_id, owner)
        if row["state"] not in ENDED_STATES or row["state"] == SUCCEEDED:
            raise JobError("job %s is %s: only a failed, cancelled or interrupted job can be retried" % (job_id, row["state"]))
        self.runner.prepare(spec_of(row, self.artifacts, self.input_copy_max_bytes))
        if not self.store.change(job_id, {"state": list(ENDED_STATES)}, state=QUEUED, created_at=time.time(), started_at=None,
                                 finished_at=None, error=None, host=None, lease_until=None, published_at=None,
                                 cancel_requested=False, host_losses=0):
            raise JobError("job %s changed while retrying it; look again" % job_id)
        self._wake.set()
        return job_id

    @reachable
    def recover(self) -> Dict[str, int]:
        """At the front's start: nothing running is interrupted (it may run on a live host); lapsed leases are taken
        back and waiting jobs are published as hosts have room."""
        interrupted = requeued = 0
        now = time.time()
        for row in self.store.where(state=RUNNING, lease_until=None):  # run in-process by this app before it had a broker
            interrupted += self.store.change(row["id"], {"state": RUNNING, "lease_until": None}, state=INTERRUPTED,
                                             finished_at=now, error=INTERRUPTED_REASON)
        expired = self.store.leases_expired()
        if self._store_failed:  # back after an outage: hosts could not renew meanwhile; give them time first
            self._store_failed, self._store_ok_since = False, time.monotonic()
        for row in expired if time.monotonic() - self._store_ok_since >= self.lease_grace_s else []:
            moved = take_back_lost(self.store, row, now)
            interrupted += moved == INTERRUPTED
            requeued += moved == QUEUED
        requeued += len(self.store.where(state=QUEUED))
        self._wake.set()
        return {"interrupted": interrupted, "requeued": requeued, "failed": 0}

    # reading
    def _row(self, job_id: str, owner: Optional[str]) -> Dict[str, Any]:
        return owned_row(self.store, job_id, owner)

    @reachable
    def get(self, job_id: str, owner: Optional[str]) -> Dict[str, Any]:
        return with_local_input(self._row(job_id, owner), self.artifacts)

    @reachable
    def status(self, job_id: str, owner: Optional[str]) -> Dict[str, Any]:
        row = self._row(job_id, owner)
        fraction, message = self.progress_of(job_id) if row["state"] == RUNNING else (None, "")
        if row["state"] == QUEUED:
            message = self._waiting_message(row)
        return status_record(row, self.queue_position(job_id), fraction, message)

    @reachable
    def queue_summary(self) -> List[Dict[str, Any]]:
        rows = self.store.where(state=list(ACTIVE_STATES))
        architectures = sorted({row["architecture"] for row in rows})
        return [{"architecture": architecture,
                 "running": sum(1 for r in rows if r["architecture"] == architecture and r["state"] == RUNNING),
                 "queued": sum(1 for r in rows if r["architecture"] == architecture and r["state"] == QUEUED),
                 "owners_waiting": len({r["owner"] for r in rows if r["architecture"] == architecture and r["state"] == QUEUED})}
                for architecture in architectures]

    @reachable
    def queue_position(self, job_id: str) -> Optional[int]:
        row = self.store.get(job_id)
        if row is None or row["state"] != QUEUED:
            return None
        return 1 + self.store.queued_ahead(row["architecture"], float(row["created_at"]))

    @reachable
    def is_active(self, job_id: str) -> bool:
        row = self.store.get(job_id)
        return row is not None and row["state"] in ACTIVE_STATES

    def hosts(self) -> List[Dict[str, Any]]:
        """The live hosts as the last dispatch saw them."""
        return [{"host": host.name, "queues": ", ".join(host.queues), "slots": host.slots, "running": host.running,
                 "warm models": ", ".join(host.loaded)} for host in self._hosts]

    @reachable
    def delete(self, job_id: str, owner: Optional[str]) -> None:
        delete_ended(self.store, self.artifacts, self._row(job_id, owner))

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._dispatcher.join(5)
        self.bus.close()
