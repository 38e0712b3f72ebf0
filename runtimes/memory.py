"""Admission by memory: may a model load now, and which idle workers must go first?

The policy is a pure function of readings (``plan_admission``), so it is tested over recorded
sequences. Readings come from NVML on NVIDIA machines and from psutil (system RAM) elsewhere; a
measured peak per (model, device) is kept across restarts and replaces the first estimate.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, Tuple

import psutil

from runtimes.envkinds.base import WorkerHandle

logger = logging.getLogger(__name__)

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class DeviceReading:
    """One look at a device. ``per_process_bytes`` is None where the driver will not say (containers)."""

    device: str
    total_bytes: int
    free_bytes: int
    per_process_bytes: Optional[Dict[int, int]] = None


@dataclass(frozen=True)
class Resident:
    """What holds memory on a device, as the policy sees it: a loaded character (``kind`` "character",
    ``worker`` names the worker holding it) or a worker's own base (its shared assets and runtime)."""

    name: str
    accounted_bytes: int
    pinned: bool
    idle: bool
    expired: bool
    reload_s: float
    last_used: float
    kind: str = "worker"
    worker: str = ""


@dataclass(frozen=True)
class AdmissionPlan:
    fits: bool
    evict: Tuple[str, ...]
    need_bytes: int
    available_bytes: int
    reason: str


def available_bytes(reading: DeviceReading, accounted_bytes: int, reserve_bytes: int) -> int:
    """min(driver's free figure, total - what our live workers hold) - reserve."""
    return min(reading.free_bytes, reading.total_bytes - accounted_bytes) - reserve_bytes


def eviction_order(residents: Iterable[Resident]) -> List[Resident]:
    """Idle, unpinned residents: characters before whole workers; then expired first, then least
    reload-seconds per GiB freed, then least recently used. A worker goes only with all its characters."""
    residents = list(residents)
    kept_by = {r.worker for r in residents if r.kind == "character" and (r.pinned or not r.idle)}
    candidates = [r for r in residents if r.idle and not r.pinned and not (r.kind == "worker" and r.name in kept_by)]
    return sorted(
        candidates,
        key=lambda r: (r.kind != "character", not r.expired, r.reload_s / max(r.accounted_bytes / GIB, 1e-3), r.last_used),
    )


def plan_admission(need_bytes: int, reading: DeviceReading, residents: Sequence[Resident], reserve_bytes: int) -> AdmissionPlan:
    accounted = sum(r.accounted_bytes for r in residents)
    available = available_bytes(reading, accounted, reserve_bytes)
    if need_bytes <= available:
        return AdmissionPlan(True, (), need_bytes, available, "fits")
    evict: List[str] = []
    free, held = reading.free_bytes, accounted
    for resident in eviction_order(residents):
        evict.append(resident.name)
        free += resident.accounted_bytes
        held -= resident.accounted_bytes
        available = min(free, reading.total_bytes - held) - reserve_bytes
        if need_bytes <= available:
            return AdmissionPlan(True, tuple(evict), need_bytes, available, "fits after evicting %d idle worker(s)" % len(evict))
    busy_or_pinned = len(residents) - len(evict)
    return AdmissionPlan(
        False,
        (),
        need_bytes,
        available,
        "needs %s but only %s can be freed on %s (%d busy or pinned worker(s) or character(s) hold the rest)"
        % (fmt_bytes(need_bytes), fmt_bytes(max(available, 0)), reading.device, busy_or_pinned),
    )


@dataclass(frozen=True)
class Placement:
    device: str
    plan: AdmissionPlan


def choose_device(
    need_bytes: Dict[str, int],
    readings: Sequence[DeviceReading],
    residents: Mapping[str, Sequence[Resident]],
    reserve_bytes: int,
    min_total_bytes: int = 0,
) -> Tuple[Optional[Placement], str]:
    """Among ``readings`` (one per candidate device), the best place for what the model needs there
    (``need_bytes`` by device: measured peaks differ between devices): a device where
    it fits as things are (the most room left wins), else one where it fits after evicting (the fewest
    bytes evicted wins). Devices smaller than ``min_total_bytes`` are skipped. Returns the placement or
    None, and why not."""
    fits_now: List[Placement] = []
    fits_after: List[Tuple[int, Placement]] = []
    reasons: List[str] = []
    for reading in readings:
        if reading.total_bytes < min_total_bytes:
            total, minimum = fmt_bytes(reading.total_bytes), fmt_bytes(min_total_bytes)
            reasons.append("%s has %s in all, under the %s this needs" % (reading.device, total, minimum))
            continue
        on_device = list(residents.get(reading.device, ()))
        plan = plan_admission(need_bytes[reading.device], reading, on_device, reserve_bytes)
        if not plan.fits:
            reasons.append(plan.reason)
        elif not plan.evict:
            fits_now.append(Placement(reading.device, plan))
        else:
            evicted = sum(r.accounted_bytes for r in on_device if r.name in plan.evict)
            fits_after.append((evicted, Placement(reading.device, plan)))
    if fits_now:
        return max(fits_now, key=lambda p: p.plan.available_bytes), "fits"
    if fits_after:
        return min(fits_after, key=lambda pair: pair[0])[1], "fits after evicting"
    return None, "; ".join(reasons) or "no device"


