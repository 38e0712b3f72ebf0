"""Jobs: submitted, kept in the store, run fairly, waited on, cancelled, recovered after a restart.

Scheduling: at most ``max_concurrent`` jobs run at once and at most ``max_per_architecture`` of one
architecture (a slow conversion never takes every slot from Piper); which waiting job goes next is
``jobs.fairness.pick_next``. A job slot is always given back, whatever fails (the store included).

``JobService`` is the in-process implementation of the job-queue seam (``jobs.queue.JobQueue``). The recordings it
keeps go to the artifact store by key (``jobs.artifacts``); rows written before keys name them by absolute path and
are read as before."""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple, Union

from jobs import retention
from jobs.artifacts import ArtifactStore, LocalFolderStore, check_prefix
from jobs.errors import JobError, QuotaError, UnknownJobError
from jobs.fairness import bounded, pick_next
from jobs.kept_inputs import keep_input, sha256_of, spec_of
from jobs.queue import JobEnd, JobQueue, ProgressFn, no_progress
from jobs.quotas import OwnerQuotas
from jobs.rows import delete_ended, owned_row, status_record, with_local_input
from jobs.schema import CANCELLED, ENDED_STATES, FAILED, INTERRUPTED, QUEUED, RUNNING, SUCCEEDED
from jobs.spec import JobSpec
from jobs.store import JobStore

logger = logging.getLogger(__name__)
__all__ = ["INTERRUPTED_REASON", "JobEnd", "JobService", "ProgressFn", "Runner", "sha256_of"]
INTERRUPTED_REASON = "the app stopped while this job was running; Retry runs it again"


class Runner(Protocol):
    """What runs a job (the app's Workstation)."""

    def prepare(self, spec: JobSpec) -> Any:
        """Validate and decode everything the person gave; raise with a message naming the problem."""

    def execute(self, prepared: Any, job_id: str, progress: ProgressFn, cancel: threading.Event, client: str) -> Tuple[Any, Dict[str, Any]]:
        """Run it: the result a waiter gets, and the store columns it sets (output, timings, provenance). ``client``: who
        asked (a stable identity: an identical earlier result of the same client may say it came from the cache)."""

    def message_for(self, exc: BaseException) -> str:
        """The message a person sees for a failure (unexpected ones logged with an id)."""


@dataclass
class _Active:
    """A queued or running job in this process: what its waiters and Cancel need."""

    job_id: str
    owner: str
    session: str
    architecture: str
    created_at: float
    prepared: Any
    """The runner's validated request; None for a waiting job with a recording (its decoded audio is not held while it
    waits: a batch of long recordings would otherwise sit in memory), prepared again when it starts."""
    batch_id: Optional[str] = None
    attempts: int = 0
    """Runs before this one (a Retry counts up)."""
    spec: Optional[JobSpec] = None
    state: str = QUEUED
    cancel: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)
    progress: Tuple[Optional[float], str] = (None, "")
    done: bool = False
    result: Any = None
    error: Optional[str] = None
    client: str = ""
    """The stable identity quotas and the fair pick count (default: the owner)."""

    def __post_init__(self) -> None:
        self.client = self.client or self.owner

    def report(self, fraction: Optional[float], message: str) -> None:
        with self.changed:
            self.progress = (fraction, message)
            self.changed.notify_all()

    def finish(self, state: str, result: Any = None, error: Optional[str] = None) -> None:
        with self.changed:
            self.state, self.result, self.error, self.done = state, result, error, True
            self.changed.notify_all()


class _RunFailed(Exception):
    """The runner failed: how the job ends and what the person reads."""

    def __init__(self, state: str, message: str) -> None:
        super().__init__(message)
        self.state, self.message = state, message


