"""The monitor (issue 17, defect 14): it reads the worker table only under its lock, and never blocks on
one worker's slow unload or stop while another worker's death waits to be noticed. Real workers in the
fake architecture's real env; a slow unload is the fake adapter's ``FAKE_UNLOAD_S``, a slow stop a
frozen (SIGSTOPped) worker that neither answers the shutdown request nor handles SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from runtimes.environments import EnvSpec
from runtimes.states import WorkerState
from runtimes.supervisor import JobRequest, Supervisor
from runtimes.workers import CharacterSlot, ManagedWorker
from tests.conftest import SupervisorFactory, wait_until

TONE = (0.25 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)).astype(np.float32)


def job(architecture: str, character: str = "plain", character_path: str | None = None) -> JobRequest:
    return JobRequest(architecture=architecture, character=character, character_path=character_path, audio=TONE,
                      audio_sample_rate=16000)


def only_worker(supervisor: Supervisor, architecture: str) -> ManagedWorker:
    [worker] = supervisor.table.live(architecture)
    return worker


@pytest.fixture
def resume_frozen() -> Iterator[list[int]]:
    """Pids a test froze: let go at the end whatever happened (SIGCONT to a dead pid is harmless)."""
    frozen: list[int] = []
    yield frozen
    for pid in frozen:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("slow", ["unload", "stop"])
def test_a_slow_unload_or_stop_does_not_delay_noticing_another_workers_death(
    make_supervisor: SupervisorFactory, fake_spec: EnvSpec, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    resume_frozen: list[int], slow: str,
) -> None:
    if slow == "unload":
        monkeypatch.setenv("FAKE_UNLOAD_S", "8")  # each unload in a fake worker takes 8 s
    supervisor = make_supervisor({"fake": fake_spec, "fake2": replace(fake_spec, name="fake2")}, keep_alive_s=-1.0,
                                 monitor_interval_s=0.05)
    supervisor.generate(job("fake2"))  # the worker that will die, idle and kept forever
    other = only_worker(supervisor, "fake2")
    supervisor.set_keep_alive("fake", "plain", None, 0.5)  # expires half a second after its job
    if slow == "unload":
        kept = tmp_path / "kept"
        kept.mkdir()
        supervisor.generate(job("fake", "kept", str(kept)))  # kept forever: the worker stays, "plain" is unloaded
    supervisor.generate(job("fake", "plain"))
    slow_worker = only_worker(supervisor, "fake")
    if slow == "stop":  # frozen: the stop waits out the graceful timeout and SIGTERM before SIGKILL ends it
        os.kill(slow_worker.process.pid, signal.SIGSTOP)
        resume_frozen.append(slow_worker.process.pid)
        assert wait_until(lambda: slow_worker.state == WorkerState.STOPPING, 5, 0.01)
    else:
        assert wait_until(lambda: slow_worker.activity == "unloading plain", 5, 0.01)
    time.sleep(0.2)  # well into the slow part

    os.kill(other.process.pid, signal.SIGKILL)
    killed = time.monotonic()
    assert wait_until(lambda: other.stop_reason == "died while idle", 2.0, 0.01), (
        "the death was not noticed within 2 s (state %s)" % other.state.value)
    noticed_s = time.monotonic() - killed
    assert wait_until(lambda: other.state == WorkerState.BACKOFF, 2.0, 0.01)
    assert slow_worker.state in (WorkerState.BUSY, WorkerState.STOPPING)  # the slow part still runs beside
    assert noticed_s < 2.0
    if slow == "unload":  # and it completes: the character is unloaded, the worker kept with the other one
        assert wait_until(lambda: slow_worker.state == WorkerState.READY and list(slow_worker.characters) == [str(tmp_path / "kept")], 15)
    else:
        assert wait_until(lambda: slow_worker.state == WorkerState.STOPPED, 15)


def test_the_monitor_reads_a_workers_characters_under_the_table_lock(
    make_supervisor: SupervisorFactory, caplog: pytest.LogCaptureFixture,
) -> None:
    """Loads and unloads change ``worker.characters`` under the table's lock; the monitor reading it
    without the lock raised "OrderedDict mutated during iteration" (logged, and that tick's keep-alive
    and death checks of the worker skipped). Here a thread changes the characters as loads do, under
    the lock, while the monitor ticks every few milliseconds."""
    supervisor = make_supervisor(keep_alive_s=-1.0, monitor_interval_s=0.002)
    supervisor.generate(job("fake"))
    worker = only_worker(supervisor, "fake")
    with supervisor.table.lock:
        for index in range(3000):
            worker.characters["held-%d" % index] = CharacterSlot("held-%d" % index, "held %d" % index, 0, False, 0.0)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads interleave often, as on a busy machine
    stop = threading.Event()

    def load_and_unload() -> None:
        index = 0
        while not stop.is_set():
            with supervisor.table.lock:
                worker.characters["churn-%d" % index] = CharacterSlot("churn-%d" % index, "churn", 0, False, 0.0)
                worker.characters.pop("churn-%d" % (index - 1), None)
            index += 1

    caplog.set_level(logging.ERROR, logger="runtimes.supervisor")
    churn = threading.Thread(target=load_and_unload)
    try:
        churn.start()
        time.sleep(2.0)
    finally:
        stop.set()
        churn.join()
        sys.setswitchinterval(previous)
    failures = [record for record in caplog.records if "monitor" in record.getMessage()]
    assert failures == [], failures[0].exc_text if failures else ""
    assert worker.state == WorkerState.READY
