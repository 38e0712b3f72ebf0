"""The supervisor: starts each architecture's worker in its own environment, admits it by memory,
keeps it warm, runs jobs on it, restarts it with backoff, and stops it without leaving orphans.

Public API: ``Supervisor``, ``SupervisorSettings``, ``JobRequest``, ``JobResult``.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from runtimes.backoff import CrashPolicy
from runtimes.environments import EnvSpec
from runtimes.errors import (
    ArchitectureUnavailableError,
    JobCancelledError,
    JobTimeoutError,
    ProtocolError,
    RemoteError,
    RuntimeLayerError,
    WorkerBootError,
    WorkerCrashedError,
)
from runtimes.memory import (
    MIB,
    MemorySource,
    PeakLedger,
    Resident,
    estimate_from_files,
    fmt_bytes,
    make_source,
    plan_admission,
    wait_for_release,
)
from runtimes.process import WorkerProcess
from runtimes.protocol import Header
from runtimes.reaper import WorkerRecord, clean_stale_private_dirs, make_private_dir
from runtimes.states import LIVE_STATES, WorkerState

logger = logging.getLogger(__name__)

ProgressFn = Callable[[Optional[float], str], None]
PythonResolver = Callable[[EnvSpec, ProgressFn], Path]
Key = Tuple[str, str]


def _no_progress(fraction: Optional[float], message: str) -> None:
    pass


@dataclass(frozen=True)
class SupervisorSettings:
    project_root: Path
    run_dir: Path
    """Holds the record of live workers (so a restarted app can reap what a crashed one left) and
    the measured memory peaks."""
    boot_timeout_s: float = 60.0
    load_timeout_s: float = 600.0
    job_timeout_s: float = 600.0
    heartbeat_timeout_s: float = 10.0
    progress_stall_s: float = 300.0
    keep_alive_s: float = 300.0
    """Idle time before a worker is stopped; negative keeps it forever, 0 stops it after each job."""
    graceful_stop_s: float = 3.0
    monitor_interval_s: float = 0.5
    memory_reserve_bytes: int = 512 * MIB
    ram_budget_bytes: Optional[int] = None
    """Treat the machine as having this much memory (system RAM policy); for small shared servers and tests."""
    default_need_bytes: int = 512 * MIB
    """A model's memory need before it was ever measured and when it has no files to size."""
    admission_timeout_s: float = 120.0
    release_timeout_s: float = 5.0
    allow_cpu_fallback: bool = False
    crash_backoff_base_s: float = 1.0
    crash_backoff_max_s: float = 60.0
    crash_retry_limit: int = 5


@dataclass(frozen=True)
class JobRequest:
    architecture: str
    character: str
    character_path: Optional[str] = None
    text: str = ""
    audio: Optional[np.ndarray] = None
    audio_sample_rate: Optional[int] = None
    options: Dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return worker_key(self.architecture, self.character, self.character_path)


def worker_key(architecture: str, character: str, character_path: Optional[str] = None) -> Key:
    """One worker per (architecture, model): a character folder's path, or a builtin character's id."""
    return (architecture, character if character_path is None else character_path)


@dataclass(frozen=True)
class JobResult:
    audio: np.ndarray
    sample_rate: int
    cold: bool
    timings_s: Dict[str, float]


@dataclass
class ManagedWorker:
    key: Key
    spec: EnvSpec
    process: WorkerProcess
    device: str
    need_bytes: int
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
    peak_bytes: int = 0
    pinned: bool = False
    keep_alive_s: Optional[float] = None

    @property
    def name(self) -> str:
        return self.process.name

    @property
    def model_id(self) -> str:
        return "%s/%s" % self.key

    @property
    def accounted_bytes(self) -> int:
        """The measured peak once there is one; the estimate before."""
        return self.peak_bytes or self.need_bytes


