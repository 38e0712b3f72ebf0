"""Worker lifecycle states."""

from __future__ import annotations

from enum import Enum


class WorkerState(str, Enum):
    STARTING = "starting"
    LOADING = "loading"
    READY = "ready"
    BUSY = "busy"
    STOPPING = "stopping"
    STOPPED = "stopped"
    BACKOFF = "backoff"
    FAILED = "failed"


LIVE_STATES = frozenset({WorkerState.STARTING, WorkerState.LOADING, WorkerState.READY, WorkerState.BUSY})
