"""The supervisor driven through real worker subprocesses in a real venv, with injected faults; the faults
marked with ``env_kind`` run in every environment kind (venv, conda through the stand-in tool, container)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import psutil
import pytest

from runtimes.environments import EnvSpec
from runtimes.errors import (
    ArchitectureUnavailableError,
    BadRequestError,
    JobCancelledError,
    JobTimeoutError,
    RemoteError,
    WorkerBootError,
    WorkerCrashedError,
)
from runtimes.supervisor import JobRequest
from tests.conftest import SupervisorFactory, wait_until

PIPER_OPTIONS = {"length_scale": 1.0, "noise_scale": 0.667, "noise_w": 0.8, "sentence_silence_s": 0.0}
TONE = (0.25 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)


def fake_job(**options: object) -> JobRequest:
    return JobRequest(architecture="fake", character="plain", audio=TONE, audio_sample_rate=16000, options=dict(options))


ENV_KINDS = ["venv", "conda", pytest.param("container", marks=pytest.mark.container)]
each_kind = pytest.mark.parametrize("env_kind", ENV_KINDS)


def worker_process_pid(supervisor: object) -> int:
    """The worker's own Python process on this host: the launched process for a venv, the one inside the
    container (not the engine's client) for a container."""
    [worker] = supervisor.table.live()  # type: ignore[attr-defined]
    for pid in worker.process.handle.pids():
        try:
            command = psutil.Process(pid).cmdline()
        except psutil.Error:
            continue
        if command and "python" in Path(command[0]).name and "runtimes.worker" in command:
            return int(pid)
    raise AssertionError("no worker process among %s" % worker.process.handle.pids())


def worker_pids(supervisor: object) -> List[int]:
    return [row["pid"] for row in supervisor.status()]  # type: ignore[attr-defined]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_job_runs_and_worker_stays_warm(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor()
    first = supervisor.generate(fake_job(gain=2.0))
    np.testing.assert_allclose(first.audio, TONE * 2.0, rtol=1e-6)
    assert first.sample_rate == 16000 and first.cold
    pid = worker_pids(supervisor)[0]
    second = supervisor.generate(fake_job(gain=0.5))
    np.testing.assert_allclose(second.audio, TONE * 0.5, rtol=1e-6)
    assert not second.cold and worker_pids(supervisor) == [pid]
    assert supervisor.status()[0]["state"] == "ready"


@each_kind
def test_crash_mid_job_fails_clearly_and_next_job_gets_a_fresh_worker(make_supervisor: SupervisorFactory, env_kind: str) -> None:
    supervisor = make_supervisor(kind=env_kind)
    supervisor.generate(fake_job())
    old_pid = worker_pids(supervisor)[0]
    with pytest.raises(WorkerCrashedError, match="died while generating .*exited with code 17"):
        supervisor.generate(fake_job(mode="crash"))
    assert supervisor.status() == [] and gone(old_pid)
    again = supervisor.generate(fake_job())
    assert again.cold and worker_pids(supervisor)[0] != old_pid


@each_kind
def test_sigkill_of_busy_worker_fails_the_job_and_next_succeeds(make_supervisor: SupervisorFactory, env_kind: str) -> None:
    supervisor = make_supervisor(kind=env_kind)
    supervisor.generate(fake_job())
    pid = worker_process_pid(supervisor)
    killer = threading.Timer(0.5, lambda: os.kill(pid, signal.SIGKILL))
    killer.start()
    with pytest.raises(WorkerCrashedError, match="SIGKILL"):
        supervisor.generate(fake_job(sleep_s=20))
    assert supervisor.generate(fake_job()).audio.size == TONE.size


@each_kind
def test_sigkill_while_loading(make_supervisor: SupervisorFactory, monkeypatch: pytest.MonkeyPatch, env_kind: str) -> None:
    monkeypatch.setenv("FAKE_LOAD_S", "20")
    supervisor = make_supervisor(kind=env_kind)
    pids: List[int] = []

    def kill_when_loading() -> None:
        if wait_until(lambda: any(r["state"] == "loading" for r in supervisor.status()), 30):
            pids.append(worker_process_pid(supervisor))
            os.kill(pids[0], signal.SIGKILL)

    threading.Thread(target=kill_when_loading).start()
    with pytest.raises(WorkerCrashedError, match="while loading"):
        supervisor.generate(replace(fake_job(), character="slow-load"))
    assert pids and wait_until(lambda: gone(pids[0]), 5)
    assert supervisor.generate(fake_job()).sample_rate == 16000


@each_kind
def test_boot_failure_reports_the_workers_stderr(make_supervisor: SupervisorFactory, fake_spec: EnvSpec, env_kind: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if env_kind == "venv":  # an adapter the env cannot import
        broken = replace(fake_spec, adapter="tests.fakes.missing_module:Adapter")
    else:  # the same failure from inside the adapter's import (another adapter line would be another env build)
        broken = fake_spec
        monkeypatch.setenv("FAKE_MISSING_MODULE", "tests.fakes.missing_module")
    supervisor = make_supervisor({"fake": broken}, kind=env_kind)
    with pytest.raises(WorkerBootError, match="(?s)failed to boot.*ModuleNotFoundError.*missing_module"):
        supervisor.generate(fake_job())
    [row] = supervisor.status()
    assert row["state"] == "failed" and "ModuleNotFoundError" in row["last_error"] and row["pid"] is None
    started = time.monotonic()
    with pytest.raises(ArchitectureUnavailableError, match="(?s)stopped after failing.*ModuleNotFoundError"):
        supervisor.generate(fake_job())  # no restart loop: refused at once, no new process
    assert time.monotonic() - started < 0.5
    supervisor.specs["fake"] = replace(fake_spec, kind=env_kind)  # the person fixes the environment, then presses Retry
    monkeypatch.delenv("FAKE_MISSING_MODULE", raising=False)
    supervisor.prewarm("fake", "plain")
    assert supervisor.generate(fake_job()).sample_rate == 16000


def test_load_failure_is_a_clear_error_and_keeps_the_worker_for_other_characters(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor()
    with pytest.raises(RemoteError, match="weights file is corrupt"):
        supervisor.generate(replace(fake_job(), character="broken-load"))
    [row] = supervisor.status()
    assert row["state"] == "ready" and row["characters"] == []
    assert not supervisor.generate(fake_job()).timings_s.get("spawn_s")  # the same process serves the next character


def test_bad_request_keeps_the_worker(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor()
    supervisor.generate(fake_job())
    pid = worker_pids(supervisor)[0]
    with pytest.raises(BadRequestError, match="refused on purpose"):
        supervisor.generate(fake_job(mode="bad_request"))
    assert worker_pids(supervisor) == [pid]
    assert supervisor.generate(fake_job()).sample_rate == 16000


@each_kind
def test_hung_job_is_killed_after_the_job_timeout(make_supervisor: SupervisorFactory, env_kind: str) -> None:
    supervisor = make_supervisor(kind=env_kind, job_timeout_s=2.0)
    supervisor.generate(fake_job())
    pid = worker_pids(supervisor)[0]
    started = time.monotonic()
    with pytest.raises(JobTimeoutError, match="2 s limit"):
        supervisor.generate(fake_job(mode="hang"))
    assert time.monotonic() - started < 10
    assert wait_until(lambda: gone(pid), 5)
    assert supervisor.generate(fake_job()).sample_rate == 16000


def test_job_without_progress_is_killed(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor(progress_stall_s=1.5)
    with pytest.raises(JobTimeoutError, match="no progress"):
        supervisor.generate(fake_job(mode="hang"))
    assert supervisor.status() == []


@each_kind
def test_cancel_stops_a_cooperative_job_and_keeps_the_worker(make_supervisor: SupervisorFactory, env_kind: str) -> None:
    supervisor = make_supervisor(kind=env_kind)
    supervisor.generate(fake_job())
    pid = worker_pids(supervisor)[0]
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(JobCancelledError):
        supervisor.generate(fake_job(sleep_s=30), cancel=cancel)
    assert time.monotonic() - started < 5
    assert worker_pids(supervisor) == [pid]


def test_worker_child_dies_with_the_worker(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor()
    messages: List[str] = []
    supervisor.generate(fake_job(mode="spawn_child"), progress=lambda fraction, message: messages.append(message))
    child_pid = int(next(m for m in messages if m.startswith("child")).split()[1])
    assert psutil.pid_exists(child_pid)
    supervisor.shutdown()
    assert wait_until(lambda: gone(child_pid), 5)


def test_keep_alive_zero_stops_worker_after_the_job(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor(keep_alive_s=0.0)
    supervisor.generate(fake_job())
    assert supervisor.status() == []


@each_kind
def test_idle_worker_is_evicted_after_keep_alive(make_supervisor: SupervisorFactory, env_kind: str) -> None:
    supervisor = make_supervisor(kind=env_kind, keep_alive_s=1.0, monitor_interval_s=0.1)
    supervisor.generate(fake_job())
    pid = worker_pids(supervisor)[0]
    assert wait_until(lambda: supervisor.status() == [], 10)
    assert gone(pid)


def test_restarted_app_reaps_workers_a_dead_app_left(make_supervisor: SupervisorFactory, tmp_path: Path) -> None:
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    dead_owner = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_owner.wait()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    record = [{"pid": leftover.pid, "create_time": psutil.Process(leftover.pid).create_time(), "owner": dead_owner.pid}]
    (run_dir / ("workers-%d.json" % dead_owner.pid)).write_text(json.dumps(record))
    make_supervisor()
    assert leftover.wait(5) == -signal.SIGKILL
    assert not (run_dir / ("workers-%d.json" % dead_owner.pid)).exists()


def test_parallel_jobs_on_two_characters_share_one_worker(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor()
    errors: List[Optional[BaseException]] = []

    def run(character: str) -> None:
        try:
            supervisor.generate(replace(fake_job(), character=character))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("plain", "slow-load", "plain", "slow-load")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    [row] = supervisor.status()
    assert sorted(row["characters"]) == ["plain", "slow-load"]


def test_crashes_in_a_row_back_off_then_stop_restarting(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor(crash_backoff_base_s=1.0, crash_retry_limit=2)
    spawned: List[int] = []
    with pytest.raises(WorkerCrashedError):
        supervisor.generate(fake_job(mode="crash"))
    with pytest.raises(WorkerCrashedError):  # the first crash restarts at once
        supervisor.generate(fake_job(mode="crash"), progress=lambda f, m: spawned.append(1) if m.startswith("starting") else None)
    assert spawned == [1]
    with pytest.raises(ArchitectureUnavailableError, match=r"failed 2 time\(s\) in a row.*retry after") as caught:
        supervisor.generate(fake_job())
    assert caught.value.retry_after_s is not None and 0.5 < caught.value.retry_after_s <= 1.3
    assert [row["state"] for row in supervisor.status()] == ["backoff"]
    assert wait_until(lambda: supervisor.status() == [], 3)
    with pytest.raises(WorkerCrashedError):
        supervisor.generate(fake_job(mode="crash"))  # third in a row: over the limit
    with pytest.raises(ArchitectureUnavailableError, match="failed 3 times in a row"):
        supervisor.generate(fake_job())
    supervisor.prewarm("fake", "plain")  # Retry from the panel clears it
    assert supervisor.generate(fake_job()).sample_rate == 16000


def test_deterministic_load_failure_does_not_storm(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor(crash_backoff_base_s=5.0)
    attempts = 0
    refused = 0
    for _ in range(10):
        try:
            supervisor.generate(replace(fake_job(), character="broken-load"))
        except RemoteError:
            attempts += 1
        except ArchitectureUnavailableError:
            refused += 1
    assert attempts == 2 and refused == 8  # two loads, then a cooldown refuses fast


def test_crash_after_n_jobs(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor()
    for _ in range(2):
        supervisor.generate(fake_job(crash_after_jobs=2))
    with pytest.raises(WorkerCrashedError, match="exited with code 17"):
        supervisor.generate(fake_job(crash_after_jobs=2))
    assert supervisor.generate(fake_job(crash_after_jobs=2)).cold


def test_ram_budget_forces_eviction_between_architectures(make_supervisor: SupervisorFactory) -> None:
    """A budget that fits one worker at a time: loading the second evicts the idle first."""
    mib = 1 << 20
    # the fake worker measures ~35 MiB; piper is estimated at 600 MiB before its first run: 635 > 620
    supervisor = make_supervisor(ram_budget_bytes=620 * mib, memory_reserve_bytes=0, default_need_bytes=600 * mib)
    supervisor.generate(fake_job())
    first = worker_pids(supervisor)[0]
    piper = JobRequest(architecture="piper", character="joe", text="Hello there.", options=PIPER_OPTIONS)
    result = supervisor.generate(piper)
    assert result.sample_rate == 22050
    assert [row["architecture"] for row in supervisor.status()] == ["piper"]
    assert wait_until(lambda: gone(first), 5)
    base, voice = supervisor.ledger.get("piper", "cpu"), supervisor.ledger.get("piper/joe", "cpu")
    assert base is not None and voice is not None and base + voice > 50 * mib  # measured, and kept for the next start


def test_pinned_worker_is_never_evicted(make_supervisor: SupervisorFactory) -> None:
    mib = 1 << 20
    supervisor = make_supervisor(
        ram_budget_bytes=620 * mib, memory_reserve_bytes=0, default_need_bytes=600 * mib, admission_timeout_s=1.0, keep_alive_s=0.5
    )
    supervisor.pin("fake", "plain")  # a builtin character: no folder path
    supervisor.generate(fake_job())
    pid = worker_pids(supervisor)[0]
    piper = JobRequest(architecture="piper", character="joe", text="Hello.", options=PIPER_OPTIONS)
    with pytest.raises(ArchitectureUnavailableError, match="not enough memory to load piper/joe.*pinned"):
        supervisor.generate(piper)
    time.sleep(1.0)  # longer than keep-alive: a pinned worker stays anyway
    assert worker_pids(supervisor) == [pid]


def test_fifty_parallel_characters_load_into_one_worker(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor(default_need_bytes=32 << 20, max_characters_per_worker=64)
    errors: List[BaseException] = []

    def run(index: int) -> None:
        try:
            supervisor.prewarm("fake", "plain", character_path="/nonexistent/character-%d" % index)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    [row] = supervisor.status()
    assert len(row["characters"]) == 50
    supervisor.shutdown()
    assert list(supervisor.private_dir.parent.glob(supervisor.private_dir.name)) == []


@each_kind
def test_memory_hog_is_measured_and_remembered(make_supervisor: SupervisorFactory, env_kind: str) -> None:
    supervisor = make_supervisor(kind=env_kind)
    supervisor.generate(fake_job(mode="hog", hog_mb=300))
    [row] = supervisor.status()
    assert row["measured_peak_mb"] > 300
    assert row["memory_mb"] > 300 and row["loaded"][0]["memory_mb"] > 250  # the character that used it accounts for it
    peak = supervisor.ledger.get("fake/plain", "cpu")
    assert peak is not None and peak > 250 << 20


def test_frozen_worker_is_detected_by_missing_heartbeats(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor(heartbeat_timeout_s=1.5)
    supervisor.generate(fake_job())
    pid = worker_pids(supervisor)[0]
    threading.Timer(0.5, lambda: os.kill(pid, signal.SIGSTOP)).start()
    started = time.monotonic()
    with pytest.raises(JobTimeoutError, match="stopped answering"):
        supervisor.generate(fake_job(sleep_s=30))
    assert time.monotonic() - started < 10
    assert wait_until(lambda: gone(pid), 5)


def test_stale_socket_directories_of_dead_apps_are_removed(make_supervisor: SupervisorFactory) -> None:
    import tempfile

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = Path(tempfile.mkdtemp(prefix="voicegen-%d-" % dead.pid))
    (stale / "piper-1.sock").write_text("")
    supervisor = make_supervisor()
    assert not stale.exists()
    assert supervisor.private_dir.exists() and oct(supervisor.private_dir.stat().st_mode & 0o777) == "0o700"


def test_worker_runs_under_python_3_9(make_supervisor: SupervisorFactory, fake_spec: EnvSpec, builder: object, tmp_path: Path) -> None:
    """The scaffold runs in any env from Python 3.9: a real 3.9 venv talks to this app's Python."""
    from runtimes.environments import EnvironmentBuilder, find_interpreter, load_spec

    if find_interpreter("3.9") is None:
        pytest.skip("no Python 3.9 interpreter on this machine")
    folder = tmp_path / "fake39"
    folder.mkdir()
    (folder / "spec.toml").write_text((fake_spec.folder / "spec.toml").read_text().replace('python = "3.11"', 'python = "3.9"')
                                    .replace('name = "fake"', 'name = "fake39"'))
    (folder / "requirements.txt").write_text((fake_spec.folder / "requirements.txt").read_text())
    spec39 = load_spec(folder)
    assert isinstance(builder, EnvironmentBuilder)
    builder.ensure(spec39)
    supervisor = make_supervisor({"fake": spec39})
    result = supervisor.generate(fake_job(gain=3.0))
    np.testing.assert_allclose(result.audio, TONE * 3.0, rtol=1e-6)
    status = supervisor.status()[0]
    assert status["state"] == "ready"
    [worker] = supervisor.table.live()
    assert worker.process.hello["python"].startswith("3.9.")


def test_worker_dying_mid_frame_is_a_clean_error(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor()
    started = time.monotonic()
    with pytest.raises(WorkerCrashedError, match="died while generating"):
        supervisor.generate(fake_job(mode="die_mid_frame"))
    assert time.monotonic() - started < 15
    assert supervisor.generate(fake_job()).sample_rate == 16000


# the worker model: one worker per architecture, shared assets once, many characters
def report(supervisor: object, character: str, path: Optional[str] = None) -> List[int]:
    """(times the worker loaded its shared assets, times it loaded this character, characters it loaded)."""
    request = replace(fake_job(mode="report"), character=character, character_path=path)
    return [int(x) for x in supervisor.generate(request).audio]  # type: ignore[attr-defined]


def test_characters_share_one_worker_and_its_shared_assets(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor()
    assert report(supervisor, "plain") == [1, 1, 1]
    assert report(supervisor, "slow-load") == [1, 1, 2]  # a second character: no second process, no second shared load
    assert report(supervisor, "plain") == [1, 1, 2]  # still loaded: not loaded again
    [row] = supervisor.status()
    assert row["characters"] == ["slow-load", "plain"]  # least recently used first
    assert [c["id"] for c in row["loaded"]] == row["characters"] and all(c["load_s"] >= 0 for c in row["loaded"])


def test_a_worker_holds_a_bounded_number_of_characters_least_recently_used_out(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor(max_characters_per_worker=2)
    for name in ("c1", "c2", "c1", "c3"):
        report(supervisor, name, "/characters/%s" % name)
    [row] = supervisor.status()
    assert row["characters"] == ["c1", "c3"]  # c2 was the least recently used
    supervisor.pin("fake", "c1", "/characters/c1")
    report(supervisor, "c4", "/characters/c4")
    assert supervisor.status()[0]["characters"] == ["c1", "c4"]  # pinned c1 stays
    assert report(supervisor, "c2", "/characters/c2")[1] == 2  # reloaded after its unload


def test_memory_evicts_an_idle_character_before_its_worker(make_supervisor: SupervisorFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CHARACTER_MB", "150")
    mib = 1 << 20
    probe = make_supervisor()
    report(probe, "c1", "/characters/c1")
    base = probe.ledger.get("fake", "cpu")
    character = probe.ledger.get("fake//characters/c1", "cpu")
    assert base and character and character > 140 * mib  # measured: the load's growth of the worker
    probe.shutdown()
    # room for the worker and two such characters, not three; the ledger (shared run dir) knows c3's size
    supervisor = make_supervisor(ram_budget_bytes=base + int(2.5 * character), memory_reserve_bytes=0)
    supervisor.ledger.record("fake//characters/c3", "cpu", character)
    report(supervisor, "c1", "/characters/c1")
    report(supervisor, "c2", "/characters/c2")
    pid = worker_pids(supervisor)[0]
    report(supervisor, "c3", "/characters/c3")
    [row] = supervisor.status()
    assert row["pid"] == pid and row["characters"] == ["c2", "c3"]  # c1 unloaded, the worker kept


def test_status_reports_activity_and_the_line(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor()
    cancel = threading.Event()
    first = threading.Thread(target=lambda: supervisor.generate(fake_job(sleep_s=1.0)))
    first.start()
    assert wait_until(lambda: any(r["state"] == "busy" for r in supervisor.status()), 20)
    second = threading.Thread(target=lambda: supervisor.generate(fake_job(), cancel=cancel))
    second.start()
    assert wait_until(lambda: supervisor.status()[0]["jobs_in_line"] == 2, 5)
    assert supervisor.status()[0]["activity"] == "fake/plain"
    first.join(10)
    second.join(10)
    assert supervisor.status()[0]["jobs_in_line"] == 0 and supervisor.status()[0]["state"] == "ready"


def test_piper_reports_sentences_done_of_the_total(make_supervisor: SupervisorFactory) -> None:
    supervisor = make_supervisor()
    updates: List[Tuple[Optional[float], str]] = []
    supervisor.generate(JobRequest(architecture="piper", character="joe", text="One. Two words. And a third sentence.",
                                   options=PIPER_OPTIONS), progress=lambda fraction, message: updates.append((fraction, message)))
    spoken = [(fraction, message) for fraction, message in updates if message.startswith("spoke sentence")]
    assert [message for _, message in spoken] == ["spoke sentence %d of 3" % n for n in (1, 2, 3)]
    assert [round(fraction or 0, 2) for fraction, _ in spoken] == [0.33, 0.67, 1.0]
