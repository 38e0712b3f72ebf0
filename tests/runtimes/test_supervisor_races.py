"""One test per finding of the supervisor review (issue 7): each failed on the old supervisor.
Real worker subprocesses in a real venv; GPUs, which cannot exist here, are scripted (``ScriptedGpus``)."""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, List, Optional

import numpy as np
import psutil
import pytest

from runtimes.environments import EnvSpec
from runtimes.envkinds.venv import VenvHandle
from runtimes.errors import (
    ArchitectureUnavailableError,
    JobCancelledError,
    JobTimeoutError,
    WorkerBootError,
    WorkerStoppedError,
)
from runtimes.memory import GIB, DeviceReading, Resident, choose_device
from runtimes.process import WorkerProcess
from runtimes.reaper import WorkerRecord
from runtimes.supervisor import BOOT, JobRequest
from tests.conftest import ScriptedGpus, SupervisorFactory, wait_until

TONE = (0.25 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)).astype(np.float32)


def fake_job(character: str = "plain", **options: object) -> JobRequest:
    return JobRequest(architecture="fake", character=character, audio=TONE, audio_sample_rate=16000, options=dict(options))


def our_workers() -> List[psutil.Process]:
    """Worker processes this test process started (any depth), still running."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "runtimes.worker" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.Error:
            continue
    return found


def run_in_thread(call: Any) -> tuple[threading.Thread, List[Any]]:
    outcome: List[Any] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test's assertions
            outcome.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


# 1. keep-alive 0 must never kill a job that waits for the worker, nor count anything as a crash
def test_keep_alive_zero_under_many_threads_loses_no_job(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor(keep_alive_s=0.0)
    errors: List[BaseException] = []

    def client() -> None:
        for _ in range(3):
            try:
                supervisor.generate(fake_job(sleep_s=0.05))
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert supervisor.crashes.snapshot() == {}
    assert wait_until(lambda: supervisor.status() == [], 10) and our_workers() == []


# 2. CPU fallback on a GPU machine: read against RAM, never NVML; the monitor keeps working
def test_cpu_fallback_on_a_gpu_machine(make_supervisor: SupervisorFactory) -> None:
    gpus = ScriptedGpus({"GPU-small": (4, 4)}, per_process_bytes={})
    supervisor = make_supervisor(memory=gpus, allow_cpu_fallback=True, default_need_bytes=8 * GIB, keep_alive_s=1.5,
                                 monitor_interval_s=0.1)
    messages: List[str] = []
    result = supervisor.generate(fake_job(), progress=lambda f, m: messages.append(m))
    assert result.sample_rate == 16000
    [row] = supervisor.status()
    assert row["device"] == "cpu" and row["state"] == "ready" and "no GPU has room: running on the CPU" in messages
    assert psutil.Process(row["pid"]).environ()["CUDA_VISIBLE_DEVICES"] == ""  # a CPU worker sees no GPU
    assert row["measured_peak_mb"] and row["measured_peak_mb"] > 5  # sampled from RAM, not NVML
    assert wait_until(lambda: supervisor.status() == [], 10)  # keep-alive still enforced by the monitor


def test_cpu_only_architecture_is_never_given_a_gpu(make_supervisor: SupervisorFactory, fake_spec: EnvSpec) -> None:
    supervisor = make_supervisor({"fake": replace(fake_spec, device="cpu-only")}, memory=ScriptedGpus({"GPU-big": (80, 80)}))
    supervisor.generate(fake_job())
    [row] = supervisor.status()
    assert row["device"] == "cpu" and psutil.Process(row["pid"]).environ()["CUDA_VISIBLE_DEVICES"] == ""


def test_gpu_required_without_a_gpu_is_a_clear_error(make_supervisor: SupervisorFactory, fake_spec: EnvSpec) -> None:
    supervisor = make_supervisor({"fake": replace(fake_spec, device="gpu-required")})
    with pytest.raises(ArchitectureUnavailableError, match="needs an NVIDIA GPU"):
        supervisor.generate(fake_job())
    assert our_workers() == []


# 3. loads are bounded by load_timeout_s, not by the progress-stall check of jobs
def test_load_is_bounded_by_the_load_timeout(make_supervisor: SupervisorFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LOAD_S", "2")
    supervisor = make_supervisor(progress_stall_s=0.5, load_timeout_s=30)
    assert supervisor.generate(fake_job("slow-load")).sample_rate == 16000  # 2 s without progress is fine for a load
    monkeypatch.setenv("FAKE_LOAD_S", "30")
    slow = make_supervisor(progress_stall_s=0.5, load_timeout_s=2)
    started = time.monotonic()
    with pytest.raises(JobTimeoutError, match="fake load ran past its 2 s limit"):
        slow.generate(fake_job("slow-load"))
    assert time.monotonic() - started < 10


# 4. only the reserved exit code means "cannot boot"; other boot failures back off; bad handshakes leave nothing
def test_boot_timeout_backs_off_instead_of_failing(make_supervisor: SupervisorFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_IMPORT_SLEEP_S", "20")
    supervisor = make_supervisor(boot_timeout_s=1.0)
    with pytest.raises(WorkerBootError, match="did not connect within the start-up timeout"):
        supervisor.generate(fake_job())
    assert our_workers() == [] and all(row["pid"] is None for row in supervisor.status())
    assert supervisor.crashes.snapshot()[("fake", BOOT)].failed is None  # not FAILED: a restart may work
    monkeypatch.setenv("FAKE_IMPORT_SLEEP_S", "0")  # the machine is less busy now
    assert supervisor.generate(fake_job()).sample_rate == 16000


def test_malformed_manifest_leaves_no_half_started_worker(make_supervisor: SupervisorFactory, fake_spec: EnvSpec,
                                                          fake_python: Path) -> None:
    broken = replace(fake_spec, adapter="tests.fakes.bad_handshake:MalformedManifestAdapter")
    # The fake's own env (the adapter line is part of the spec's hash: building "broken" would swap the
    # shared fake env for a copy and remove the one the session's other tests run from).
    supervisor = make_supervisor({"fake": broken}, resolve_python=lambda spec, progress: fake_python)
    with pytest.raises(WorkerBootError, match="malformed manifest"):
        supervisor.generate(fake_job())
    assert all(row["pid"] is None for row in supervisor.status()) and supervisor.table.live() == []
    assert wait_until(lambda: our_workers() == [], 5)


def test_wrong_key_fails_authentication_cleanly(
    make_supervisor: SupervisorFactory, fake_python: Path, tmp_path: Path
) -> None:
    impostor = tmp_path / "python-with-wrong-key"
    impostor.write_text("#!/bin/sh\nread key\necho %s | exec %s \"$@\"\n" % ("ab" * 32, fake_python))
    impostor.chmod(impostor.stat().st_mode | stat.S_IEXEC)
    supervisor = make_supervisor(resolve_python=lambda spec, progress: impostor)
    with pytest.raises(WorkerBootError, match="authentication|could not connect|broke off"):
        supervisor.generate(fake_job())
    assert supervisor.table.live() == [] and wait_until(lambda: our_workers() == [], 5)


# 5. the live-worker record: many writers at once
def test_concurrent_record_writes(tmp_path: Path) -> None:
    record = WorkerRecord(tmp_path)
    errors: List[BaseException] = []

    def write(index: int) -> None:
        for _ in range(50):
            try:
                record.write([{"kind": "venv", "pid": os.getpid(), "create_time": None}] * index)
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(1, 17)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert 1 <= len(json.loads(record.path.read_text())) <= 16
    assert [p.name for p in tmp_path.iterdir()] == [record.path.name]  # no temporary files left


# 6. every wait is visible and can be cancelled
def test_cancel_while_waiting_for_a_busy_worker(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor()
    first_cancel = threading.Event()
    first, _ = run_in_thread(lambda: supervisor.generate(fake_job(sleep_s=30), cancel=first_cancel))
    assert wait_until(lambda: any(r["state"] == "busy" for r in supervisor.status()), 20)
    messages: List[str] = []
    cancel = threading.Event()
    second, outcome = run_in_thread(lambda: supervisor.generate(fake_job(), progress=lambda f, m: messages.append(m), cancel=cancel))
    assert wait_until(lambda: any("waiting for the fake worker" in m and "1 job(s) ahead" in m for m in messages), 10)
    started = time.monotonic()
    cancel.set()
    second.join(5)
    assert isinstance(outcome[0], JobCancelledError) and "while waiting for the fake worker" in str(outcome[0])
    assert time.monotonic() - started < 2
    first_cancel.set()
    first.join(10)
    assert supervisor.crashes.snapshot() == {}


def test_cancel_while_waiting_for_memory(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor(memory=ScriptedGpus({"GPU-full": (24, 0)}), default_need_bytes=4 * GIB, memory_reserve_bytes=0)
    messages: List[str] = []
    cancel = threading.Event()
    thread, outcome = run_in_thread(lambda: supervisor.generate(fake_job(), progress=lambda f, m: messages.append(m), cancel=cancel))
    assert wait_until(lambda: any(m.startswith("waiting for memory: needs 4.00 GiB") for m in messages), 10)
    cancel.set()
    thread.join(5)
    assert isinstance(outcome[0], JobCancelledError) and "waiting for memory" in str(outcome[0])
    assert our_workers() == []


def test_cancel_while_loading(make_supervisor: SupervisorFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LOAD_S", "30")
    supervisor = make_supervisor(graceful_stop_s=0.5)
    messages: List[str] = []
    cancel = threading.Event()
    thread, outcome = run_in_thread(
        lambda: supervisor.generate(fake_job("slow-load"), progress=lambda f, m: messages.append(m), cancel=cancel)
    )
    assert wait_until(lambda: "loading slow-load" in messages and "reading weights" in messages, 20)  # loads report progress
    started = time.monotonic()
    cancel.set()
    thread.join(10)
    assert isinstance(outcome[0], JobCancelledError)
    assert time.monotonic() - started < 5
    assert supervisor.crashes.snapshot() == {}  # a cancel is no crash
    assert supervisor.generate(fake_job()).sample_rate == 16000


# 7. a progress callback that raises must not stop heartbeats (nor the job)
def test_raising_progress_callback_does_not_kill_the_worker(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor(heartbeat_timeout_s=1.5)
    calls: List[str] = []

    def broken(fraction: Optional[float], message: str) -> None:
        calls.append(message)
        raise RuntimeError("the progress bar went away")

    result = supervisor.generate(fake_job(sleep_s=4.0), progress=broken)
    assert result.sample_rate == 16000 and calls.count("sleeping") > 10
    assert [row["state"] for row in supervisor.status()] == ["ready"]


# 8. a Stop or an eviction is no crash; a death is counted once
def test_stop_of_a_busy_worker_is_not_a_crash(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor()
    thread, outcome = run_in_thread(lambda: supervisor.generate(fake_job(sleep_s=30)))
    assert wait_until(lambda: any(r["state"] == "busy" for r in supervisor.status()), 20)
    [row] = supervisor.status()
    assert supervisor.stop(row["name"])
    thread.join(10)
    assert isinstance(outcome[0], WorkerStoppedError) and "stopped on request" in str(outcome[0])
    assert supervisor.crashes.snapshot() == {} and supervisor.status() == []
    assert supervisor.generate(fake_job()).cold  # no cooldown: a fresh worker at once


def test_idle_death_is_counted_once(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor(monitor_interval_s=0.05)
    supervisor.generate(fake_job())
    [row] = supervisor.status()
    os.kill(row["pid"], signal.SIGKILL)
    assert wait_until(lambda: supervisor.table.live() == [], 5)
    time.sleep(0.3)  # several more monitor ticks
    assert supervisor.crashes.snapshot()[("fake", BOOT)].consecutive == 1


def test_eviction_is_not_a_crash(make_supervisor: SupervisorFactory, fake_spec: EnvSpec, piper_spec: EnvSpec) -> None:
    mib = 1 << 20
    supervisor = make_supervisor(ram_budget_bytes=620 * mib, memory_reserve_bytes=0, default_need_bytes=600 * mib)
    supervisor.generate(fake_job())
    piper = JobRequest(architecture="piper", character="joe", text="Hi.",
                       options={"length_scale": 1.0, "noise_scale": 0.667, "noise_w": 0.8, "sentence_silence_s": 0.0})
    supervisor.generate(piper)
    assert [row["architecture"] for row in supervisor.status()] == ["piper"]
    assert supervisor.crashes.snapshot() == {}


# 9. placement across GPUs: by availability and need, trying every device
def test_placement_uses_available_memory_once_and_the_models_need() -> None:
    gib = GIB
    ours = Resident("fake-1", 10 * gib, False, False, False, 1.0, 0.0)
    readings = [DeviceReading("GPU-a", 24 * gib, 14 * gib), DeviceReading("GPU-b", 16 * gib, 12 * gib)]
    # GPU-a: the driver's 14 GiB free already excludes our 10 GiB worker: 14 available, more than GPU-b's 12
    placement, _ = choose_device({"GPU-a": 8 * gib, "GPU-b": 8 * gib}, readings, {"GPU-a": [ours]}, 0)
    assert placement is not None and placement.device == "GPU-a"
    # a need that fits only GPU-b goes there, although GPU-a is listed first
    placement, _ = choose_device({"GPU-a": 15 * gib, "GPU-b": 11 * gib},
                                 [DeviceReading("GPU-a", 24 * gib, 14 * gib), DeviceReading("GPU-b", 16 * gib, 12 * gib)],
                                 {"GPU-a": [ours]}, 0)
    assert placement is not None and placement.device == "GPU-b"
    placement, why = choose_device({"GPU-a": 30 * gib, "GPU-b": 30 * gib}, readings, {"GPU-a": [ours]}, 0)
    assert placement is None and "GPU-a" in why and "GPU-b" in why
    placement, why = choose_device({"GPU-a": gib, "GPU-b": gib}, readings, {}, 0, min_total_bytes=20 * gib)
    assert placement is not None and placement.device == "GPU-a"  # GPU-b is too small for this architecture


def test_second_architecture_goes_to_the_gpu_with_room(make_supervisor: SupervisorFactory, fake_spec: EnvSpec,
                                                      piper_spec: EnvSpec) -> None:
    gpus = ScriptedGpus({"GPU-a": (24, 3), "GPU-b": (24, 20)})  # GPU-a is mostly taken by another program
    supervisor = make_supervisor(memory=gpus, default_need_bytes=8 * GIB, memory_reserve_bytes=0)
    supervisor.generate(fake_job())
    [row] = supervisor.status()
    assert row["device"] == "GPU-b"


def test_eviction_on_a_gpu_waits_for_the_driver_to_show_the_memory_back(
    make_supervisor: SupervisorFactory, fake_spec: EnvSpec, fake_python: Path
) -> None:
    gpus = ScriptedGpus({"GPU-a": (10, 10)}, worker_gib=6, release_lag_s=1.0)  # room for one 6 GiB worker
    supervisor = make_supervisor({"fake": fake_spec, "fake2": replace(fake_spec, name="fake2")}, memory=gpus,
                                 resolve_python=lambda spec, progress: fake_python, default_need_bytes=6 * GIB, memory_reserve_bytes=0)
    supervisor.generate(fake_job())
    assert gpus.read("GPU-a").free_bytes == 4 * GIB
    started = time.monotonic()
    supervisor.generate(replace(fake_job(), architecture="fake2"))
    [row] = supervisor.status()
    assert row["architecture"] == "fake2" and row["device"] == "GPU-a"
    assert supervisor.last_release_wait_s is not None and 0.7 < supervisor.last_release_wait_s < 3  # the driver's lag was waited out
    assert time.monotonic() - started > 0.7 and supervisor.crashes.snapshot() == {}


# 10. the group of a reaped leader is never signalled (its id may belong to a stranger by then)
def test_no_killpg_after_the_leader_was_reaped(make_supervisor: SupervisorFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    supervisor = make_supervisor()
    supervisor.generate(fake_job())
    [worker] = supervisor.table.live()
    process: WorkerProcess = worker.process
    handle = process.handle
    assert isinstance(handle, VenvHandle)  # the venv kind's process group
    sent_after_reap: List[int] = []
    real_killpg = os.killpg

    def watching_killpg(pgid: int, sig: int) -> None:
        if handle.popen.returncode is not None and pgid == handle.main_pid:
            sent_after_reap.append(sig)
        real_killpg(pgid, sig)

    monkeypatch.setattr(os, "killpg", watching_killpg)
    os.kill(handle.main_pid, signal.SIGKILL)
    assert process.wait_exit(5)  # reaped
    process.stop(0.1)
    process.kill()
    assert sent_after_reap == []


# 11. shutdown during a spawn: nothing starts after, nothing is left
def test_shutdown_during_a_spawn_leaves_nothing(make_supervisor: SupervisorFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_IMPORT_SLEEP_S", "3")
    supervisor = make_supervisor()
    thread, outcome = run_in_thread(lambda: supervisor.generate(fake_job()))
    assert wait_until(lambda: any(r["state"] == "starting" for r in supervisor.status()), 20)
    supervisor.shutdown()
    thread.join(15)
    assert isinstance(outcome[0], WorkerStoppedError)
    with pytest.raises(WorkerStoppedError, match="shutting down"):
        supervisor.generate(fake_job())
    assert wait_until(lambda: our_workers() == [], 5)
    assert not supervisor.table.record.path.exists() and not supervisor.private_dir.exists()


def test_a_failing_memory_reading_does_not_stop_keep_alive(make_supervisor: SupervisorFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    supervisor = make_supervisor(keep_alive_s=1.0, monitor_interval_s=0.1)
    supervisor.generate(fake_job())
    original = supervisor.devices.worker_bytes

    def flaky(device: str, handle: Any) -> Optional[int]:
        raise KeyError(device)  # what NVML did for "cpu" before

    monkeypatch.setattr(supervisor.devices, "worker_bytes", flaky)
    assert wait_until(lambda: supervisor.status() == [], 10)  # keep-alive still enforced
    monkeypatch.setattr(supervisor.devices, "worker_bytes", original)
