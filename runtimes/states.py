"""Worker lifecycle states and the legal transitions between them.

A worker process goes STARTING -> READY (free) <-> BUSY / LOADING (held by one job) and ends in
STOPPED (we stopped it), BACKOFF (it died; its next start waits out a cooldown) or FAILED (it cannot
boot, or died too often; refused until someone presses Retry). Only ``runtimes.workers.WorkerTable``
changes a state, under its lock, and only along ``TRANSITIONS``.
"""

from __future__ import annotations

from enum import Enum
from typing import Dict, FrozenSet


class WorkerState(str, Enum):
    STARTING = "starting"
    LOADING = "loading"
    READY = "ready"
    BUSY = "busy"
    STOPPING = "stopping"
    STOPPED = "stopped"
    BACKOFF = "backoff"
    FAILED = "failed"


S = WorkerState
TRANSITIONS: Dict[WorkerState, FrozenSet[WorkerState]] = {
    S.STARTING: frozenset({S.LOADING, S.BUSY, S.READY, S.STOPPING}),
    S.LOADING: frozenset({S.BUSY, S.READY, S.STOPPING}),
    S.READY: frozenset({S.BUSY, S.LOADING, S.STOPPING}),
    S.BUSY: frozenset({S.LOADING, S.READY, S.STOPPING}),
    S.STOPPING: frozenset({S.STOPPED, S.BACKOFF, S.FAILED}),
    S.STOPPED: frozenset(),
    S.BACKOFF: frozenset(),
    S.FAILED: frozenset(),
}
LIVE_STATES = frozenset({S.STARTING, S.LOADING, S.READY, S.BUSY})
HELD_STATES = frozenset({S.STARTING, S.LOADING, S.BUSY})
"""A job (or an eviction) holds the worker; nobody else may send it work."""
END_STATES = frozenset({S.STOPPED, S.BACKOFF, S.FAILED})