class Supervisor:
    """Runs jobs on warm workers, one job at a time per worker."""

    def __init__(
        self,
        settings: SupervisorSettings,
        specs: Dict[str, EnvSpec],
        resolve_python: PythonResolver,
        memory: Optional[MemorySource] = None,
    ) -> None:
        self.settings = settings
        self.specs = specs
        self.resolve_python = resolve_python
        self.authkey = secrets.token_bytes(32)
        clean_stale_private_dirs()
        self.private_dir = make_private_dir()  # mode 0700
        self.workers: Dict[Key, ManagedWorker] = {}
        self.memory = memory or make_source(settings.ram_budget_bytes)
        self.ledger = PeakLedger(settings.run_dir / "memory-peaks.json")
        self.crashes = CrashPolicy(settings.crash_backoff_base_s, settings.crash_backoff_max_s, settings.crash_retry_limit)
        self.pinned: set[Key] = set()
        self.keep_alive_overrides: Dict[Key, float] = {}
        self.last_errors: Dict[Key, str] = {}
        self.last_release_wait_s: Optional[float] = None
        """How long the driver took to show an eviction's memory back (the last time we waited)."""
        self._lock = threading.RLock()
        self._spawn_locks: Dict[Key, threading.Lock] = {}
        self._device_locks: Dict[str, threading.Lock] = {device: threading.Lock() for device in self.memory.devices()}
        self._memory_changed = threading.Condition()
        self._ids = itertools.count(1)
        self._closed = threading.Event()
        self.record = WorkerRecord(settings.run_dir)
        self.record.reap_leftovers()
        logger.info("memory: %s", self.memory.note)
        self._monitor = threading.Thread(target=self._monitor_loop, name="supervisor-monitor", daemon=True)
        self._monitor.start()

    # state: the one place that changes it
    def set_state(self, worker: ManagedWorker, state: WorkerState, reason: str = "") -> None:
        if worker.state != state:
            logger.info("worker %s: %s -> %s%s", worker.name, worker.state.value, state.value, " (%s)" % reason if reason else "")
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
        started = time.perf_counter()
        timings: Dict[str, float] = {}
        cold = False
        while True:
            worker, spawned, spawn_timings = self._ready_worker(spec, request, progress)
            cold = cold or spawned
            timings.update(spawn_timings)
            worker.job_lock.acquire()
            if worker.state in LIVE_STATES:
                break
            worker.job_lock.release()  # stopped (evicted) while we waited: get a fresh one
        try:
            header, audio = self._run_job(worker, request, progress, cancel)
        finally:
            worker.job_lock.release()
        self.crashes.succeeded(request.key)
        self._sample_memory(worker)
        if self._keep_alive(worker) == 0:
            self.stop_worker(worker, "keep-alive is 0")
        assert audio is not None
        timings["generate_s"] = float(header.get("generate_s", 0.0))
        timings["total_s"] = time.perf_counter() - started
        return JobResult(audio=audio, sample_rate=int(header["sample_rate"]), cold=cold, timings_s=timings)

    def _run_job(
        self, worker: ManagedWorker, request: JobRequest, progress: ProgressFn, cancel: Optional[threading.Event]
    ) -> Tuple[Header, Optional[np.ndarray]]:
        job_id = "job-%d" % next(self._ids)
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
        """Start and load a worker now, so the first job finds it warm (also clears a failed state)."""
        request = JobRequest(architecture=architecture, character=character, character_path=character_path)
        self.crashes.reset(request.key)
        self.crashes.reset((self.specs[architecture].name, "*boot*"))
        self._ready_worker(self.specs[architecture], request, _no_progress)

    def _ready_worker(self, spec: EnvSpec, request: JobRequest, progress: ProgressFn) -> Tuple[ManagedWorker, bool, Dict[str, float]]:
        key = request.key
        with self._lock:
            spawn_lock = self._spawn_locks.setdefault(key, threading.Lock())
        with spawn_lock:
            with self._lock:
                existing = self.workers.get(key)
            if existing is not None and existing.state in LIVE_STATES and existing.process.alive():
                return existing, False, {}
            if existing is not None:
                self._forget(existing)
            label = "the %s worker for %s" % (spec.name, request.character)
            self.crashes.check((spec.name, "*boot*"), "the %s architecture" % spec.name)
            self.crashes.check(key, label)
            return self._spawn(key, spec, request, progress)

    # start-up: admission by memory, spawn, handshake, load (one load at a time per device)
    def _spawn(self, key: Key, spec: EnvSpec, request: JobRequest, progress: ProgressFn) -> Tuple[ManagedWorker, bool, Dict[str, float]]:
        timings: Dict[str, float] = {}
        progress(None, "preparing the %s environment" % spec.name)
        python = self.resolve_python(spec, progress)
        device = self._pick_device()
        model_id = "%s/%s" % key
        need = self.ledger.get(model_id, device) or estimate_from_files(request.character_path, self.settings.default_need_bytes)
        with self._device_lock(device):
            for attempt in (1, 2):
                started = time.perf_counter()
                device = self._admit(need, device, model_id, progress)
                timings["admit_s"] = time.perf_counter() - started
                try:
                    return self._start_and_load(key, spec, request, python, device, need, progress, timings)
                except RemoteError as exc:
                    if attempt == 1 and _is_out_of_memory(exc):
                        logger.warning("%s ran out of memory while loading on %s: evicting idle workers and retrying", model_id, device)
                        self._evict(device, [r.name for r in self._residents(device) if r.idle and not r.pinned], "out of memory")
                        continue
                    raise
        raise AssertionError("unreachable")

    def _start_and_load(
        self,
        key: Key,
        spec: EnvSpec,
        request: JobRequest,
        python: Path,
        device: str,
        need: int,
        progress: ProgressFn,
        timings: Dict[str, float],
    ) -> Tuple[ManagedWorker, bool, Dict[str, float]]:
        progress(None, "starting the %s worker" % spec.name)
        started = time.perf_counter()
        name = "%s-%d" % (spec.name, next(self._ids))
        extra_env = {} if device == "cpu" else {"CUDA_VISIBLE_DEVICES": device}
        if device == "cpu" and self.memory.kind == "nvml":
            extra_env["CUDA_VISIBLE_DEVICES"] = ""
        process = WorkerProcess(name, python, spec.adapter, self.settings.project_root, self.private_dir, self.authkey, extra_env)
        worker = ManagedWorker(key=key, spec=spec, process=process, device=device, need_bytes=need)
        worker.pinned = key in self.pinned
        worker.keep_alive_s = self.keep_alive_overrides.get(key)
        with self._lock:
            self.workers[key] = worker
        self._write_record()
        try:
            process.handshake(self.settings.boot_timeout_s)
        except WorkerBootError as exc:
            worker.last_error = str(exc)
            self.last_errors[key] = str(exc)
            self.set_state(worker, WorkerState.FAILED, "boot failed")
            self.crashes.boot_failed((spec.name, "*boot*"), str(exc))
            process.kill()
            self._forget(worker)
            raise
        timings["spawn_s"] = time.perf_counter() - started
        threading.Thread(target=self._read_control, args=(worker,), name="control-%s" % name, daemon=True).start()
        self.set_state(worker, WorkerState.LOADING, request.character)
        progress(None, "loading %s" % request.character)
        started = time.perf_counter()
        model = {"character": request.character, "path": request.character_path, "device": "cpu" if device == "cpu" else "cuda"}
        try:
            process.send({"type": "load", "job": "load", "model": model})
            self._await_reply(worker, "load", "loaded", self.settings.load_timeout_s, None)
        except BaseException as exc:
            worker.last_error = str(exc)
            self.last_errors[key] = str(exc)
            if not isinstance(exc, WorkerCrashedError):  # a crash was counted already
                self.crashes.crashed(key, str(exc))
            self.stop_worker(worker, "load failed")
            raise
        timings["load_s"] = time.perf_counter() - started
        worker.load_s = timings["load_s"]
        worker.last_used = time.monotonic()
        self._sample_memory(worker)
        self.set_state(worker, WorkerState.READY, "loaded in %.2f s" % timings["load_s"])
        return worker, True, timings

    def _pick_device(self) -> str:
        """The device with the most memory available to us."""
        devices = self.memory.devices()
        if len(devices) == 1:
            return devices[0]
        return max(devices, key=lambda d: self.memory.read(d).free_bytes - sum(r.accounted_bytes for r in self._residents(d)))

    def _device_lock(self, device: str) -> threading.Lock:
        with self._lock:
            return self._device_locks.setdefault(device, threading.Lock())

    def _residents(self, device: str) -> List[Resident]:
        now = time.monotonic()
        with self._lock:
            workers = [w for w in self.workers.values() if w.device == device and w.state in LIVE_STATES]
        residents = []
        for worker in workers:
            keep_alive = self._keep_alive(worker)
            idle = worker.state == WorkerState.READY and not worker.job_lock.locked()
            residents.append(
                Resident(
                    name=worker.name,
                    accounted_bytes=worker.accounted_bytes,
                    pinned=worker.pinned,
                    idle=idle,
                    expired=keep_alive >= 0 and now - worker.last_used > keep_alive,
                    reload_s=worker.load_s,
                    last_used=worker.last_used,
                )
            )
        return residents

    def _admit(self, need: int, device: str, model_id: str, progress: ProgressFn) -> str:
        """Evict what must go for ``need`` to fit on ``device``, or wait (bounded) until it fits."""
        deadline = time.monotonic() + self.settings.admission_timeout_s
        while True:
            reading = self.memory.read(device)
            plan = plan_admission(need, reading, self._residents(device), self.settings.memory_reserve_bytes)
            if plan.fits:
                if plan.evict:
                    logger.info("admitting %s (%s) on %s: %s", model_id, fmt_bytes(need), device, plan.reason)
                    progress(None, "freeing memory: stopping %d idle worker(s)" % len(plan.evict))
                    self._evict(device, list(plan.evict), "memory for %s" % model_id)
                return device
            if self.settings.allow_cpu_fallback and device != "cpu":
                logger.warning("%s does not fit on %s (%s): running it on the CPU", model_id, device, plan.reason)
                return "cpu"
            if time.monotonic() > deadline:
                raise ArchitectureUnavailableError("not enough memory to load %s: %s" % (model_id, plan.reason), retry_after_s=30.0)
            progress(None, "waiting for memory: %s" % plan.reason)
            with self._memory_changed:
                self._memory_changed.wait(0.5)

    def _evict(self, device: str, names: List[str], reason: str) -> None:
        with self._lock:
            chosen = [w for w in self.workers.values() if w.name in names]
        if not chosen:
            return
        free_before = self.memory.read(device).free_bytes
        freed = 0
        for worker in chosen:
            if worker.job_lock.acquire(blocking=False):  # never evict a worker that took a job meanwhile
                try:
                    freed += worker.accounted_bytes
                    self.stop_worker(worker, "evicted: %s" % reason)
                finally:
                    worker.job_lock.release()
        if freed and self.memory.kind == "nvml":
            back, waited_s = wait_for_release(self.memory, device, free_before, freed, self.settings.release_timeout_s)
            self.last_release_wait_s = waited_s
            logger.info("memory back on %s after %.2f s%s", device, waited_s, "" if back else " (timed out)")

    def _sample_memory(self, worker: ManagedWorker) -> None:
        used = self.memory.process_bytes(worker.device, [worker.process.pid])
        if used:
            worker.peak_bytes = max(worker.peak_bytes, used)
            self.ledger.record(worker.model_id, worker.device, worker.peak_bytes)

    # waiting for a reply while watching the worker
    def _await_reply(
        self, worker: ManagedWorker, job_id: str, expected: str, timeout_s: float, cancel: Optional[threading.Event]
    ) -> Tuple[Header, Optional[np.ndarray]]:
        deadline = time.monotonic() + timeout_s
        cancel_sent_at: Optional[float] = None
        data = worker.process.data
        assert data is not None
        when = "while loading" if job_id == "load" else "while generating"
        while True:
            if data.poll(0.05):
                try:
                    header, audio = data.recv()
                except (EOFError, OSError, ProtocolError) as exc:
                    raise self._crashed(worker, when) from exc
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
                raise self._crashed(worker, when)
            if cancel is not None and cancel.is_set():
                if cancel_sent_at is None:
                    cancel_sent_at = now
                    worker.process.send_control({"type": "cancel", "job": job_id})
                elif now - cancel_sent_at > self.settings.graceful_stop_s:
                    self.stop_worker(worker, "cancelled job did not stop")
                    raise JobCancelledError("the %s job was cancelled (its worker was stopped)" % worker.spec.name)
            if now > deadline:
                self.stop_worker(worker, "job timeout")
                raise JobTimeoutError("the %s job ran past its %.0f s limit and was stopped" % (worker.spec.name, timeout_s))
            silent_s = now - worker.last_heartbeat
            if silent_s > self.settings.heartbeat_timeout_s:
                self.stop_worker(worker, "no heartbeat")
                raise JobTimeoutError("the %s worker stopped answering for %.0f s and was stopped" % (worker.spec.name, silent_s))
            if now - worker.last_progress > self.settings.progress_stall_s:
                self.stop_worker(worker, "no progress")
                raise JobTimeoutError(
                    "the %s worker made no progress for %.0f s and was stopped" % (worker.spec.name, self.settings.progress_stall_s)
                )

    def _crashed(self, worker: ManagedWorker, when: str) -> WorkerCrashedError:
        worker.process.wait_exit(2.0)
        worker.process.wait_log_drained(1.0)
        how = worker.process.describe_exit()
        tail = "\n".join(list(worker.process.log_tail)[-8:])
        message = "the %s worker died %s (%s)%s" % (worker.spec.name, when, how, (":\n" + tail) if tail else "")
        worker.last_error = message
        self.last_errors[worker.key] = message
        self.crashes.crashed(worker.key, "%s (%s)" % (when, how))
        self.stop_worker(worker, "crashed")
        return WorkerCrashedError(message)

    def _read_control(self, worker: ManagedWorker) -> None:
        def handle(header: Header) -> None:
            now = time.monotonic()
            worker.last_heartbeat = now
            if header.get("type") == "progress" and header.get("job") == worker.job_id:
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
        with self._memory_changed:
            self._memory_changed.notify_all()

    def stop(self, name: str) -> bool:
        """Stop a worker by name (the Runtimes panel's Stop); False when no such worker."""
        with self._lock:
            worker = next((w for w in self.workers.values() if w.name == name), None)
        if worker is None:
            return False
        self.stop_worker(worker, "stopped on request")
        return True

    def pin(self, architecture: str, character: str, character_path: Optional[str] = None, pinned: bool = True) -> None:
        """A pinned model is never evicted (not by keep-alive, not for memory)."""
        key = worker_key(architecture, character, character_path)
        with self._lock:
            if pinned:
                self.pinned.add(key)
            else:
                self.pinned.discard(key)
            worker = self.workers.get(key)
            if worker is not None:
                worker.pinned = pinned

    def set_keep_alive(
        self, architecture: str, character: str, character_path: Optional[str], keep_alive_s: Optional[float]
    ) -> None:
        key = worker_key(architecture, character, character_path)
        with self._lock:
            if keep_alive_s is None:
                self.keep_alive_overrides.pop(key, None)
            else:
                self.keep_alive_overrides[key] = keep_alive_s
            worker = self.workers.get(key)
            if worker is not None:
                worker.keep_alive_s = keep_alive_s

    def _keep_alive(self, worker: ManagedWorker) -> float:
        if worker.pinned:
            return -1.0
        return self.settings.keep_alive_s if worker.keep_alive_s is None else worker.keep_alive_s

    def _forget(self, worker: ManagedWorker) -> None:
        with self._lock:
            if self.workers.get(worker.key) is worker:
                del self.workers[worker.key]
        self._write_record()

    def _write_record(self) -> None:
        with self._lock:
            pids = [worker.process.pid for worker in self.workers.values()]
        self.record.write(pids)

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
            if worker.state in (WorkerState.READY, WorkerState.BUSY, WorkerState.LOADING):
                self._sample_memory(worker)
            keep_alive = self._keep_alive(worker)
            if worker.state == WorkerState.READY and not worker.process.alive():
                worker.last_error = "the %s worker died while idle (%s)" % (worker.spec.name, worker.process.describe_exit())
                self.last_errors[worker.key] = worker.last_error
                self.crashes.crashed(worker.key, worker.last_error)
                self.stop_worker(worker, "died while idle")
            elif (
                worker.state == WorkerState.READY
                and keep_alive >= 0
                and now - worker.last_used > keep_alive
                and worker.job_lock.acquire(blocking=False)
            ):
                try:
                    self.stop_worker(worker, "idle for %.0f s" % (now - worker.last_used))
                finally:
                    worker.job_lock.release()

    def status(self) -> List[Dict[str, Any]]:
        """One row per live worker, plus one per model that is failed or cooling down."""
        now = time.monotonic()
        with self._lock:
            workers = list(self.workers.values())
        rows = []
        for worker in workers:
            idle_s = now - worker.last_used if worker.state == WorkerState.READY else 0.0
            keep_alive = self._keep_alive(worker)
            rows.append(
                {
                    "name": worker.name,
                    "architecture": worker.key[0],
                    "character": worker.key[1],
                    "state": worker.state.value,
                    "device": worker.device,
                    "pid": worker.process.pid,
                    "memory_mb": round(worker.accounted_bytes / MIB, 1),
                    "measured_peak_mb": round(worker.peak_bytes / MIB, 1) if worker.peak_bytes else None,
                    "idle_s": round(idle_s, 1),
                    "keep_alive_left_s": None if keep_alive < 0 else round(max(0.0, keep_alive - idle_s), 1),
                    "pinned": worker.pinned,
                    "load_s": round(worker.load_s, 3),
                    "last_error": worker.last_error or self.last_errors.get(worker.key, ""),
                    "log_tail": list(worker.process.log_tail)[-10:],
                }
            )
        live = {worker.key for worker in workers}
        for key, record in list(self.crashes.records.items()):
            if key in live or (not record.failed and record.retry_at <= now):
                continue
            state = WorkerState.FAILED if record.failed else WorkerState.BACKOFF
            retry_in = max(0.0, record.retry_at - now)
            rows.append(
                {
                    "name": "",
                    "architecture": key[0],
                    "character": "" if key[1] == "*boot*" else key[1],
                    "state": state.value,
                    "device": "",
                    "pid": None,
                    "retry_after_s": None if record.failed else round(retry_in, 1),
                    "crashes_in_a_row": record.consecutive,
                    "last_error": record.failed or record.last_error,
                }
            )
        return rows

    def memory_note(self) -> str:
        return self.memory.note

    def shutdown(self) -> None:
        self._closed.set()
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            self.stop_worker(worker, "app shutting down")
        self.record.remove()
        shutil.rmtree(self.private_dir, ignore_errors=True)


def _is_out_of_memory(error: RemoteError) -> bool:
    text = ("%s %s" % (error.error_type, error.message)).lower()
    return "out of memory" in text or error.error_type in ("OutOfMemoryError", "MemoryError")
