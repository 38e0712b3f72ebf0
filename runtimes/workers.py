"""The registry of live workers and the one owner of their state.

Every state change goes through ``WorkerTable.transition`` under the table's lock, along the legal
transitions of ``runtimes.states``; request threads, control readers and the monitor only call the
table's small atomic operations (hold, release, begin a stop) and never set a state themselves. A
worker is held by one ticket at a time; others wait in its line, in order, visibly and cancellably.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from runtimes.environments import EnvSpec
from runtimes.errors import JobCancelledError, WorkerStoppedError
from runtimes.process import WorkerProcess
from runtimes.protocol import Header
from runtimes.reaper import WorkerRecord
from runtimes.states import END_STATES, HELD_STATES, LIVE_STATES, TRANSITIONS, WorkerState

logger = logging.getLogger(__name__)

ProgressFn = Callable[[Optional[float], str], None]
_ticket_ids = itertools.count(1)


@dataclass(frozen=True, eq=False)
class Ticket:
    """One job's (or one eviction's) place in a worker's line."""

    what: str
    id: int = field(default_factory=lambda: next(_ticket_ids))


@dataclass
class CharacterSlot:
    """A character loaded in a worker, with the memory its load added (measured, or estimated before)."""

    key: str
    character: str
    bytes: int
    measured: bool
    load_s: float
    last_used: float = field(default_factory=time.monotonic)
    details: Dict[str, Any] = field(default_factory=dict)
    """What the adapter found loading it (version, sample rate, ...)."""
    worker_key: str = ""
    """Its key inside the worker: ``key`` with a folder mapped as the worker sees it ("" when the same)."""

    @property
    def key_in_worker(self) -> str:
        return self.worker_key or self.key


@dataclass(eq=False)
class ManagedWorker:
    name: str
    spec: EnvSpec
    device: str
    process: WorkerProcess
    base_bytes: int
    """The worker's own memory (runtime and shared assets); characters come on top."""
    state: WorkerState = WorkerState.STARTING
    characters: "OrderedDict[str, CharacterSlot]" = field(default_factory=OrderedDict)
    holder: Optional[Ticket] = None
    waiting: List[Ticket] = field(default_factory=list)
    activity: str = "starting"
    stop_reason: Optional[str] = None
    """Set when we decide to stop it: its death is then no crash."""
    started_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    last_heartbeat: float = field(default_factory=time.monotonic)
    last_error: str = ""
    peak_bytes: int = 0
    start_s: float = 0.0
    launched_at: float = field(default_factory=time.perf_counter)
    """``perf_counter`` when its kind was asked to launch it."""
    spawn_s: float = 0.0
    """From launch to its hello: what its environment kind costs to start (a container's engine start, a venv's interpreter)."""
    events: "queue.Queue[Header]" = field(default_factory=queue.Queue)
    """Progress messages from the control reader, consumed by the job that holds the worker."""

    @property
    def architecture(self) -> str:
        return self.spec.name

    @property
    def accounted_bytes(self) -> int:
        return self.base_bytes + sum(slot.bytes for slot in self.characters.values())