def fmt_bytes(count: int) -> str:
    return "%.2f GiB" % (count / GIB) if count >= GIB else "%.0f MiB" % (count / MIB)


class MemorySource(Protocol):
    kind: str
    """"nvml" or "ram"."""
    note: str

    def devices(self) -> List[str]: ...

    def read(self, device: str) -> DeviceReading: ...

    def process_bytes(self, device: str, pids: Sequence[int]) -> Optional[int]: ...


class SystemRamSource:
    """No NVIDIA driver: the same policy over system RAM (psutil), optionally capped by a budget."""

    kind = "ram"

    def __init__(self, budget_bytes: Optional[int] = None, note: str = "") -> None:
        self.budget_bytes = budget_bytes
        self.note = note or "no NVIDIA GPU: workers run on the CPU; memory policy uses system RAM"
        if budget_bytes is not None:
            self.note += " (budget %s)" % fmt_bytes(budget_bytes)

    def devices(self) -> List[str]:
        return ["cpu"]

    def read(self, device: str) -> DeviceReading:
        memory = psutil.virtual_memory()
        total, free = int(memory.total), int(memory.available)
        if self.budget_bytes is not None:
            # A budget acts as a smaller machine; what our workers hold is subtracted by the policy.
            total, free = self.budget_bytes, min(free, self.budget_bytes)
        return DeviceReading(device, total, free, None)

    def process_bytes(self, device: str, pids: Sequence[int]) -> Optional[int]:
        total = 0
        for pid in pids:
            try:
                process = psutil.Process(pid)
                total += process.memory_info().rss
                for child in process.children(recursive=True):
                    total += child.memory_info().rss
            except psutil.Error:
                continue
        return total


class NvmlSource:
    """NVIDIA GPUs (and MIG devices) through NVML. Devices are named by UUID."""

    kind = "nvml"

    def __init__(self) -> None:
        import pynvml

        self.nv = pynvml
        pynvml.nvmlInit()
        self.handles: Dict[str, object] = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for device_handle in self._with_mig(handle):
                uuid = pynvml.nvmlDeviceGetUUID(device_handle)
                self.handles[uuid.decode() if isinstance(uuid, bytes) else str(uuid)] = device_handle
        names = ", ".join(self.handles) or "none"
        self.note = "NVIDIA GPU(s) via NVML: %s" % names

    def _with_mig(self, handle: object) -> List[object]:
        try:
            current, _ = self.nv.nvmlDeviceGetMigMode(handle)
        except Exception:  # not MIG-capable
            current = 0
        if not current:
            return [handle]
        found = []
        for index in range(self.nv.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                found.append(self.nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, index))
            except Exception:  # an empty MIG slot
                continue
        return found

    def devices(self) -> List[str]:
        return list(self.handles)

    def read(self, device: str) -> DeviceReading:
        handle = self.handles[device]
        info = self.nv.nvmlDeviceGetMemoryInfo(handle)
        return DeviceReading(device, int(info.total), int(info.free), self._per_process(handle))

    def _per_process(self, handle: object) -> Optional[Dict[int, int]]:
        try:
            processes = self.nv.nvmlDeviceGetComputeRunningProcesses(handle)
        except Exception:  # NVMLError_NotSupported and friends
            return None
        found: Dict[int, int] = {}
        for process in processes:
            used = getattr(process, "usedGpuMemory", None)
            if used is None:
                return None  # containers often hide it
            found[int(process.pid)] = int(used)
        return found

    def process_bytes(self, device: str, pids: Sequence[int]) -> Optional[int]:
        reading = self.read(device)
        if reading.per_process_bytes is None:
            return None
        family = set(pids)
        for pid in pids:
            try:
                family.update(child.pid for child in psutil.Process(pid).children(recursive=True))
            except psutil.Error:
                continue
        return sum(used for pid, used in reading.per_process_bytes.items() if pid in family)


