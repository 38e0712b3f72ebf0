"""One request to a held worker and its reply, while watching the worker: its death, its heartbeats,
its progress, the time limit and the person's cancel. Progress is handed to the caller's callback on
the caller's thread (the control reader only enqueues), and a callback that raises is logged, never
fatal."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

from runtimes.errors import JobCancelledError, JobTimeoutError, ProtocolError, RemoteError
from runtimes.protocol import Header
from runtimes.workers import ManagedWorker, ProgressFn

logger = logging.getLogger(__name__)

ChunkFn = Callable[[np.ndarray, int], None]
"""Called on the caller's thread with each piece of a streamed take (its samples and rate) as it arrives."""
Died = Callable[[ManagedWorker, str], Exception]
"""Accounts for a dead worker and returns the error the job raises."""
Stop = Callable[[ManagedWorker, str], None]


def safe_progress(progress: ProgressFn) -> ProgressFn:
    """A progress callback that raises must not break the job, nor anything else."""

    def call(fraction: Optional[float], message: str) -> None:
        try:
            progress(fraction, message)
        except Exception:  # boundary with the caller's code: logged with its traceback
            logger.exception("a progress callback raised; the job goes on")

    return call


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    heartbeat_timeout_s: float
    graceful_stop_s: float
    stall_s: Optional[float] = None
    """Kill when no progress came for this long (jobs); None for loads, bounded by ``timeout_s`` alone."""


def ask(
    worker: ManagedWorker,
    header: Header,
    audio: Optional[np.ndarray],
    expected: str,
    limits: Limits,
    cancel: Optional[threading.Event],
    progress: ProgressFn,
    died: Died,
    stop: Stop,
    on_chunk: Optional[ChunkFn] = None,
) -> Tuple[Header, Optional[np.ndarray]]:
    """Send ``header`` and wait for its ``expected`` reply. ``on_chunk``: the take streams (``header["stream"]``); each
    ``chunk`` goes to it as it comes, and the reply carries the pieces joined."""
    job_id = str(header["job"])
    what = str(header["type"])
    when = WHEN.get(what, "while handling %r" % what)
    data = worker.process.data
    assert data is not None
    _drain(worker.events, None, progress)  # what a previous holder left
    try:
        worker.process.send(header, audio=audio)
    except (OSError, ValueError) as exc:  # the pipe broke while sending
        raise died(worker, when) from exc
    started = last_progress = time.monotonic()
    deadline = started + limits.timeout_s
    cancel_sent_at: Optional[float] = None
    seen = 0
    pieces: List[np.ndarray] = []
    while True:
        drained = _drain(worker.events, job_id, progress)
        if drained:
            seen += drained
            last_progress = time.monotonic()
        if data.poll(0.05):
            try:
                reply, payload = data.recv()
            except (EOFError, OSError, ProtocolError) as exc:
                raise died(worker, when) from exc
            if reply.get("job") != job_id:
                continue  # a late reply to a job that was given up on
            if reply["type"] == "error":
                error = reply.get("error", {})
                if error.get("type") == JobCancelledError.__name__:
                    raise JobCancelledError("the %s job was cancelled" % worker.architecture)
                raise RemoteError.from_dict(error)
            if reply["type"] == "chunk" and on_chunk is not None and payload is not None:
                seen += _drain(worker.events, job_id, progress)  # the progress that came before it, first
                pieces.append(payload)
                last_progress = time.monotonic()
                if cancel is None or not cancel.is_set():
                    on_chunk(payload, int(reply["sample_rate"]))
                continue
            if reply["type"] == expected:
                if pieces and payload is None:
                    payload = np.concatenate([piece.reshape(-1) for piece in pieces])
                # Progress travels on the other channel and may trail the reply: deliver all of it first.
                catch_up_until = time.monotonic() + 1.0
                seen += _drain(worker.events, job_id, progress)
                while seen < int(reply.get("progress_sent", 0)) and (left_s := catch_up_until - time.monotonic()) > 0:
                    try:  # block for the next one (it is usually microseconds away): no polling sleep on the hot path
                        seen += _deliver(worker.events.get(timeout=left_s), job_id, progress)
                    except queue.Empty:
                        break
                return reply, payload
            raise ProtocolError("unexpected %r reply to %s" % (reply["type"], job_id))
        now = time.monotonic()
        if not worker.process.alive():
            raise died(worker, when)
        if cancel is not None and cancel.is_set():
            if cancel_sent_at is None:
                cancel_sent_at = now
                try:
                    worker.process.send_control({"type": "cancel", "job": job_id})
                except (OSError, ValueError):
                    pass
            elif now - cancel_sent_at > limits.graceful_stop_s:
                stop(worker, "cancelled %s did not stop" % what)
                raise JobCancelledError("the %s job was cancelled (its worker was stopped)" % worker.architecture)
        if now > deadline:
            stop(worker, "%s ran past its time limit" % what)
            raise JobTimeoutError(
                "the %s %s ran past its %.0f s limit and was stopped" % (worker.architecture, _noun(what), limits.timeout_s)
            )
        silent_s = now - worker.last_heartbeat
        if silent_s > limits.heartbeat_timeout_s:
            stop(worker, "no heartbeat")
            raise JobTimeoutError("the %s worker stopped answering for %.0f s and was stopped" % (worker.architecture, silent_s))
        if limits.stall_s is not None and now - last_progress > limits.stall_s:
            stop(worker, "no progress")
            raise JobTimeoutError("the %s worker made no progress for %.0f s and was stopped" % (worker.architecture, limits.stall_s))


WHEN = {"generate": "while generating", "load": "while loading", "unload": "while unloading", "prepare": "while loading its shared assets"}


def _noun(what: str) -> str:
    return {"generate": "job", "load": "load", "prepare": "start-up"}.get(what, what)


def _drain(events: "queue.Queue[Header]", job_id: Optional[str], progress: ProgressFn) -> int:
    """Hand queued progress for ``job_id`` to the callback; returns how many there were."""
    seen = 0
    while True:
        try:
            event = events.get_nowait()
        except queue.Empty:
            return seen
        seen += _deliver(event, job_id, progress)


def _deliver(event: Header, job_id: Optional[str], progress: ProgressFn) -> int:
    """One progress event to the callback if it is this job's; 1 if it was."""
    if job_id is None or event.get("job") != job_id:
        return 0
    fraction = event.get("fraction")
    progress(float(fraction) if fraction is not None else None, str(event.get("message", "")))
    return 1
