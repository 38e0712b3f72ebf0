"""The supervisor: starts one worker per (architecture, device) in the architecture's own environment,
places it by memory and device policy, loads many characters into it, runs jobs on it one at a time,
keeps it warm, restarts it with backoff, and stops it without leaving orphans.

Parts: ``workers`` (the table: the one owner of state, lines of waiting jobs, the live-worker record),
``admission`` and ``memory`` (needs, devices, placement, making room), ``envkinds`` (each environment
kind: build, launch, a handle on the running worker, host paths as the worker sees them; chosen by
``spec.kind``, never branched on here), ``process`` (launch through the kind, handshake, stop
escalation), ``conversation`` (one request and its reply, watched), ``policy`` and ``backoff``
(keep-alive, pins, crash accounting), ``monitor`` (the one loop), ``status`` (the rows people see).
This module starts workers, runs jobs and stops workers with them.

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
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from runtimes.admission import Admission
from runtimes.backoff import CrashPolicy
from runtimes.conditioning import CONDITIONING_ENV
from runtimes.config import SupervisorSettings
from runtimes.conversation import ChunkFn, Limits, ask, safe_progress
from runtimes.envkinds.base import BuiltEnv
from runtimes.envkinds.registry import EnvironmentKinds
from runtimes.envspec import EnvSpec, update_failed_note
from runtimes.errors import (
    EnvironmentBuildError,
    JobCancelledError,
    RemoteError,
    RuntimeLayerError,
    WorkerBootError,
    WorkerCrashedError,
    WorkerStoppedError,
)
from runtimes.memory import DeviceSet, MemorySource, PeakLedger, SystemRamSource, fmt_bytes, make_devices
from runtimes.monitor import Monitor
from runtimes.policy import CharacterKey, KeepAlivePolicy, character_key
from runtimes.process import WorkerProcess
from runtimes.protocol import ASSETS_ENV, Header
from runtimes.reaper import WorkerRecord, clean_stale_private_dirs, make_private_dir
from runtimes.states import WorkerState
from runtimes.status import BOOT, status_rows
from runtimes.workers import CharacterSlot, ManagedWorker, ProgressFn, Ticket, WorkerTable

logger = logging.getLogger(__name__)

EnvResolver = Callable[[EnvSpec, ProgressFn], Union[BuiltEnv, Path]]
"""Builds (or finds) a spec's environment: what its kind's ``build`` returned, or the interpreter of one
the caller built itself (the app's venv builder, tests)."""
__all__ = ["JobRequest", "JobResult", "Supervisor", "SupervisorSettings"]


def _no_progress(fraction: Optional[float], message: str) -> None:
    pass


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
    def key(self) -> CharacterKey:
        return character_key(self.architecture, self.character, self.character_path)

    @property
    def model_key(self) -> str:
        """The character's key inside its worker: its folder, or its builtin id."""
        return self.key[1]

    @property
    def model_id(self) -> str:
        """The character's name in the memory ledger: architecture/key."""
        return "%s/%s" % self.key

    @property
    def label(self) -> str:
        """The character as logs and progress name it: architecture/character."""
        return "%s/%s" % (self.architecture, self.character)


@dataclass(frozen=True)
class JobResult:
    audio: np.ndarray
    sample_rate: int
    cold: bool
    timings_s: Dict[str, float]
    details: Dict[str, Any] = field(default_factory=dict)
    """What the adapter said about this job (``GenerateRequest.details``), e.g. whether a voice's conditioning was reused."""


class Supervisor:
    """Runs jobs on warm workers, one job at a time per worker, many characters per worker."""

    def __init__(
        self,
        settings: SupervisorSettings,
        specs: Dict[str, EnvSpec],
        resolve_python: Optional[EnvResolver] = None,
        memory: Optional[MemorySource] = None,
        kinds: Optional[EnvironmentKinds] = None,
    ) -> None:
        """``memory``: the GPUs to use (an NVML-like source), a RAM source for "no GPU", or None to ask NVML.
        ``kinds``: the environment kinds (made with their settings, they build too); ``resolve_python``
        builds instead of them when given (and must be, when ``kinds`` is not)."""
        if resolve_python is None and kinds is None:
            raise TypeError("the supervisor needs the environment kinds (with their settings) or a resolver that builds")
        self.settings = settings
        self.specs = specs
        self.kinds = kinds if kinds is not None else EnvironmentKinds()
        self.resolve_python: EnvResolver = resolve_python or self._build_with_kind
        self.authkey = secrets.token_bytes(32)
        clean_stale_private_dirs()
        self.private_dir = make_private_dir()  # mode 0700
        if memory is not None and memory.kind != "nvml":  # a machine without GPUs, by the caller's word
            self.devices = DeviceSet(None, SystemRamSource(settings.ram_budget_bytes))
        else:
            self.devices = make_devices(settings.ram_budget_bytes, gpus=memory)
        self.ledger = PeakLedger(settings.run_dir / "memory-peaks.json")
        self.crashes = CrashPolicy(settings.crash_backoff_base_s, settings.crash_backoff_max_s, settings.crash_retry_limit)
        self.policy = KeepAlivePolicy(settings.keep_alive_s)
        self.table = WorkerTable(WorkerRecord(settings.run_dir))
        self.table.record.reap_leftovers(self.kinds)
        for kind_name in sorted({spec.kind for spec in specs.values()}):
            try:
                self.kinds.named(kind_name).reap_strays()
            except EnvironmentBuildError as exc:  # an unknown kind is refused by name when a job asks for it
                logger.warning("%s", exc)
        self.admission = Admission(settings, self.devices, self.ledger, self.policy, self.table, self._unload, self._finish_stop)
        self._locks_lock = threading.Lock()
        self._placement_locks: Dict[str, threading.Lock] = {}
        self._device_locks: Dict[str, threading.Lock] = {}
        self._ids = itertools.count(1)
        logger.info("memory: %s", self.devices.note)
        self._monitor = Monitor(settings.monitor_interval_s, self._tick)
        self._monitor.start()

    # jobs
    def generate(
        self,
        request: JobRequest,
        progress: ProgressFn = _no_progress,
        cancel: Optional[threading.Event] = None,
        on_chunk: Optional[ChunkFn] = None,
    ) -> JobResult:
        """Run one job. ``on_chunk``: the take streams; each piece reaches it (on this thread) as the worker makes
        it, and the result still holds the whole take."""
        spec = self._spec(request.architecture)
        progress = safe_progress(progress)
        cancel = cancel or threading.Event()
        started = time.perf_counter()
        timings: Dict[str, float] = {}
        ticket = Ticket(request.label)
        worker, cold = self._hold(spec, request, ticket, progress, cancel, timings)
        stop_reason: Optional[str] = None
        try:
            cold = self._ensure_loaded(worker, request, progress, cancel, timings) or cold
            header, audio = self._generate_on(worker, request, progress, cancel, on_chunk)
            self.admission.account_job_memory(worker, request.model_id, request.model_key)
            self.crashes.succeeded(request.key)
            self.crashes.succeeded((spec.name, BOOT))
            stop_reason = self._after_job(worker, request)
        finally:
            if self.table.release(worker, ticket, stop_reason):
                self._finish_stop(worker)
        assert audio is not None
        timings["generate_s"] = float(header.get("generate_s", 0.0))
        timings["total_s"] = time.perf_counter() - started
        return JobResult(audio=audio, sample_rate=int(header["sample_rate"]), cold=cold, timings_s=timings,
                         details=dict(header.get("details") or {}))

    def prewarm(self, architecture: str, character: str, character_path: Optional[str] = None) -> None:
        """Load a character now, so the first job finds it warm (also clears a failed state: Retry)."""
        spec = self._spec(architecture)
        request = JobRequest(architecture=architecture, character=character, character_path=character_path)
        self.crashes.reset(request.key)
        self.crashes.reset((architecture, BOOT))
        ticket = Ticket("prewarm %s/%s" % (architecture, character))
        cancel = threading.Event()
        worker, _ = self._hold(spec, request, ticket, _no_progress, cancel, {})
        try:
            self._ensure_loaded(worker, request, _no_progress, cancel, {})
        finally:
            self.table.release(worker, ticket)

    def _spec(self, architecture: str) -> EnvSpec:
        spec = self.specs.get(architecture)
        if spec is None:
            raise RuntimeLayerError("unknown architecture %r" % architecture)
        return spec

    def _check_open(self) -> None:
        if self.table.closed:
            raise WorkerStoppedError("the app is shutting down")

    def _hold(
        self, spec: EnvSpec, request: JobRequest, ticket: Ticket, progress: ProgressFn, cancel: threading.Event,
        timings: Dict[str, float],
    ) -> Tuple[ManagedWorker, bool]:
        """A worker of the architecture, held for this ticket: a live one (waiting in its line), or a new one."""
        while True:
            self._check_open()
            self.crashes.check((spec.name, BOOT), "the %s architecture" % spec.name)
            self.crashes.check(request.key, "%s / %s" % (spec.name, request.character))
            worker = self._find_worker(spec.name, request.model_key)
            if worker is None:
                worker = self._start_worker(spec, request, ticket, progress, cancel, timings)
                if worker is not None:
                    return worker, True
                continue
            started = time.perf_counter()
            if self.table.acquire(worker, ticket, cancel, progress):
                timings["queue_s"] = time.perf_counter() - started
                return worker, False
            # it ended while we waited (stopped, evicted, crashed): look again

    def _find_worker(self, architecture: str, model_key: str) -> Optional[ManagedWorker]:
        """A live worker of the architecture: one holding the character first, then the shortest line."""
        with self.table.lock:
            workers = [w for w in self.table.live(architecture) if w.stop_reason is None]
            if not workers:
                return None
            return min(workers, key=lambda w: (model_key not in w.characters, len(w.waiting) + (w.holder is not None)))

    def _after_job(self, worker: ManagedWorker, request: JobRequest) -> Optional[str]:
        """Keep-alive 0: unload the character now, or stop the worker when it holds nothing else
        worth keeping. Nothing is unloaded or stopped while another job waits for this worker."""
        if self.policy.keep_alive_s(request.key) != 0:
            return None
        with self.table.lock:
            if worker.waiting:
                return None
            others = [k for k in worker.characters if k != request.model_key and self.policy.keep_alive_s((worker.architecture, k)) != 0]
        if not others:
            return "keep-alive is 0"
        self._unload(worker, request.model_key, "keep-alive is 0")
        return None

    # starting a worker: device, memory, spawn, handshake, shared assets
    def _start_worker(
        self, spec: EnvSpec, request: JobRequest, ticket: Ticket, progress: ProgressFn, cancel: threading.Event,
        timings: Dict[str, float],
    ) -> Optional[ManagedWorker]:
        """Start a worker held by ``ticket``; None when another request started one meanwhile."""
        placement_lock = self._lock_for(self._placement_locks, spec.name)
        self._acquire(placement_lock, cancel, progress, "waiting for the %s worker to start" % spec.name)
        placement_held = True
        try:
            if self._find_worker(spec.name, request.model_key) is not None:
                return None
            progress(None, "preparing the %s environment" % spec.name)
            built = self._built_for(spec, progress)
            started = time.perf_counter()
            device = self.admission.place(spec, lambda device: self._character_need(request, device), request.label, progress, cancel)
            device_lock = self._lock_for(self._device_locks, device)
            self._acquire(device_lock, cancel, progress, "waiting for another model to finish loading on %s" % device)
            try:
                need = self.admission.base_need(spec, device) + self._character_need(request, device)
                self.admission.make_room(device, need, None, None, "the %s worker" % spec.name, progress, cancel)
                timings["admit_s"] = time.perf_counter() - started
                worker = self._spawn(spec, built, device, ticket, progress)
                placement_lock.release()  # it is registered: later requests wait in its line
                placement_held = False
                try:
                    self._boot(worker, progress, cancel, timings)
                except BaseException:
                    self._stop_worker(worker, "its start did not complete")  # whatever went wrong, nothing half-started stays
                    raise
                return worker
            finally:
                device_lock.release()
        finally:
            if placement_held:
                placement_lock.release()

    def _build_with_kind(self, spec: EnvSpec, progress: ProgressFn) -> BuiltEnv:
        return self.kinds.build(spec, lambda line: progress(None, line))

    def _built_for(self, spec: EnvSpec, progress: ProgressFn) -> BuiltEnv:
        """The spec's built environment (its kind is checked first: an unknown one is refused by name);
        when an update of the env failed and the working one was kept, that one (said in the job's
        progress and the log): an offline update never loses the architecture."""
        self.kinds.of(spec)
        try:
            found = self.resolve_python(spec, progress)
        except EnvironmentBuildError as exc:
            if exc.kept_python is None:
                raise
            logger.warning("%s", exc)
            note = update_failed_note(spec.name, exc)
            progress(None, note)
            return BuiltEnv.given(spec, Path(exc.kept_python), note)
        return found if isinstance(found, BuiltEnv) else BuiltEnv.given(spec, found)

    def _spawn(self, spec: EnvSpec, built: BuiltEnv, device: str, ticket: Ticket, progress: ProgressFn) -> ManagedWorker:
        progress(None, "starting the %s worker" % spec.name)
        name = "%s-%d" % (spec.name, next(self._ids))
        # Model code runs offline, finds shared assets in one place, and never unpickles arbitrary objects.
        extra_env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1"}
        path_env = {ASSETS_ENV: self.settings.assets_dir} if self.settings.assets_dir is not None else {}
        writable_env: Dict[str, Path] = {}
        if self.settings.conditioning_dir is not None and spec.name in self.settings.conditioning_architectures:
            # zero-shot models keep what they computed from a voice here
            folder = self.settings.conditioning_dir / spec.name
            folder.mkdir(parents=True, exist_ok=True)
            writable_env[CONDITIONING_ENV] = folder
        if device != "cpu":
            extra_env["CUDA_VISIBLE_DEVICES"] = device  # pinned to the device's UUID
        elif self.devices.gpus is not None:
            extra_env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU worker on a GPU machine sees no GPU
        self._check_open()
        launched_at = time.perf_counter()
        try:
            process = WorkerProcess(name, self.kinds.named(built.kind), built, self.settings.project_root, self.private_dir, self.authkey,
                                    extra_env, path_env, [root / spec.name for root in self.settings.model_roots], writable_env)
        except OSError as exc:
            self._check_open()
            raise WorkerBootError("could not start the %s worker: %s" % (spec.name, exc)) from exc
        worker = ManagedWorker(name=name, spec=spec, device=device, process=process, base_bytes=self.admission.base_need(spec, device),
                               launched_at=launched_at)
        self.table.hold_new(worker, ticket)
        try:
            self.table.register(worker)
        except WorkerStoppedError:
            process.kill()  # the app began shutting down while this one started
            raise
        return worker

    def _boot(self, worker: ManagedWorker, progress: ProgressFn, cancel: threading.Event, timings: Dict[str, float]) -> None:
        """Handshake, then the architecture's shared assets; the worker stays held."""
        started = worker.launched_at
        try:
            worker.process.handshake(self.settings.boot_timeout_s)
        except WorkerBootError as exc:
            raise self._boot_failed(worker, exc) from exc
        worker.last_heartbeat = time.monotonic()
        threading.Thread(target=self._read_control, args=(worker,), name="control-%s" % worker.name, daemon=True).start()
        timings["spawn_s"] = worker.spawn_s = time.perf_counter() - worker.launched_at
        self.table.set_activity(worker, WorkerState.STARTING, "loading shared assets")
        progress(None, "loading the %s worker's shared assets" % worker.architecture)
        prepared = time.perf_counter()
        header = {"type": "prepare", "job": self._job_id(), "device": "cpu" if worker.device == "cpu" else "cuda"}
        try:
            self._ask(worker, header, None, "prepared", self._load_limits(), cancel, progress, (worker.architecture, BOOT))
        except RemoteError as exc:
            record = self.crashes.crashed((worker.architecture, BOOT), "shared assets: %s" % exc)
            worker.last_error = "the %s worker could not load its shared assets: %s" % (worker.architecture, exc)
            if self.table.begin_stop(worker, "shared assets failed to load"):
                self._finish_stop(worker, WorkerState.FAILED if record.failed else WorkerState.BACKOFF)
            raise
        timings["prepare_s"] = time.perf_counter() - prepared
        used = self.admission.measure(worker)
        if used:
            worker.base_bytes = used
            self.ledger.record(worker.architecture, worker.device, used)
        worker.start_s = time.perf_counter() - started

    def _boot_failed(self, worker: ManagedWorker, exc: WorkerBootError) -> RuntimeLayerError:
        """Only the reserved exit code means "cannot boot" (FAILED until Retry); any other start-up
        failure is a crash with backoff. Either way nothing half-started stays registered."""
        ours = self.table.begin_crash_stop(worker, "boot failed")
        worker.process.kill()
        if ours is not None:
            return WorkerStoppedError("the %s worker was stopped while starting (%s)" % (worker.architecture, ours))
        worker.last_error = str(exc)
        key = (worker.architecture, BOOT)
        if exc.cannot_boot:
            self.crashes.boot_failed(key, str(exc))
            end = WorkerState.FAILED
        else:
            end = WorkerState.FAILED if self.crashes.crashed(key, str(exc)).failed else WorkerState.BACKOFF
        self.table.transition(worker, end, "boot failed")
        return exc

    # characters: load, unload, bounded count, memory per character
    def _ensure_loaded(
        self, worker: ManagedWorker, request: JobRequest, progress: ProgressFn, cancel: threading.Event, timings: Dict[str, float]
    ) -> bool:
        """Load the request's character into the held worker unless it is there; True when loaded now."""
        key = request.model_key
        with self.table.lock:
            slot = worker.characters.get(key)
            if slot is not None:
                slot.last_used = time.monotonic()
                worker.characters.move_to_end(key)
                return False
        while len(worker.characters) >= self.settings.max_characters_per_worker:
            victims = [k for k in worker.characters if not self.policy.pinned((worker.architecture, k))]
            if not victims:
                break  # all pinned: hold one more rather than refuse
            self._unload(worker, victims[0], "a worker holds %d characters at most" % self.settings.max_characters_per_worker)
        device_lock = self._lock_for(self._device_locks, worker.device)
        self._acquire(device_lock, cancel, progress, "waiting for another model to finish loading on %s" % worker.device)
        try:
            label = request.label
            started = time.perf_counter()
            need = self._character_need(request, worker.device)
            self.admission.make_room(worker.device, need, worker, key, label, progress, cancel)
            timings["admit_s"] = timings.get("admit_s", 0.0) + time.perf_counter() - started
            for attempt in (1, 2):
                try:
                    self._load(worker, request, progress, cancel, timings)
                    return True
                except RemoteError as exc:
                    if attempt == 1 and _is_out_of_memory(exc):
                        logger.warning("%s ran out of memory loading on %s: evicting idle residents, retrying", label, worker.device)
                        self.admission.evict_idle(worker.device, worker, key, "out of memory")
                        continue
                    worker.last_error = "%s could not load: %s" % (label, exc)
                    self.crashes.crashed(request.key, str(exc))  # a load that always fails is refused for a while
                    raise
        finally:
            device_lock.release()
        raise AssertionError("unreachable")

    def _load(
        self, worker: ManagedWorker, request: JobRequest, progress: ProgressFn, cancel: threading.Event, timings: Dict[str, float]
    ) -> None:
        self.table.set_activity(worker, WorkerState.LOADING, "loading %s" % request.character)
        progress(None, "loading %s" % request.character)
        before = self.admission.measure(worker)
        path = worker.process.map_path(request.character_path) if request.character_path is not None else None
        model = {"character": request.character, "path": path, "device": "cpu" if worker.device == "cpu" else "cuda"}
        started = time.perf_counter()
        header = {"type": "load", "job": self._job_id(), "model": model}
        reply, _ = self._ask(worker, header, None, "loaded", self._load_limits(), cancel, progress, request.key)
        load_s = time.perf_counter() - started
        after = self.admission.measure(worker)
        model_id = request.model_id
        measured = before is not None and after is not None
        if measured:
            self.ledger.record(model_id, worker.device, max(0, (after or 0) - (before or 0)))
        size = self.ledger.get(model_id, worker.device) if measured else None
        if size is None:
            size = self._character_need(request, worker.device)
        details = reply.get("details")
        slot = CharacterSlot(request.model_key, request.character, size, measured, load_s, details=dict(details or {}),
                             worker_key=path if path is not None and path != request.model_key else "")
        with self.table.lock:
            worker.characters[request.model_key] = slot
        self.table.set_activity(worker, WorkerState.BUSY, request.model_id)
        timings["load_s"] = load_s

    def _unload(self, worker: ManagedWorker, key: str, reason: str) -> int:
        """Unload a character from a worker this thread holds; returns the bytes it was accounted for."""
        slot = worker.characters.get(key)
        if slot is None:
            return 0
        self.table.set_activity(worker, WorkerState.BUSY, "unloading %s" % slot.character)
        header = {"type": "unload", "job": self._job_id(), "key": slot.key_in_worker}
        self._ask(worker, header, None, "unloaded", self._load_limits(), None, _no_progress, (worker.architecture, key))
        with self.table.lock:
            worker.characters.pop(key, None)
        logger.info("worker %s: unloaded %s (%s; %s)", worker.name, slot.character, reason, fmt_bytes(slot.bytes))
        return slot.bytes

    def _generate_on(
        self, worker: ManagedWorker, request: JobRequest, progress: ProgressFn, cancel: threading.Event,
        on_chunk: Optional[ChunkFn] = None,
    ) -> Tuple[Header, Optional[np.ndarray]]:
        progress(None, "generating")
        loaded = worker.characters.get(request.model_key)
        header = {
            "type": "generate",
            "job": self._job_id(),
            "key": loaded.key_in_worker if loaded is not None else request.model_key,
            "text": request.text,
            "audio_sample_rate": request.audio_sample_rate,
            "options": request.options,
            "stream": on_chunk is not None,
        }
        limits = Limits(self.settings.job_timeout_s, self.settings.heartbeat_timeout_s, self.settings.graceful_stop_s,
                        self.settings.progress_stall_s)
        try:
            return self._ask(worker, header, request.audio, "result", limits, cancel, progress, request.key, on_chunk)
        finally:
            slot = worker.characters.get(request.model_key)
            if slot is not None:
                slot.last_used = time.monotonic()

    def _ask(
        self, worker: ManagedWorker, header: Header, audio: Optional[np.ndarray], expected: str, limits: Limits,
        cancel: Optional[threading.Event], progress: ProgressFn, crash_key: CharacterKey, on_chunk: Optional[ChunkFn] = None,
    ) -> Tuple[Header, Optional[np.ndarray]]:
        return ask(worker, header, audio, expected, limits, cancel, progress,
                   lambda w, when: self._died(w, when, crash_key), self._stop_worker, on_chunk)

    def _load_limits(self) -> Limits:
        """Loads cannot report steady progress: bounded by the load timeout alone."""
        return Limits(self.settings.load_timeout_s, self.settings.heartbeat_timeout_s, self.settings.graceful_stop_s, None)

    def _job_id(self) -> str:
        return "job-%d" % next(self._ids)

    def _character_need(self, request: JobRequest, device: str) -> int:
        return self.admission.character_need(request.model_id, request.character_path, device)

    # deaths and stops
    def _died(self, worker: ManagedWorker, when: str, crash_key: CharacterKey) -> RuntimeLayerError:
        """A worker died under a job: one crash, counted once; or no crash when we stopped it on purpose."""
        worker.process.wait_exit(2.0)
        worker.process.wait_log_drained(1.0)
        ours = self.table.begin_crash_stop(worker, "crashed %s" % when)
        if ours is not None:
            return WorkerStoppedError("the %s worker was stopped %s (%s)" % (worker.architecture, when, ours))
        how = worker.process.describe_exit()
        tail = "\n".join(list(worker.process.log_tail)[-8:])
        message = "the %s worker died %s (%s)%s" % (worker.architecture, when, how, (":\n" + tail) if tail else "")
        worker.last_error = message
        record = self.crashes.crashed(crash_key, "%s (%s)" % (when, how))
        self._finish_stop(worker, WorkerState.FAILED if record.failed else WorkerState.BACKOFF)
        return WorkerCrashedError(message)

    def _stop_worker(self, worker: ManagedWorker, reason: str) -> None:
        if self.table.begin_stop(worker, reason):
            self._finish_stop(worker)

    def _finish_stop(self, worker: ManagedWorker, end: WorkerState = WorkerState.STOPPED) -> None:
        worker.process.stop(self.settings.graceful_stop_s)
        self.table.transition(worker, end, worker.stop_reason or "")

    def _read_control(self, worker: ManagedWorker) -> None:
        """Only records and enqueues: no callback of anyone else's runs on this thread."""

        def handle(header: Header) -> None:
            worker.last_heartbeat = time.monotonic()
            if header.get("type") == "progress":
                worker.events.put(header)

        worker.process.read_control_forever(handle)

    # the monitor: memory samples, deaths of idle workers, keep-alive
    def _tick(self) -> None:
        now = time.monotonic()
        for worker in self.table.live():
            for check in (self._sample, self._watch):
                try:
                    check(worker, now)
                except Exception:  # one bad reading or worker must not stop the other checks
                    logger.exception("supervisor monitor: %s of %s failed", check.__name__, worker.name)

    def _sample(self, worker: ManagedWorker, now: float) -> None:
        if worker.state in (WorkerState.READY, WorkerState.BUSY, WorkerState.LOADING):
            self.admission.measure(worker)

    def _watch(self, worker: ManagedWorker, now: float) -> None:
        """Deaths of idle workers, and keep-alive: unload expired characters, stop expired workers.
        Reads the worker under the table's lock; what blocks (an unload, a stop) is handed off."""
        with self.table.lock:
            if worker.state != WorkerState.READY:
                return
            idle = {key: now - slot.last_used for key, slot in worker.characters.items()}
            worker_idle_s = now - worker.last_used
        if not worker.process.alive():
            if self.table.begin_stop_if_idle(worker, "died while idle"):
                worker.last_error = "the %s worker died while idle (%s)" % (worker.architecture, worker.process.describe_exit())
                record = self.crashes.crashed((worker.architecture, BOOT), worker.last_error)
                end = WorkerState.FAILED if record.failed else WorkerState.BACKOFF
                self._monitor.hand_off("reap-%s" % worker.name, lambda: self._finish_stop(worker, end))
            return
        if self.policy.worker_expired(worker.architecture, idle, worker_idle_s):
            if self.table.begin_stop_if_idle(worker, "idle for %.0f s" % worker_idle_s):
                self._monitor.hand_off("stop-%s" % worker.name, lambda: self._finish_stop(worker))
            return
        expired = [key for key, idle_s in idle.items() if self.policy.expired((worker.architecture, key), idle_s)]
        if expired:
            ticket = Ticket("unloading idle characters")
            if self.table.try_hold_idle(worker, ticket):
                self._monitor.hand_off("unload-%s" % worker.name, lambda: self._unload_expired(worker, ticket, expired))

    def _unload_expired(self, worker: ManagedWorker, ticket: Ticket, keys: List[str]) -> None:
        """Unload characters past their keep-alive from a worker the monitor holds for it."""
        try:
            for key in keys:
                self._unload(worker, key, "idle past its keep-alive")
        except WorkerStoppedError as exc:  # stopped meanwhile (Stop, shutdown): nothing left to unload
            logger.info("worker %s: keep-alive unload ended: %s", worker.name, exc)
        finally:
            self.table.release(worker, ticket)

    # locks a job may wait for, visibly and cancellably
    def _lock_for(self, locks: Dict[str, threading.Lock], name: str) -> threading.Lock:
        with self._locks_lock:
            return locks.setdefault(name, threading.Lock())

    def _acquire(self, lock: threading.Lock, cancel: threading.Event, progress: ProgressFn, message: str) -> None:
        shown = False
        while not lock.acquire(timeout=0.25):
            self._check_open()
            if cancel.is_set():
                raise JobCancelledError("the job was cancelled while %s" % message)
            if not shown:
                progress(None, message)
                shown = True

    # controls
    def stop(self, name: str) -> bool:
        """Stop a worker by name (the Runtimes panel's Stop); False when no such worker. A job running
        on it fails with "stopped", which is not counted as a crash."""
        worker = self.table.by_name(name)
        if worker is None:
            return False
        self._stop_worker(worker, "stopped on request")
        return True

    def unload(self, architecture: str, character: str, character_path: Optional[str] = None) -> bool:
        """Unload one character from the worker holding it (waiting for a running job to end); the
        worker and its other characters stay. False when no worker holds it."""
        key = character_key(architecture, character, character_path)[1]
        holders = [w for w in self.table.live(architecture) if key in w.characters]
        if not holders:
            return False
        ticket = Ticket("unloading %s/%s" % (architecture, character))
        if not self.table.acquire(holders[0], ticket, threading.Event(), _no_progress):
            return False
        try:
            self._unload(holders[0], key, "unloaded on request")
        finally:
            self.table.release(holders[0], ticket)
        return True

    def pin(self, architecture: str, character: str, character_path: Optional[str] = None, pinned: bool = True) -> None:
        """A pinned character is never unloaded (not by keep-alive, not for memory), nor its worker stopped."""
        self.policy.pin(character_key(architecture, character, character_path), pinned)

    def set_keep_alive(self, architecture: str, character: str, character_path: Optional[str], keep_alive_s: Optional[float]) -> None:
        self.policy.set_keep_alive(character_key(architecture, character, character_path), keep_alive_s)

    def status(self) -> List[Dict[str, Any]]:
        """One row per live worker (with the characters it holds), plus one per architecture or
        character that is failed or cooling down."""
        return status_rows(self.table, self.policy, self.crashes)

    @property
    def last_release_wait_s(self) -> Optional[float]:
        return self.admission.last_release_wait_s

    def memory_note(self) -> str:
        return self.devices.note

    def shutdown(self) -> None:
        """Close admission first, then stop every worker (in parallel), then remove the record."""
        workers = self.table.close()
        self._monitor.stop()
        stoppers = [threading.Thread(target=self._stop_worker, args=(w, "app shutting down"), daemon=True) for w in workers]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join(30.0)
        self._monitor.join_handed_off(30.0)  # stops the monitor began (those workers were stopping already)
        self.table.record.remove()
        shutil.rmtree(self.private_dir, ignore_errors=True)


def _is_out_of_memory(error: RemoteError) -> bool:
    text = ("%s %s" % (error.error_type, error.message)).lower()
    return "out of memory" in text or error.error_type in ("OutOfMemoryError", "MemoryError")
