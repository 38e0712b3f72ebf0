"""Admission by memory and device policy: what a worker or a character needs, what holds memory on
each device, where a new worker goes, and making room (unloading idle characters before stopping idle
workers), or waiting for it (bounded, visible, cancellable). The arithmetic lives in ``memory``;
this module applies it to the live workers of the table."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from runtimes.config import SupervisorSettings
from runtimes.environments import EnvSpec
from runtimes.errors import ArchitectureUnavailableError, JobCancelledError, RuntimeLayerError, WorkerStoppedError
from runtimes.memory import (
    MIB,
    DeviceSet,
    PeakLedger,
    Resident,
    choose_device,
    estimate_from_files,
    fmt_bytes,
    plan_admission,
    wait_for_release,
)
from runtimes.policy import KeepAlivePolicy
from runtimes.states import WorkerState
from runtimes.workers import ManagedWorker, ProgressFn, Ticket, WorkerTable

logger = logging.getLogger(__name__)

Unit = Tuple[ManagedWorker, Optional[str]]
"""What an eviction removes: a character of a worker, or (None) the worker itself."""
Unload = Callable[[ManagedWorker, str, str], int]
"""Unloads a character from a worker the caller holds; returns the bytes it was accounted for."""
FinishStop = Callable[[ManagedWorker], None]


class Admission:
    def __init__(
        self, settings: SupervisorSettings, devices: DeviceSet, ledger: PeakLedger, policy: KeepAlivePolicy, table: WorkerTable,
        unload: Unload, finish_stop: FinishStop,
    ) -> None:
        self.settings = settings
        self.devices = devices
        self.ledger = ledger
        self.policy = policy
        self.table = table
        self.unload = unload
        self.finish_stop = finish_stop
        self.last_release_wait_s: Optional[float] = None
        """How long the driver took to show an eviction's memory back (the last time we waited)."""

    # needs and measurements
    def base_need(self, spec: EnvSpec, device: str) -> int:
        """A worker's own memory (runtime, shared assets): measured on this device before, or the default."""
        return self.ledger.get(spec.name, device) or self.settings.default_need_bytes

    def character_need(self, model_id: str, folder: Optional[str], device: str) -> int:
        """A character's memory: measured on this device before, else estimated from its files."""
        measured = self.ledger.get(model_id, device)
        return measured if measured is not None else estimate_from_files(folder, 0)

    def measure(self, worker: ManagedWorker) -> Optional[int]:
        used = self.devices.worker_bytes(worker.device, worker.process.handle)
        if used:
            worker.peak_bytes = max(worker.peak_bytes, used)
        return used

    def account_job_memory(self, worker: ManagedWorker, model_id: str, key: str) -> None:
        """Memory the worker kept after a job beyond what it was accounted for belongs to the job's
        character (activations, caches): its slot grows and the ledger remembers it."""
        used = self.measure(worker)
        slot = worker.characters.get(key)
        if not used or slot is None or used <= worker.accounted_bytes:
            return
        with self.table.lock:
            slot.bytes += used - worker.accounted_bytes
            slot.measured = True
        self.ledger.record(model_id, worker.device, slot.bytes)

    # what holds memory
    def residents(self, device: str, holder: Optional[ManagedWorker], loading_key: Optional[str]) -> Tuple[List[Resident], Dict[str, Unit]]:
        """What holds memory on ``device``: each loaded character and each worker's own base. The
        held worker's other characters may be unloaded by its holder; its base may not."""
        now = time.monotonic()
        residents: List[Resident] = []
        units: Dict[str, Unit] = {}
        with self.table.lock:
            for worker in self.table.live():
                if worker.device != device:
                    continue
                mine = worker is holder
                free = worker.state == WorkerState.READY and worker.holder is None and not worker.waiting
                for key, slot in worker.characters.items():
                    if mine and key == loading_key:
                        continue
                    name = "%s|%s" % (worker.name, key)
                    character = (worker.architecture, key)
                    residents.append(Resident(
                        name, slot.bytes, self.policy.pinned(character), free or mine,
                        self.policy.expired(character, now - slot.last_used), slot.load_s, slot.last_used, "character", worker.name,
                    ))
                    units[name] = (worker, key)
                idle = {key: now - slot.last_used for key, slot in worker.characters.items()}
                residents.append(Resident(
                    worker.name, worker.base_bytes, False, free and not mine,
                    self.policy.worker_expired(worker.architecture, idle, now - worker.last_used), worker.start_s, worker.last_used,
                ))
                units[worker.name] = (worker, None)
        return residents, units

    # where a new worker goes
    def candidate_devices(self, spec: EnvSpec) -> List[str]:
        gpus = self.devices.gpu_devices()
        if spec.device == "cpu-only":
            return ["cpu"]
        if spec.device == "gpu-required" and not gpus:
            raise ArchitectureUnavailableError("%s needs an NVIDIA GPU, and the driver reports none on this machine" % spec.name)
        return gpus or ["cpu"]

    def place(
        self, spec: EnvSpec, character_need: Callable[[str], int], label: str, progress: ProgressFn, cancel: threading.Event
    ) -> str:
        """The device with room for the worker and its first character (waiting, bounded, while none
        has); the CPU instead when the policy and the settings allow it."""
        candidates = self.candidate_devices(spec)
        deadline = time.monotonic() + self.settings.admission_timeout_s
        while True:
            needs = {device: self.base_need(spec, device) + character_need(device) for device in candidates}
            readings = [self.devices.read(device) for device in candidates]
            residents = {device: self.residents(device, None, None)[0] for device in candidates}
            min_total = spec.min_gpu_memory_mb * MIB if candidates != ["cpu"] else 0
            placement, why = choose_device(needs, readings, residents, self.settings.memory_reserve_bytes, min_total)
            if placement is not None:
                return placement.device
            if spec.device == "gpu-preferred" and self.settings.allow_cpu_fallback and candidates != ["cpu"]:
                logger.warning("%s does not fit on any GPU (%s): running it on the CPU", spec.name, why)
                progress(None, "no GPU has room: running on the CPU")
                return "cpu"
            self.wait_for_memory(deadline, label, why, progress, cancel)

    # making room
    def make_room(
        self, device: str, need: int, holder: Optional[ManagedWorker], loading_key: Optional[str], label: str,
        progress: ProgressFn, cancel: threading.Event,
    ) -> None:
        """Evict what must go for ``need`` to fit on ``device``, or wait (bounded, cancellable) until it fits."""
        deadline = time.monotonic() + self.settings.admission_timeout_s
        while True:
            if self.table.closed:
                raise WorkerStoppedError("the app is shutting down")
            residents, units = self.residents(device, holder, loading_key)
            plan = plan_admission(need, self.devices.read(device), residents, self.settings.memory_reserve_bytes)
            if plan.fits:
                if not plan.evict:
                    return
                logger.info("admitting %s (%s) on %s: %s", label, fmt_bytes(need), device, plan.reason)
                progress(None, "freeing memory: unloading %d idle character(s) or worker(s)" % len(plan.evict))
                if self.evict(device, [units[name] for name in plan.evict], holder, "memory for %s" % label):
                    return
                continue  # one of them took a job meanwhile: plan again
            self.wait_for_memory(deadline, label, plan.reason, progress, cancel)

    def evict_idle(self, device: str, holder: ManagedWorker, loading_key: str, reason: str) -> None:
        """Everything idle and unpinned on the device goes (after an out-of-memory error)."""
        residents, units = self.residents(device, holder, loading_key)
        self.evict(device, [units[r.name] for r in residents if r.idle and not r.pinned], holder, reason)

    def wait_for_memory(self, deadline: float, label: str, why: str, progress: ProgressFn, cancel: threading.Event) -> None:
        if cancel.is_set():
            raise JobCancelledError("the job was cancelled while waiting for memory")
        if time.monotonic() > deadline:
            raise ArchitectureUnavailableError("not enough memory to load %s: %s" % (label, why), retry_after_s=30.0)
        progress(None, "waiting for memory: %s" % why)
        with self.table.changed:
            self.table.changed.wait(0.5)

    def evict(self, device: str, units: List[Unit], holder: Optional[ManagedWorker], reason: str) -> bool:
        """Unload characters and stop workers that are still idle; False when one was not (any more)."""
        free_before = self.devices.read(device).free_bytes
        freed = 0
        done = True
        for worker, key in units:
            try:
                if key is None:
                    if self.table.begin_stop_if_idle(worker, "evicted: %s" % reason):
                        freed += worker.accounted_bytes
                        self.finish_stop(worker)
                    else:
                        done = False
                elif worker is holder:
                    freed += self.unload(worker, key, "evicted: %s" % reason)
                else:
                    ticket = Ticket("evicting a character")
                    if self.table.try_hold_idle(worker, ticket):
                        try:
                            freed += self.unload(worker, key, "evicted: %s" % reason)
                        finally:
                            self.table.release(worker, ticket)
                    else:
                        done = False
            except RuntimeLayerError as exc:  # the worker died while unloading: already accounted for
                logger.warning("eviction from %s failed: %s", worker.name, exc)
                done = False
        if freed and self.devices.gpus is not None and device != "cpu":
            back, waited_s = wait_for_release(self.devices.gpus, device, free_before, freed, self.settings.release_timeout_s)
            self.last_release_wait_s = waited_s
            logger.info("memory back on %s after %.2f s%s", device, waited_s, "" if back else " (timed out)")
        return done
