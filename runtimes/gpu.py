"""Reading accelerator memory through NVML; on machines without an NVIDIA driver, system RAM via psutil.

Nothing here raises on a machine without a GPU: ``probe()`` says what exists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional

import psutil

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceMemory:
    """One device's memory, in bytes. ``uuid`` is what ``CUDA_VISIBLE_DEVICES`` takes."""

    name: str
    uuid: str
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class AcceleratorProbe:
    gpus: List[DeviceMemory]
    reason: str  # why there are no GPUs, when there are none

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)


def probe() -> AcceleratorProbe:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, driver not loaded, ...
        return AcceleratorProbe([], "no NVIDIA driver (%s): using system RAM" % type(exc).__name__)
    try:
        gpus: List[DeviceMemory] = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpus.extend(_devices_of(pynvml, handle))
        return AcceleratorProbe(gpus, "" if gpus else "NVIDIA driver present but no GPU visible")
    finally:
        pynvml.nvmlShutdown()


def _devices_of(pynvml: object, handle: object) -> List[DeviceMemory]:
    """A GPU, or its MIG devices when MIG is on (workers are pinned to a MIG device's UUID)."""
    nv = pynvml
    devices: List[DeviceMemory] = []
    try:
        current_mode, _ = nv.nvmlDeviceGetMigMode(handle)  # type: ignore[attr-defined]
    except Exception:
        current_mode = 0
    if current_mode:
        for mig_index in range(nv.nvmlDeviceGetMaxMigDeviceCount(handle)):  # type: ignore[attr-defined]
            try:
                mig = nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, mig_index)  # type: ignore[attr-defined]
            except Exception:
                continue
            devices.append(_memory_of(nv, mig))
        return devices
    return [_memory_of(nv, handle)]


def _memory_of(nv: object, handle: object) -> DeviceMemory:
    info = nv.nvmlDeviceGetMemoryInfo(handle)  # type: ignore[attr-defined]
    name = nv.nvmlDeviceGetName(handle)  # type: ignore[attr-defined]
    uuid = nv.nvmlDeviceGetUUID(handle)  # type: ignore[attr-defined]
    return DeviceMemory(_text(name), _text(uuid), int(info.total), int(info.free))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def system_memory() -> DeviceMemory:
    memory = psutil.virtual_memory()
    return DeviceMemory("system RAM", "cpu", int(memory.total), int(memory.available))


def process_rss_bytes(pid: int) -> Optional[int]:
    """Resident memory of a process and its children; None when it is gone."""
    try:
        process = psutil.Process(pid)
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return int(total)
    except psutil.Error:
        return None
