"""The supervisor: starts each architecture's worker in its own environment, keeps it warm,
runs jobs on it, and stops it (never leaving orphans).

Public API: ``Supervisor``, ``SupervisorSettings``, ``JobRequest``, ``JobResult``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import psutil

from runtimes.environments import EnvSpec
from runtimes.errors import (
    JobCancelledError,
    JobTimeoutError,
    ProtocolError,
    RemoteError,
    RuntimeLayerError,
    WorkerBootError,
    WorkerCrashedError,
)
from runtimes.manifest import Manifest
from runtimes.process import WorkerProcess
from runtimes.protocol import Header
from runtimes.states import LIVE_STATES, WorkerState

logger = logging.getLogger(__name__)

ProgressFn = Callable[[Optional[float], str], None]
PythonResolver = Callable[[EnvSpec, ProgressFn], Path]


def _no_progress(fraction: Optional[float], message: str) -> None:
    pass


@dataclass(frozen=True)
class SupervisorSettings:
    project_root: Path
    run_dir: Path
    """Holds the record of live workers, so a restarted app can reap what a crashed one left."""
    boot_timeout_s: float = 60.0
    load_timeout_s: float = 600.0
    job_timeout_s: float = 600.0
    heartbeat_timeout_s: float = 10.0
    progress_stall_s: float = 300.0
    keep_alive_s: float = 300.0
    """Idle time before a worker is stopped; negative keeps it forever, 0 stops it after each job."""
    graceful_stop_s: float = 3.0
    monitor_interval_s: float = 0.5


@dataclass(frozen=True)
class JobRequest:
    architecture: str
    character: str
    character_path: Optional[str] = None
    text: str = ""
    audio: Optional[np.ndarray] = None
    audio_sample_rate: Optional[int] = None
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobResult:
    audio: np.ndarray
    sample_rate: int
    cold: bool
    timings_s: Dict[str, float]


@dataclass
class ManagedWorker:
    key: Tuple[str, str]
    spec: EnvSpec
    process: WorkerProcess
    state: WorkerState = WorkerState.STARTING
    started_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    last_heartbeat: float = field(default_factory=time.monotonic)
    last_progress: float = field(default_factory=time.monotonic)
    last_error: str = ""
    job_id: Optional[str] = None
    progress: ProgressFn = _no_progress
    job_lock: threading.Lock = field(default_factory=threading.Lock)
    load_s: float = 0.0

    @property
    def name(self) -> str:
        return self.process.name


class Supervisor:
    """Runs jobs on warm workers, one job at a time per worker."""

    def __init__(self, settings: SupervisorSettings, specs: Dict[str, EnvSpec], resolve_python: PythonResolver) -> None:
        self.settings = settings
        self.specs = specs
        self.resolve_python = resolve_python
        self.authkey = secrets.token_bytes(32)
        self.private_dir = Path(tempfile.mkdtemp(prefix="voicegen-"))  # mode 0700
        self.workers: Dict[Tuple[str, str], ManagedWorker] = {}
        self._lock = threading.RLock()
        self._spawn_locks: Dict[Tuple[str, str], threading.Lock] = {}
        self._job_ids = itertools.count(1)
        self._closed = threading.Event()
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        self.reap_leftovers()
        self._monitor = threading.Thread(target=self._monitor_loop, name="supervisor-monitor", daemon=True)
        self._monitor.start()

    # state: the one place that changes it
    def set_state(self, worker: ManagedWorker, state: WorkerState, reason: str = "") -> None:
        if worker.state != state:
            logger.info("worker %s: %s -> %s%s", worker.name, worker.state.value, state.value, (" (%s)" % reason) if reason else "")
            worker.state = state

    # jobs
    def generate(
        self,
        request: JobRequest,
        progress: ProgressFn = _no_progress,
        cancel: Optional[threading.Event] = None,
    ) -> JobResult:
        spec = self.specs.get(request.architecture)
        if spec is None:
            raise RuntimeLayerError("unknown architecture %r" % request.architecture)
        key = (request.architecture, request.character if request.character_path is None else request.character_path)
        started = time.perf_counter()
        timings: Dict[str, float] = {}
        cold = False
        while True:
            worker, spawned, spawn_timings = self._ready_worker(key, spec, request, progress)
            cold = cold or spawned
            timings.update(spawn_timings)
            worker.job_lock.acquire()
            if worker.state in LIVE_STATES:
                break
            worker.job_lock.release()  # stopped (idle eviction) while we waited: get a fresh one
        try:
            header, audio = self._run_job(worker, request, progress, cancel)
        finally:
            worker.job_lock.release()
        if self.settings.keep_alive_s == 0:
            self.stop_worker(worker, "keep-alive is 0")
        assert audio is not None
        timings["generate_s"] = float(header.get("generate_s", 0.0))
        timings["total_s"] = time.perf_counter() - started
        return JobResult(audio=audio, sample_rate=int(header["sample_rate"]), cold=cold, timings_s=timings)

    def _run_job(
        self, worker: ManagedWorker, request: JobRequest, progress: ProgressFn, cancel: Optional[threading.Event]
    ) -> Tuple[Header, Optional[np.ndarray]]:
        job_id = "job-%d" % next(self._job_ids)
        self.set_state(worker, WorkerState.BUSY, job_id)
        worker.job_id = job_id
        worker.progress = progress
        worker.last_progress = time.monotonic()
        progress(None, "generating")
        try:
            worker.process.send(
                {
                    "type": "generate",
                    "job": job_id,
                    "text": request.text,
                    "audio_sample_rate": request.audio_sample_rate,
                    "options": request.options,
                },
                audio=request.audio,
            )
            reply = self._await_reply(worker, job_id, "result", self.settings.job_timeout_s, cancel)
        except (OSError, ValueError) as exc:  # the pipe broke while sending
            raise self._crashed(worker, "while receiving a job") from exc
        finally:
            worker.job_id = None
            worker.progress = _no_progress
            worker.last_used = time.monotonic()
            if worker.state == WorkerState.BUSY:
                self.set_state(worker, WorkerState.READY, "job done")
        return reply

    def prewarm(self, architecture: str, character: str, character_path: Optional[str] = None) -> None:
        """Start and load a worker now, so the first job finds it warm."""
        spec = self.specs[architecture]
        key = (architecture, character if character_path is None else character_path)
        request = JobRequest(architecture=architecture, character=character, character_path=character_path)
        self._ready_worker(key, spec, request, _no_progress)

    def _ready_worker(
        self, key: Tuple[str, str], spec: EnvSpec, request: JobRequest, progress: ProgressFn
    ) -> Tuple[ManagedWorker, bool, Dict[str, float]]:
        with self._lock:
            spawn_lock = self._spawn_locks.setdefault(key, threading.Lock())
        with spawn_lock:
            with self._lock:
                existing = self.workers.get(key)
            if existing is not None and existing.state in LIVE_STATES and existing.process.alive():
                return existing, False, {}
            if existing is not None:
                self._forget(existing)
            return self._spawn(key, spec, request, progress)

    def _spawn(
        self, key: Tuple[str, str], spec: EnvSpec, request: JobRequest, progress: ProgressFn
    ) -> Tuple[ManagedWorker, bool, Dict[str, float]]:
        timings: Dict[str, float] = {}
        progress(None, "preparing the %s environment" % spec.name)
        python = self.resolve_python(spec, progress)
        progress(None, "starting the %s worker" % spec.name)
        started = time.perf_counter()
        name = "%s-%d" % (spec.name, next(self._job_ids))
        process = WorkerProcess(name, python, spec.adapter, self.settings.project_root, self.private_dir, self.authkey)
        worker = ManagedWorker(key=key, spec=spec, process=process)
        with self._lock:
            self.workers[key] = worker
        self._record_live_workers()
        try:
            process.handshake(self.settings.boot_timeout_s)
        except WorkerBootError as exc:
            worker.last_error = str(exc)
            self.set_state(worker, WorkerState.FAILED, "boot failed")
            process.kill()
            self._forget(worker)
            raise
        timings["spawn_s"] = time.perf_counter() - started
        threading.Thread(target=self._read_control, args=(worker,), name="control-%s" % name, daemon=True).start()
        self.set_state(worker, WorkerState.LOADING, request.character)
        progress(None, "loading %s" % request.character)
        started = time.perf_counter()
        try:
            process.send(
                {"type": "load", "job": "load", "model": {"character": request.character, "path": request.character_path, "device": "cpu"}}
            )
            self._await_reply(worker, "load", "loaded", self.settings.load_timeout_s, None)
        except BaseException as exc:
            worker.last_error = str(exc)
            self.stop_worker(worker, "load failed")
            raise
        timings["load_s"] = time.perf_counter() - started
        worker.load_s = timings["load_s"]
        worker.last_used = time.monotonic()
        self.set_state(worker, WorkerState.READY, "loaded in %.2f s" % timings["load_s"])
        return worker, True, timings

    def _await_reply(
        self, worker: ManagedWorker, job_id: str, expected: str, timeout_s: float, cancel: Optional[threading.Event]
    ) -> Tuple[Header, Optional[np.ndarray]]:
        deadline = time.monotonic() + timeout_s
        cancel_sent_at: Optional[float] = None
        data = worker.process.data
        assert data is not None
        while True:
            if data.poll(0.05):
                try:
                    header, audio = data.recv()
                except (EOFError, OSError, ProtocolError) as exc:
                    raise self._crashed(worker, "while %s" % ("loading" if job_id == "load" else "generating")) from exc
                if header.get("job") != job_id:
                    continue  # a late reply to a job that was given up on
                if header["type"] == "error":
                    error = header.get("error", {})
                    if error.get("type") == JobCancelledError.__name__:
                        raise JobCancelledError("the %s job was cancelled" % worker.spec.name)
                    raise RemoteError.from_dict(error)
                if header["type"] == expected:
                    return header, audio
                raise ProtocolError("unexpected %r reply to %s" % (header["type"], job_id))
            now = time.monotonic()
            if not worker.process.alive():
                raise self._crashed(worker, "while %s" % ("loading" if job_id == "load" else "generating"))
            if cancel is not None and cancel.is_set():
                if cancel_sent_at is None:
                    cancel_sent_at = now
                    worker.process.send_control({"type": "cancel", "job": job_id})
                elif now - cancel_sent_at > self.settings.graceful_stop_s:
                    self.stop_worker(worker, "cancelled job did not stop")
                    raise JobCancelledError("cancelled")
            if now > deadline:
                self.stop_worker(worker, "job timeout")
                raise JobTimeoutError("the %s job ran past its %.0f s limit and was stopped" % (worker.spec.name, timeout_s))
            if now - worker.last_heartbeat > self.settings.heartbeat_timeout_s:
                self.stop_worker(worker, "no heartbeat")
                raise JobTimeoutError(
                    "the %s worker stopped answering for %.0f s and was stopped" % (worker.spec.name, now - worker.last_heartbeat)
                )
            if now - worker.last_progress > self.settings.progress_stall_s:
                self.stop_worker(worker, "no progress")
                raise JobTimeoutError(
                    "the %s worker made no progress for %.0f s and was stopped" % (worker.spec.name, self.settings.progress_stall_s)
                )

    def _crashed(self, worker: ManagedWorker, when: str) -> WorkerCrashedError:
        worker.process._wait(2.0)
        worker.process.wait_log_drained(1.0)
        how = worker.process.describe_exit()
        tail = "\n".join(list(worker.process.log_tail)[-8:])
        message = "the %s worker died %s (%s)%s" % (worker.spec.name, when, how, (":\n" + tail) if tail else "")
        worker.last_error = message
        self.stop_worker(worker, "crashed")
        return WorkerCrashedError(message)

    def _read_control(self, worker: ManagedWorker) -> None:
        def handle(header: Header) -> None:
            now = time.monotonic()
            worker.last_heartbeat = now
            kind = header.get("type")
            if kind == "heartbeat" and header.get("job") and header.get("progress") is not None:
                pass
            elif kind == "progress" and header.get("job") == worker.job_id:
                worker.last_progress = now
                fraction = header.get("fraction")
                worker.progress(float(fraction) if fraction is not None else None, str(header.get("message", "")))

        worker.process.read_control_forever(handle)

    # lifecycle
    def stop_worker(self, worker: ManagedWorker, reason: str) -> None:
        if worker.state in (WorkerState.STOPPING, WorkerState.STOPPED):
            return
        failed = worker.state == WorkerState.FAILED
        self.set_state(worker, WorkerState.STOPPING, reason)
        worker.process.stop(self.settings.graceful_stop_s)
        self.set_state(worker, WorkerState.FAILED if failed else WorkerState.STOPPED, reason)
        self._forget(worker)

    def _forget(self, worker: ManagedWorker) -> None:
        with self._lock:
            if self.workers.get(worker.key) is worker:
                del self.workers[worker.key]
        self._record_live_workers()

    def _monitor_loop(self) -> None:
        while not self._closed.wait(self.settings.monitor_interval_s):
            try:
                self._monitor_once()
            except Exception:  # the monitor must outlive any one bad reading
                logger.exception("supervisor monitor failed")

    def _monitor_once(self) -> None:
        now = time.monotonic()
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            if worker.state == WorkerState.READY and not worker.process.alive():
                worker.last_error = "the %s worker died while idle (%s)" % (worker.spec.name, worker.process.describe_exit())
                self.stop_worker(worker, "died while idle")
            elif (
                worker.state == WorkerState.READY
                and self.settings.keep_alive_s >= 0
                and now - worker.last_used > self.settings.keep_alive_s
                and worker.job_lock.acquire(blocking=False)
            ):
                try:
                    self.stop_worker(worker, "idle for %.0f s" % (now - worker.last_used))
                finally:
                    worker.job_lock.release()

    def status(self) -> List[Dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            workers = list(self.workers.values())
        rows = []
        for worker in workers:
            idle_s = now - worker.last_used if worker.state == WorkerState.READY else 0.0
            keep_alive = self.settings.keep_alive_s
            rows.append(
                {
                    "name": worker.name,
                    "architecture": worker.key[0],
                    "character": worker.key[1],
                    "state": worker.state.value,
                    "device": "cpu",
                    "pid": worker.process.pid,
                    "idle_s": round(idle_s, 1),
                    "keep_alive_left_s": None if keep_alive < 0 else round(max(0.0, keep_alive - idle_s), 1),
                    "last_error": worker.last_error,
                    "log_tail": list(worker.process.log_tail)[-10:],
                }
            )
        return rows

    def manifest_of(self, architecture: str) -> Optional[Manifest]:
        with self._lock:
            for worker in self.workers.values():
                if worker.key[0] == architecture and worker.process.manifest is not None:
                    return worker.process.manifest
        return None

    def shutdown(self) -> None:
        self._closed.set()
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            self.stop_worker(worker, "app shutting down")
        shutil.rmtree(self.private_dir, ignore_errors=True)

    # no orphans: a record of live workers that a restarted app reaps
    @property
    def record_path(self) -> Path:
        return self.settings.run_dir / "workers.json"

    def _record_live_workers(self) -> None:
        with self._lock:
            rows = [
                {"pid": worker.process.pid, "create_time": _create_time(worker.process.pid), "owner": os.getpid()}
                for worker in self.workers.values()
            ]
        path = self.settings.run_dir / ("workers-%d.json" % os.getpid())
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows))
        os.replace(tmp, path)

    def reap_leftovers(self) -> List[int]:
        """Kill workers recorded by app processes that no longer exist."""
        reaped: List[int] = []
        for path in self.settings.run_dir.glob("workers-*.json"):
            try:
                owner = int(path.stem.split("-", 1)[1])
                rows = json.loads(path.read_text())
            except (ValueError, OSError):
                path.unlink(missing_ok=True)
                continue
            if owner != os.getpid() and psutil.pid_exists(owner):
                continue
            for row in rows:
                pid = int(row["pid"])
                if _create_time(pid) == row.get("create_time"):
                    try:
                        os.killpg(pid, 9)
                        reaped.append(pid)
                    except (ProcessLookupError, PermissionError):
                        pass
            if owner != os.getpid():
                path.unlink(missing_ok=True)
        if reaped:
            logger.warning("reaped %d worker(s) left by an earlier app: %s", len(reaped), reaped)
        return reaped


def _create_time(pid: int) -> Optional[float]:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None
