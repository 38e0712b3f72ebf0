"""Admission and eviction as a function of memory readings, over recorded sequences of readings."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional

import numpy as np
import psutil
import pytest

from runtimes.memory import (
    GIB,
    DeviceReading,
    NvmlSource,
    PeakLedger,
    Resident,
    SystemRamSource,
    available_bytes,
    estimate_from_files,
    eviction_order,
    make_devices,
    make_source,
    plan_admission,
    wait_for_release,
)
from runtimes.supervisor import JobRequest
from tests.conftest import ScriptedGpus, SupervisorFactory


def resident(name: str, gib: float, *, idle: bool = True, pinned: bool = False, expired: bool = False,
             reload_s: float = 1.0, last_used: float = 0.0) -> Resident:
    return Resident(name, int(gib * GIB), pinned, idle, expired, reload_s, last_used)


def reading(total_gib: float, free_gib: float, device: str = "GPU-0") -> DeviceReading:
    return DeviceReading(device, int(total_gib * GIB), int(free_gib * GIB))


def test_fits_without_eviction() -> None:
    plan = plan_admission(2 * GIB, reading(24, 10), [resident("a", 6)], reserve_bytes=GIB // 2)
    assert plan.fits and plan.evict == ()


def test_available_takes_the_smaller_of_driver_free_and_our_accounting() -> None:
    # The driver says 20 GiB free, but our live workers hold 16 of 24: only 8 - reserve is ours to give.
    assert available_bytes(reading(24, 20), 16 * GIB, GIB) == 7 * GIB
    # The driver's free figure lags after a stop: believe the smaller one.
    assert available_bytes(reading(24, 3), 4 * GIB, GIB) == 2 * GIB


def test_eviction_order_expired_then_cheap_reload_per_gib_then_lru() -> None:
    residents = [
        resident("busy", 4, idle=False),
        resident("pinned", 4, pinned=True),
        resident("slow-reload", 2, reload_s=20.0, last_used=1.0),
        resident("cheap-reload", 2, reload_s=1.0, last_used=5.0),
        resident("expired", 1, expired=True, reload_s=30.0, last_used=9.0),
        resident("cheap-older", 2, reload_s=1.0, last_used=2.0),
    ]
    assert [r.name for r in eviction_order(residents)] == ["expired", "cheap-older", "cheap-reload", "slow-reload"]


def test_characters_go_before_workers_and_a_worker_only_with_all_its_characters() -> None:
    residents = [
        Resident("w1", int(2 * GIB), False, True, False, 5.0, 0.0),
        Resident("w1|a", int(1 * GIB), False, True, False, 1.0, 3.0, "character", "w1"),
        Resident("w2", int(2 * GIB), False, True, True, 5.0, 0.0),
        Resident("w2|b", int(1 * GIB), True, True, False, 1.0, 1.0, "character", "w2"),  # pinned: w2 stays too
    ]
    assert [r.name for r in eviction_order(residents)] == ["w1|a", "w1"]
    plan = plan_admission(GIB, reading(8, 0.5), residents, reserve_bytes=0)
    assert plan.fits and plan.evict == ("w1|a",)  # a character is enough: its worker stays


def test_evicts_only_as_many_as_needed() -> None:
    residents = [resident("a", 4, last_used=1), resident("b", 4, last_used=2), resident("c", 4, last_used=3)]
    plan = plan_admission(6 * GIB, reading(16, 4), residents, reserve_bytes=0)
    assert plan.fits and plan.evict == ("a",)  # 4 free + 4 from a = 8 >= 6


def test_does_not_fit_when_the_rest_is_busy_or_pinned() -> None:
    residents = [resident("busy", 8, idle=False), resident("pinned", 6, pinned=True), resident("idle", 1)]
    plan = plan_admission(4 * GIB, reading(16, 1), residents, reserve_bytes=0)
    assert not plan.fits and plan.evict == ()
    assert "busy or pinned" in plan.reason


def test_lagging_release_is_waited_for() -> None:
    source = ScriptedGpus({"GPU-fake": (24, [2, 2, 2.5, 4, 7])})  # a stopped worker's 6 GiB come back slowly
    back, waited_s = wait_for_release(source, "GPU-fake", free_before=2 * GIB, freed_bytes=6 * GIB, timeout_s=5, poll_s=0.01)
    assert back and source.reads["GPU-fake"] == 5 and waited_s < 1


def test_release_that_never_comes_times_out() -> None:
    source = ScriptedGpus({"GPU-fake": (24, 2)})
    back, waited_s = wait_for_release(source, "GPU-fake", 2 * GIB, 6 * GIB, timeout_s=0.2, poll_s=0.05)
    assert not back and waited_s >= 0.2


def fake_nvml(used_by_pid: Optional[Dict[int, Optional[int]]]) -> SimpleNamespace:
    """Stands in for the NVIDIA driver, which cannot exist on this machine; NvmlSource's code runs as is."""

    def processes(handle: object) -> List[SimpleNamespace]:
        if used_by_pid is None:
            raise RuntimeError("NVMLError_NotSupported")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in used_by_pid.items()]

    return SimpleNamespace(
        nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(total=24 * GIB, free=10 * GIB),
        nvmlDeviceGetComputeRunningProcesses=processes,
    )