class WorkerTable:
    def __init__(self, record: WorkerRecord) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.record = record
        self.closed = False
        self.transitions = 0
        self._workers: Dict[str, ManagedWorker] = {}

    # membership
    def register(self, worker: ManagedWorker) -> None:
        with self.lock:
            if self.closed:
                raise WorkerStoppedError("the app is shutting down")
            self._workers[worker.name] = worker
            self._write_record()

    def live(self, architecture: Optional[str] = None) -> List[ManagedWorker]:
        with self.lock:
            return [w for w in self._workers.values() if architecture is None or w.architecture == architecture]

    def by_name(self, name: str) -> Optional[ManagedWorker]:
        with self.lock:
            return self._workers.get(name)

    def close(self) -> List[ManagedWorker]:
        """Admission closes first: no worker registers after this."""
        with self.lock:
            self.closed = True
            self.changed.notify_all()
            return list(self._workers.values())

    def _write_record(self) -> None:
        self.record.write([worker.process.handle.record_entry() for worker in self._workers.values()])

    # the one place a state changes
    def transition(self, worker: ManagedWorker, to: WorkerState, reason: str = "") -> bool:
        with self.lock:
            if worker.state == to:
                return True
            if to not in TRANSITIONS[worker.state]:
                logger.debug("worker %s: refused %s -> %s (%s)", worker.name, worker.state.value, to.value, reason)
                return False
            logger.info("worker %s: %s -> %s%s", worker.name, worker.state.value, to.value, " (%s)" % reason if reason else "")
            worker.state = to
            self.transitions += 1
            if to in END_STATES and self._workers.get(worker.name) is worker:
                del self._workers[worker.name]
                self._write_record()
            self.changed.notify_all()
            return True

    # holding a worker
    def acquire(self, worker: ManagedWorker, ticket: Ticket, cancel: threading.Event, progress: ProgressFn) -> bool:
        """Wait in the worker's line until it is ours (True), or until it ends meanwhile (False).
        Shows the place in line; a cancel ends the wait at once."""
        with self.lock:
            worker.waiting.append(ticket)
        shown = ""
        try:
            first = True
            while True:
                with self.lock:
                    if not first:
                        self.changed.wait(0.25)
                    first = False
                    if worker.state not in LIVE_STATES:
                        return False
                    if worker.waiting[0] is ticket and worker.holder is None and worker.state == WorkerState.READY:
                        worker.holder = ticket
                        worker.activity = ticket.what
                        self.transition(worker, WorkerState.BUSY, ticket.what)
                        return True
                    ahead = worker.waiting.index(ticket) + (1 if worker.holder is not None else 0)
                    doing = worker.activity or worker.state.value
                if cancel.is_set():
                    raise JobCancelledError("the job was cancelled while waiting for the %s worker" % worker.architecture)
                message = "waiting for the %s worker (%s; %d job(s) ahead)" % (worker.architecture, doing, ahead)
                if message != shown:
                    progress(None, message)
                    shown = message
        finally:
            with self.lock:
                if ticket in worker.waiting:
                    worker.waiting.remove(ticket)
                self.changed.notify_all()

    def hold_new(self, worker: ManagedWorker, ticket: Ticket) -> None:
        """A worker being started is held by the job that starts it."""
        with self.lock:
            worker.holder = ticket
            worker.activity = "starting for %s" % ticket.what

    def try_hold_idle(self, worker: ManagedWorker, ticket: Ticket) -> bool:
        """Hold a worker only if it is free and nobody waits for it (evictions, keep-alive unloads)."""
        with self.lock:
            if worker.state != WorkerState.READY or worker.holder is not None or worker.waiting:
                return False
            worker.holder = ticket
            worker.activity = ticket.what
            return self.transition(worker, WorkerState.BUSY, ticket.what)

    def set_activity(self, worker: ManagedWorker, state: WorkerState, activity: str) -> None:
        with self.lock:
            worker.activity = activity
            self.transition(worker, state, activity)

    def release(self, worker: ManagedWorker, ticket: Ticket, stop_reason: Optional[str] = None) -> bool:
        """Give the worker back. With ``stop_reason``, stop it instead when nobody waits for it:
        returns True, and the caller must finish the stop (the worker stays out of everyone's reach)."""
        with self.lock:
            if worker.holder is not ticket:
                return False
            worker.holder = None
            worker.last_used = time.monotonic()
            if worker.state not in HELD_STATES:
                return False
            if stop_reason is not None and not worker.waiting:
                return self._begin_stop(worker, stop_reason)
            worker.activity = ""
            self.transition(worker, WorkerState.READY, "free")
            return False

    # stopping
    def begin_stop(self, worker: ManagedWorker, reason: str) -> bool:
        """Mark a live worker as stopping on purpose (whoever holds it sees its end as no crash)."""
        with self.lock:
            return self._begin_stop(worker, reason)

    def begin_stop_if_idle(self, worker: ManagedWorker, reason: str) -> bool:
        """Atomically: stop only a free worker nobody waits for (never one a job just took)."""
        with self.lock:
            if worker.state != WorkerState.READY or worker.holder is not None or worker.waiting:
                return False
            return self._begin_stop(worker, reason)

    def begin_crash_stop(self, worker: ManagedWorker, reason: str) -> Optional[str]:
        """The worker died. Returns None when this call is the one that accounts for it as a crash;
        else the reason it was stopped on purpose (or that another thread already accounted for it)."""
        with self.lock:
            if worker.stop_reason is not None:
                return worker.stop_reason
            self._begin_stop(worker, reason)
            return None

    def _begin_stop(self, worker: ManagedWorker, reason: str) -> bool:
        if worker.state not in LIVE_STATES:
            return False
        worker.stop_reason = reason
        worker.activity = "stopping: %s" % reason
        return self.transition(worker, WorkerState.STOPPING, reason)