class JobService(JobQueue):
    """Jobs queued and run in this process.

    Kept recordings go to ``artifacts`` under ``<inputs_prefix>/<job id><suffix>``. Given only ``inputs_dir`` (how the
    app builds it today), the store is ``LocalFolderStore(inputs_dir.parent)`` and the prefix ``inputs_dir.name``: the
    files stay where they were, and a store given later with that same root reads every key written before."""

    def __init__(self, store: JobStore, runner: Runner, inputs_dir: Optional[Path] = None, max_concurrent: int = 4,
                 max_per_architecture: int = 2, input_copy_max_bytes: int = 50 << 20, quotas: OwnerQuotas = OwnerQuotas(),
                 artifacts: Optional[ArtifactStore] = None, inputs_prefix: Optional[str] = None) -> None:
        if artifacts is None:
            if inputs_dir is None:
                raise ValueError("a job service needs an artifact store (or an inputs folder, whose parent becomes one)")
            artifacts = LocalFolderStore(inputs_dir.parent)
        if inputs_prefix is None:
            inputs_prefix = (artifacts.key_of(inputs_dir) if inputs_dir is not None else None) or "inputs"
        self.store = store
        self.runner = runner
        self.on_end: Optional[Callable[[JobEnd], None]] = None
        """Told each job's end: the app's metrics and traces. It must not raise."""
        self.artifacts = artifacts
        self.inputs_prefix = check_prefix(inputs_prefix)
        self.max_concurrent = max(1, max_concurrent)
        self.max_per_architecture = max(1, max_per_architecture)
        self.input_copy_max_bytes = input_copy_max_bytes
        self.quotas = quotas
        self._lock = threading.Condition()
        self._queue: List[_Active] = []
        self._running: Dict[str, _Active] = {}
        self._active: Dict[str, _Active] = {}
        self._recent: Deque[_Active] = collections.deque(maxlen=256)
        """Finished jobs whose waiters may not have collected them yet (a result is an object, not a row)."""
        self._last_start: Dict[str, float] = {}
        self._pending: Dict[str, Tuple[int, int]] = {}
        """Per client: places and recording bytes of submissions being prepared (not yet in the line)."""
        self.last_start_limit = 4096
        """Clients remembered for the fair pick (one entry per client ever seen would grow without bound)."""
        self._closed = False
        self._dispatcher = threading.Thread(target=self._dispatch, name="job-dispatcher", daemon=True)
        self._dispatcher.start()

    # submitting
    def submit(self, spec: JobSpec, owner: str, session: str = "", batch_id: Optional[str] = None, prepared: Any = None,
               client: Optional[str] = None) -> str:
        """Validate (raising what is wrong, before anything is recorded), record as queued, and return its id.
        ``client``: the stable identity its quotas and turn count against (default: the owner)."""
        client = client or owner
        input_bytes = Path(spec.audio_path).stat().st_size if spec.audio_path else 0
        with self._reserved(client, input_bytes if input_bytes <= self.input_copy_max_bytes else 0):
            return self._submit(spec, owner, session, batch_id, prepared, client, input_bytes)

    def _submit(self, spec: JobSpec, owner: str, session: str, batch_id: Optional[str], prepared: Any, client: str,
                input_bytes: int) -> str:
        prepared = self.runner.prepare(spec) if prepared is None else prepared
        job_id = uuid.uuid4().hex
        input_name, input_sha256, input_key = self._keep_input(job_id, spec.audio_path)
        if spec.audio_path and not self._starts_now(spec.architecture):
            prepared = None
        now = time.time()
        self.store.add({
            "id": job_id, "owner": owner, "session": session, "batch_id": batch_id, "state": QUEUED,
            "architecture": spec.architecture, "character": spec.character, "text": spec.text, "input_name": input_name,
            "input_sha256": input_sha256, "input_path": input_key, "request": spec.request(), "created_at": now, "attempts": 0,
            "timings": {}, "output_bytes": 0, "cached": False, "provenance": {}, "client": client,
            "input_bytes": input_bytes if input_key else 0,
        })
        kept = spec.with_input(str(self.artifacts.path_for(input_key))) if input_key else spec
        self._enqueue(_Active(job_id, owner, session, spec.architecture, now, prepared, batch_id, spec=kept, client=client))
        return job_id

    @contextlib.contextmanager
    def _reserved(self, client: str, input_bytes: int) -> Iterator[None]:
        """Check the client's quotas and hold its place while the job is prepared and recorded (requests sent at once
        each count the others' places), then give the place back: the job is in the line by then, or refused."""
        quotas = self.quotas
        if not (quotas.max_queued_jobs or quotas.max_kept_input_bytes):
            yield
            return
        kept_bytes = self.store.client_holdings(client)[1] if quotas.max_kept_input_bytes and input_bytes else 0
        with self._lock:
            places, pending_bytes = self._pending.get(client, (0, 0))
            self._check_quotas(client, input_bytes, places, kept_bytes + pending_bytes)
            self._pending[client] = (places + 1, pending_bytes + input_bytes)
        try:
            yield
        finally:
            with self._lock:
                places, pending_bytes = self._pending.pop(client, (1, input_bytes))
                if places > 1:
                    self._pending[client] = (places - 1, pending_bytes - input_bytes)

    def _check_quotas(self, client: str, input_bytes: int, pending: int, kept_bytes: int) -> None:
        """(with the lock held) Refuse what would take the client past its quotas."""
        quotas = self.quotas
        if quotas.max_queued_jobs:
            # this service's own line holds every queued job of this app (recovered ones too)
            queued = pending + sum(1 for waiting in self._queue if waiting.client == client)
            if queued >= quotas.max_queued_jobs:
                raise QuotaError("you have %d jobs waiting; this server takes up to %d per person at once: wait for some to "
                                 "finish, or cancel some" % (queued, quotas.max_queued_jobs))
        if not (quotas.max_kept_input_bytes and input_bytes):
            return  # nothing to keep (text to speech): no query on the hot path
        if kept_bytes + input_bytes > quotas.max_kept_input_bytes:
            raise QuotaError("your kept recordings take %.1f MB and this one %.1f MB; this server keeps up to %.1f MB per person: "
                             "delete older jobs in History" % (kept_bytes / 1e6, input_bytes / 1e6, quotas.max_kept_input_bytes / 1e6))

    def _starts_now(self, architecture: str) -> bool:
        with self._lock:
            return not self._queue and self._has_room(architecture)

    def _has_room(self, architecture: str) -> bool:
        """A free slot, and one in this architecture's lane (call with the lock held)."""
        return (len(self._running) < self.max_concurrent
                and sum(1 for a in self._running.values() if a.architecture == architecture) < self.max_per_architecture)

    def _keep_input(self, job_id: str, audio_path: Optional[str]) -> Tuple[Optional[str], Optional[str], Optional[str]]:
        return keep_input(self.artifacts, self.inputs_prefix, self.input_copy_max_bytes, job_id, audio_path)

    def _spec_of(self, row: Dict[str, Any]) -> JobSpec:
        return spec_of(row, self.artifacts, self.input_copy_max_bytes)

    def _enqueue(self, active: _Active) -> None:
        with self._lock:
            self._active[active.job_id] = active
            self._queue.append(active)
            self._lock.notify_all()

    # scheduling
    def _pick(self) -> Optional[_Active]:
        running = collections.Counter(a.client for a in self._running.values())
        return pick_next(self._queue, running, self._last_start, self._has_room)

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                chosen = self._pick()
                while chosen is None and not self._closed:
                    self._lock.wait()
                    chosen = self._pick()
                if self._closed:
                    return
                assert chosen is not None
                self._queue.remove(chosen)
                self._running[chosen.job_id] = chosen
                self._last_start[chosen.client] = time.monotonic()
                bounded(self._last_start, self.last_start_limit, {a.client for a in self._active.values()})
                self._lock.notify_all()  # queued waiters: their place in line moved
            threading.Thread(target=self._run, args=(chosen,), name="job-%s" % chosen.job_id[:8], daemon=True).start()

    def _run(self, active: _Active) -> None:
        """One job on its own thread. Whatever fails, the store included, the job ends and its slot is given back."""
        started = time.time()
        state, result, error = FAILED, None, None
        timings: Dict[str, Any] = {}
        try:
            if not self.store.move(active.job_id, [QUEUED], state=RUNNING, started_at=started, attempts=active.attempts + 1):
                state, error = CANCELLED, "cancelled before it started"  # a Cancel won the race
                return
            with active.changed:
                active.state = RUNNING
                active.changed.notify_all()
            result, columns = self._execute(active)
            columns["timings"] = timings = dict(columns.get("timings") or {}, queue_wait_s=round(started - active.created_at, 4))
            self.store.update(active.job_id, state=SUCCEEDED, finished_at=time.time(), error=None, **columns)
            state = SUCCEEDED
        except _RunFailed as failed:
            state, error = failed.state, failed.message
            self._record_end(active, state, error, started)
        except BaseException as exc:  # the store failed: the job still ends, with an id the log explains
            state, result, error = FAILED, None, self._unrecorded(active, exc)
            self._record_end(active, state, error, started)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._end(active, state, result, error)
            if self.on_end is not None:
                self.on_end(JobEnd(active.job_id, active.architecture, state, timings, active.created_at, started, time.time()))

    def _execute(self, active: _Active) -> Tuple[Any, Dict[str, Any]]:
        try:
            if active.cancel.is_set():
                raise JobError("the job was cancelled")
            if active.prepared is None and active.spec is not None:
                active.prepared = self.runner.prepare(active.spec)  # a recording's job that waited: decoded now
            return self.runner.execute(active.prepared, active.job_id, active.report, active.cancel, active.client)
        except BaseException as exc:  # a thread boundary: every failure ends the job with what the person should read
            state = INTERRUPTED if self._closed else CANCELLED if active.cancel.is_set() else FAILED
            message = {INTERRUPTED: INTERRUPTED_REASON, CANCELLED: "the job was cancelled"}.get(state) or self.runner.message_for(exc)
            if not isinstance(exc, Exception):
                raise
            raise _RunFailed(state, message) from exc

    def _unrecorded(self, active: _Active, exc: BaseException) -> str:
        error_id = uuid.uuid4().hex[:8]
        logger.error("error %s: job %s could not be recorded in the job store", error_id, active.job_id, exc_info=exc)
        return "this job's result could not be recorded in the job store (error id %s; the details are in the server log)" % error_id

    def _record_end(self, active: _Active, state: str, error: Optional[str], started: float) -> None:
        try:
            self.store.update(active.job_id, state=state, finished_at=time.time(), error=error,
                              timings={"queue_wait_s": round(started - active.created_at, 4)})
        except Exception:  # the store is down: the job still ends here; its row says running until a restart interrupts it
            logger.exception("could not record the end of job %s (%s)", active.job_id, state)

    def _end(self, active: _Active, state: str, result: Any = None, error: Optional[str] = None) -> None:
        active.prepared = None  # its decoded input is not kept with the finished jobs waiters may still collect
        with self._lock:
            self._running.pop(active.job_id, None)
            self._active.pop(active.job_id, None)
            self._recent.append(active)
            self._lock.notify_all()
        active.finish(state, result, error)

    # waiting
    def _find_active(self, job_id: str) -> Optional[_Active]:
        with self._lock:
            found = self._active.get(job_id)
            if found is None:
                found = next((a for a in self._recent if a.job_id == job_id), None)
            return found

    def queue_position(self, job_id: str) -> Optional[int]:
        """1 = next to start among its architecture's queued jobs; None when it is not queued."""
        with self._lock:
            mine = self._active.get(job_id)
            if mine is None or mine not in self._queue:
                return None
            return 1 + sum(1 for a in self._queue if a.architecture == mine.architecture and a.created_at < mine.created_at)

    def _waiting_message(self, active: _Active) -> str:
        position = self.queue_position(active.job_id)
        if position is None:
            return "starting"
        with self._lock:
            running_here = sum(1 for a in self._running.values() if a.architecture == active.architecture)
        if position == 1:
            return "queued: next for %s (%d of its jobs running)" % (active.architecture, running_here)
        return "queued: %d job(s) ahead for %s" % (position - 1, active.architecture)

    def wait(self, job_id: str, progress: ProgressFn = no_progress, cancel: Optional[threading.Event] = None) -> Any:
        """Block until the job ends; relay its progress (and its place in line) from the waiting thread. Returns
        the runner's result, or raises ``JobError`` with the message the person should see."""
        active = self._find_active(job_id)
        if active is None:
            raise UnknownJobError("job %s is not running in this app (see its status)" % job_id)
        shown: Tuple[Optional[float], str] = (None, "")
        while True:
            with active.changed:
                if not active.done and active.progress == shown:
                    active.changed.wait(0.5 if active.state == QUEUED else 5.0)
                done, current, state = active.done, active.progress, active.state
            if done:
                break
            if cancel is not None and cancel.is_set():
                self.cancel(job_id)
            if state == QUEUED:
                progress(None, self._waiting_message(active))
            elif current != shown:
                shown = current
                progress(*current)
        if active.state != SUCCEEDED:
            raise JobError(active.error or "the job %s" % active.state)
        return active.result

    # control
    def cancel(self, job_id: str, owner: Optional[str] = None) -> bool:
        """Cancel a queued job (it never starts) or a running one (its work stops); False if it had ended."""
        with self._lock:
            active = self._active.get(job_id)
            if active is None or (owner is not None and active.owner != owner):
                return False
            active.cancel.set()
            queued = active in self._queue
            if queued:
                self._queue.remove(active)
        if queued and self.store.move(job_id, [QUEUED], state=CANCELLED, finished_at=time.time(), error="cancelled before it started"):
            self._end(active, CANCELLED, error="cancelled before it started")
        return True

    def cancel_session(self, session: str) -> int:
        with self._lock:
            mine = [a.job_id for a in self._active.values() if a.session == session]
        return sum(1 for job_id in mine if self.cancel(job_id))

    def retry(self, job_id: str, owner: Optional[str]) -> str:
        """Run an ended job again with the same settings, in the same row (its attempts count up)."""
        row = self._row(job_id, owner)
        if row["state"] not in ENDED_STATES or row["state"] == SUCCEEDED:
            raise JobError("job %s is %s: only a failed, cancelled or interrupted job can be retried" % (job_id, row["state"]))
        spec = self._spec_of(row)
        with self._reserved(row.get("client") or row["owner"], 0):  # a Retry queues again: the same quotas
            prepared = self.runner.prepare(spec)
            now = time.time()
            if not self.store.move(job_id, list(ENDED_STATES), state=QUEUED, created_at=now, started_at=None, finished_at=None,
                                   error=None):
                raise JobError("job %s changed while retrying it; look again" % job_id)
            self._enqueue(_Active(job_id, row["owner"], row["session"], row["architecture"], now, prepared, row.get("batch_id"),
                                  int(row["attempts"]), spec=spec, client=row.get("client") or ""))
        return job_id

    def recover(self) -> Dict[str, int]:
        """At start: running jobs of a stopped app are interrupted (kept for Retry); queued ones run."""
        interrupted = self.store.interrupt_running(INTERRUPTED_REASON, time.time())
        requeued = failed = 0
        for row in self.store.in_states([QUEUED]):
            if row["id"] in self._active:
                continue
            try:
                spec = self._spec_of(row)
                prepared = self.runner.prepare(spec)
            except Exception as exc:  # one bad row must not stop the others from running
                self.store.update(row["id"], state=FAILED, finished_at=time.time(),
                                  error="could not be run after a restart: %s" % self.runner.message_for(exc))
                failed += 1
                continue
            self._enqueue(_Active(row["id"], row["owner"], row["session"], row["architecture"], row["created_at"],
                                  None if spec.audio_path else prepared, row.get("batch_id"), int(row["attempts"]), spec=spec,
                                  client=row.get("client") or ""))
            requeued += 1
        return {"interrupted": interrupted, "requeued": requeued, "failed": failed}

    # reading
    def _row(self, job_id: str, owner: Optional[str]) -> Dict[str, Any]:
        return owned_row(self.store, job_id, owner)

    def get(self, job_id: str, owner: Optional[str]) -> Dict[str, Any]:
        """A job's row, its kept recording (``input_path``) as a local path to read, or None where it is no longer kept
        (``JobSpec.from_row`` of it is another take's request); another owner's job reads as one that does not exist."""
        return with_local_input(self._row(job_id, owner), self.artifacts)

    def status(self, job_id: str, owner: Optional[str]) -> Dict[str, Any]:
        row = self._row(job_id, owner)
        active = self._find_active(job_id)
        fraction, message = active.progress if active is not None and not active.done else (None, "")
        if row["state"] == QUEUED and active is not None:
            message = self._waiting_message(active)
        return status_record(row, self.queue_position(job_id), fraction, message)

    def queue_summary(self) -> List[Dict[str, Any]]:
        """Per architecture: jobs running, jobs waiting, and how many owners wait (no one's jobs named)."""
        with self._lock:
            architectures = sorted({a.architecture for a in self._active.values()})
            return [{"architecture": architecture,
                     "running": sum(1 for a in self._running.values() if a.architecture == architecture),
                     "queued": sum(1 for a in self._queue if a.architecture == architecture),
                     "owners_waiting": len({a.owner for a in self._queue if a.architecture == architecture})}
                    for architecture in architectures]

    def hosts(self) -> List[Dict[str, Any]]:
        return []  # the jobs run in this process

    def is_active(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._active

    # retention (jobs.retention), through the artifact store
    def prune(self, keep: int, max_bytes: int, max_age_s: float, grace_s: float = 120.0) -> int:
        """Per owner: remove the oldest ended jobs (rows and files) beyond ``keep``, ``max_bytes`` or ``max_age_s``;
        never a queued or running one, never one made in the last ``grace_s``. Returns how many went."""
        return retention.prune(self.store, keep, max_bytes, max_age_s, grace_s, places=[(self.artifacts, "")])

    def sweep_orphans(self, where: Sequence[Union[str, Path]], grace_s: float) -> int:
        """Remove files no job names, untouched for ``grace_s``: ``where`` holds folders of keys of the artifact store
        (str, "" for all of it), or local folders (``Path``, as ``RetentionPolicy.folders``)."""
        places = [(self.artifacts, check_prefix(item)) if isinstance(item, str) else retention.folder_place(item, self.artifacts)
                  for item in where]
        return retention.sweep_orphans(self.store, places, grace_s, also=[(self.artifacts, "")])

    def delete(self, job_id: str, owner: Optional[str]) -> None:
        delete_ended(self.store, self.artifacts, self._row(job_id, owner))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            active = list(self._active.values())
            self._lock.notify_all()
        for job in active:
            job.cancel.set()