@pytest.mark.parametrize(
    ("used_by_pid", "expected"),
    [({101: GIB, 202: 2 * GIB}, GIB), ({101: None}, None), (None, None)],
    ids=["per-process known", "hidden in a container", "not supported"],
)
def test_per_process_memory_may_be_unavailable(used_by_pid: Optional[Dict[int, Optional[int]]], expected: Optional[int]) -> None:
    source = NvmlSource.__new__(NvmlSource)
    source.nv = fake_nvml(used_by_pid)
    source.handles = {"GPU-0": object()}
    assert source.read("GPU-0").free_bytes == 10 * GIB
    assert source.process_bytes("GPU-0", [101]) == expected


def test_no_nvidia_driver_falls_back_to_system_ram(monkeypatch: pytest.MonkeyPatch) -> None:
    """Holds on GPU machines too: the driver's absence is what NVML reports when it cannot load."""
    import pynvml

    def no_driver() -> None:
        raise pynvml.NVMLError_LibraryNotFound()

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    source = make_source()
    assert isinstance(source, SystemRamSource) and source.devices() == ["cpu"]
    assert "no NVIDIA driver (NVMLError_LibraryNotFound)" in source.note
    assert source.read("cpu").total_bytes > GIB
    devices = make_devices()
    assert devices.devices() == ["cpu"] and devices.gpus is None and "no NVIDIA driver" in devices.note


def test_cpu_readings_on_a_gpu_machine_come_from_ram() -> None:
    devices = make_devices(gpus=ScriptedGpus({"GPU-a": (24, 20)}))
    assert devices.devices() == ["GPU-a", "cpu"]
    assert devices.read("GPU-a").total_bytes == 24 * GIB
    assert devices.read("cpu").total_bytes == psutil.virtual_memory().total
    used = devices.process_bytes("cpu", [os.getpid()])  # RSS through psutil, never NVML's (which knows no "cpu")
    assert used is not None and used > 10 << 20 and devices.gpus is not None and devices.gpus.reads["GPU-a"] == 1  # type: ignore[attr-defined]


def test_peaks_survive_a_restart_and_estimates_use_file_sizes(tmp_path: Path) -> None:
    ledger = PeakLedger(tmp_path / "peaks.json")
    ledger.record("piper/joe", "cpu", 300 << 20)
    ledger.record("piper/joe", "cpu", 200 << 20)  # a lower run does not lower the peak
    assert PeakLedger(tmp_path / "peaks.json").get("piper/joe", "cpu") == 300 << 20
    model = tmp_path / "character"
    model.mkdir()
    (model / "G_100.pth").write_bytes(b"\0" * (10 << 20))
    assert estimate_from_files(str(model), 1) == int(15 * (1 << 20)) + (256 << 20)
    assert estimate_from_files(None, 123) == 123


def test_out_of_memory_on_load_unloads_idle_characters_and_retries_once(
    make_supervisor: SupervisorFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FAKE_OOM_ONCE_MARKER", str(tmp_path / "oom-happened"))
    supervisor = make_supervisor(memory=ScriptedGpus({"GPU-fake": (24, 20)}))  # a GPU with room to spare
    tone = np.zeros(1600, dtype=np.float32)
    plain = JobRequest(architecture="fake", character="plain", audio=tone, audio_sample_rate=16000)
    supervisor.generate(plain)
    [row] = supervisor.status()
    assert row["device"] == "GPU-fake"
    assert psutil.Process(row["pid"]).environ()["CUDA_VISIBLE_DEVICES"] == "GPU-fake"  # pinned to the device's UUID
    result = supervisor.generate(replace(plain, character="oom-once"))
    assert result.sample_rate == 16000 and (tmp_path / "oom-happened").exists()
    [after] = supervisor.status()
    assert after["pid"] == row["pid"] and after["characters"] == ["oom-once"]  # the idle character made room