class DeviceSet:
    """Every device a worker may run on: the GPUs of a GPU source (if any) and the CPU, whose memory
    is system RAM. A CPU worker on a GPU machine is read and admitted against RAM, never NVML."""

    def __init__(self, gpus: Optional[MemorySource], ram: SystemRamSource) -> None:
        self.gpus = gpus
        self.ram = ram
        self.kind = gpus.kind if gpus is not None else ram.kind
        self.note = gpus.note if gpus is not None else ram.note

    def gpu_devices(self) -> List[str]:
        return self.gpus.devices() if self.gpus is not None else []

    def devices(self) -> List[str]:
        return [*self.gpu_devices(), "cpu"]

    def _source(self, device: str) -> MemorySource:
        if device == "cpu" or self.gpus is None:
            return self.ram
        return self.gpus

    def read(self, device: str) -> DeviceReading:
        return self._source(device).read(device)

    def process_bytes(self, device: str, pids: Sequence[int]) -> Optional[int]:
        return self._source(device).process_bytes(device, pids)

    def worker_bytes(self, device: str, handle: WorkerHandle) -> Optional[int]:
        """What a worker holds on ``device``: on the CPU its processes' resident memory as its
        environment kind reads it; on a GPU the driver's figure for its processes."""
        if device == "cpu" or self.gpus is None:
            return handle.memory_bytes()
        return self.gpus.process_bytes(device, handle.pids())


def make_devices(ram_budget_bytes: Optional[int] = None, gpus: Optional[MemorySource] = None) -> DeviceSet:
    """The GPUs NVML sees (or ``gpus``, a scripted source in tests) beside the CPU's RAM."""
    note = ""
    if gpus is None:
        found = make_source()
        if found.kind == "nvml":
            gpus = found
        else:
            note = found.note
    return DeviceSet(gpus, SystemRamSource(ram_budget_bytes, note=note))


def make_source(ram_budget_bytes: Optional[int] = None) -> MemorySource:
    """NVML where an NVIDIA driver answers; system RAM otherwise. Never raises."""
    if ram_budget_bytes is None:
        try:
            source = NvmlSource()
            if source.devices():
                return source
        except Exception as exc:  # NVMLError_LibraryNotFound, driver not loaded, ...
            return SystemRamSource(note="no NVIDIA driver (%s): workers run on the CPU; memory policy uses system RAM" % type(exc).__name__)
    return SystemRamSource(budget_bytes=ram_budget_bytes)


class PeakLedger:
    """Measured peak memory per (model, device), kept in a JSON file across restarts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._peaks: Dict[str, int] = {k: int(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            self._peaks = {}

    @staticmethod
    def key(model: str, device: str) -> str:
        return "%s@%s" % (model, device)

    def get(self, model: str, device: str) -> Optional[int]:
        with self._lock:
            return self._peaks.get(self.key(model, device))

    def record(self, model: str, device: str, peak_bytes: int) -> None:
        with self._lock:
            key = self.key(model, device)
            if peak_bytes <= self._peaks.get(key, 0):
                return
            self._peaks[key] = int(peak_bytes)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")  # one writer at a time: under the lock
            tmp.write_text(json.dumps(self._peaks, indent=1, sort_keys=True))
            os.replace(tmp, self.path)


def estimate_from_files(folder: Optional[str], default_bytes: int) -> int:
    """Before a model has been measured: its files' size x 1.5 plus runtime overhead, or a default."""
    if not folder or not os.path.isdir(folder):
        return default_bytes
    size = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                size += os.path.getsize(os.path.join(root, name))
            except OSError:
                continue
    return int(size * 1.5) + 256 * MIB


def wait_for_release(
    source: MemorySource, device: str, free_before: int, freed_bytes: int, timeout_s: float = 5.0, poll_s: float = 0.25
) -> Tuple[bool, float]:
    """After stopping workers the driver's free figure lags: poll until 75% of what they held is back."""
    started = time.monotonic()
    target = free_before + int(0.75 * freed_bytes)
    while True:
        if source.read(device).free_bytes >= target:
            return True, time.monotonic() - started
        if time.monotonic() - started >= timeout_s:
            return False, time.monotonic() - started
        time.sleep(poll_s)
