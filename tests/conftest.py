"""Shared fixtures: real environments, real supervisors, a real app server."""

from __future__ import annotations

import hashlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import psutil
import pytest

from runtimes.environments import EnvironmentBuilder, EnvSpec, load_spec
from runtimes.memory import DeviceReading, MemorySource, SystemRamSource
from runtimes.supervisor import Supervisor, SupervisorSettings

pytest.register_assert_rewrite("tests.contract")  # the adapter contract's asserts say what differed

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEST_SPECS = PROJECT_ROOT / "tests" / "envs"
GIB_BYTES = 1 << 30


def built_envs_dir() -> Path:
    return Path(os.environ.get("VOICEGEN_ENVS_DIR", PROJECT_ROOT / "data" / "envs"))


@pytest.fixture(scope="session")
def builder(tmp_path_factory: pytest.TempPathFactory) -> EnvironmentBuilder:
    return EnvironmentBuilder(built_envs_dir(), tmp_path_factory.mktemp("env-logs"), "cpu")


@pytest.fixture(scope="session")
def fake_spec() -> EnvSpec:
    return load_spec(TEST_SPECS / "fake")


@pytest.fixture(scope="session")
def piper_spec() -> EnvSpec:
    return load_spec(PROJECT_ROOT / "envs" / "piper")


@pytest.fixture(scope="session")
def fake_python(builder: EnvironmentBuilder, fake_spec: EnvSpec) -> Path:
    return builder.ensure(fake_spec)


@pytest.fixture(scope="session")
def piper_python(builder: EnvironmentBuilder, piper_spec: EnvSpec) -> Path:
    return builder.ensure(piper_spec)


def tiny_models(builder: EnvironmentBuilder, spec: EnvSpec, python: Path, script: Optional[Path] = None) -> Path:
    """Tiny random characters and shared assets of an architecture, built by ``script`` (default
    ``tests/builders/build_<arch>_character.py``) with the package's own classes in its env; cached on
    disk by the env's hash and the builder's code, so CI builds them once."""
    script = script or PROJECT_ROOT / "tests" / "builders" / ("build_%s_character.py" % spec.name)
    code = script.read_text() + (script.parent / "unsafe_pickle.py").read_text()
    digest = hashlib.sha256((builder.spec_hash(spec) + code).encode()).hexdigest()[:16]
    cache = built_envs_dir().parent / "test-models" / ("%s-%s" % (spec.name, digest))
    if not (cache / ".complete").exists():
        partial = cache.with_name(cache.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run([str(python), str(script), str(partial)], check=True, capture_output=True, timeout=600)
        (partial / ".complete").write_text("")
        shutil.rmtree(cache, ignore_errors=True)
        partial.rename(cache)
    return cache


@pytest.fixture(scope="session")
def sovits_spec() -> EnvSpec:
    return load_spec(PROJECT_ROOT / "envs" / "sovits")


@pytest.fixture(scope="session")
def sovits_python(builder: EnvironmentBuilder, sovits_spec: EnvSpec) -> Path:
    return builder.ensure(sovits_spec)


@pytest.fixture(scope="session")
def sovits_models(builder: EnvironmentBuilder, sovits_spec: EnvSpec, sovits_python: Path) -> Path:
    return tiny_models(builder, sovits_spec, sovits_python)


@pytest.fixture(scope="session")
def rvc_spec() -> EnvSpec:
    return load_spec(PROJECT_ROOT / "envs" / "rvc")


@pytest.fixture(scope="session")
def rvc_python(builder: EnvironmentBuilder, rvc_spec: EnvSpec) -> Path:
    return builder.ensure(rvc_spec)


@pytest.fixture(scope="session")
def rvc_models(builder: EnvironmentBuilder, rvc_spec: EnvSpec, rvc_python: Path) -> Path:
    return tiny_models(builder, rvc_spec, rvc_python)


SupervisorFactory = Callable[..., Supervisor]


@pytest.fixture
def make_supervisor(
    tmp_path: Path, builder: EnvironmentBuilder, fake_spec: EnvSpec, piper_spec: EnvSpec, fake_python: Path
) -> Iterator[SupervisorFactory]:
    made: List[Supervisor] = []

    def make(
        specs: Optional[Dict[str, EnvSpec]] = None,
        memory: Optional[MemorySource] = None,
        resolve_python: Optional[Callable[[EnvSpec, Any], Path]] = None,
        kind: str = "venv",
        **overrides: float,
    ) -> Supervisor:
        """``kind``: the environment kind every spec is switched to (the kind builds; ``tests.env_kinds`` skips a
        container kind where no engine runs)."""
        settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path / "run", **overrides)  # type: ignore[arg-type]
        chosen = specs if specs is not None else {"fake": fake_spec, "piper": piper_spec}
        kinds = None
        if kind != "venv":
            from runtimes.envkinds.registry import EnvironmentKinds
            from tests.env_kinds import kind_settings

            chosen = {name: replace(spec, kind=kind) for name, spec in chosen.items()}
            kinds = EnvironmentKinds(kind_settings(kind, builder.envs_dir, builder.logs_dir, builder.layer))
        elif resolve_python is None:
            resolve_python = lambda spec, progress: builder.ensure(spec)  # noqa: E731
        supervisor = Supervisor(
            settings,
            chosen,
            resolve_python,
            memory=memory or SystemRamSource(),  # no GPU unless a test scripts one: holds on GPU machines too
            kinds=kinds,
        )
        made.append(supervisor)
        return supervisor

    yield make
    for supervisor in made:
        supervisor.shutdown()


class ScriptedGpus:
    """Stands in for NVML, which cannot exist on this machine: GPUs with scripted total and free
    memory (``free`` per device: a number, or a list replayed one reading at a time, the last
    repeating). With ``worker_gib``, each live worker process started with ``CUDA_VISIBLE_DEVICES``
    naming a device holds that much of it, and gives it back ``release_lag_s`` after it exits, as
    drivers do. The supervisor's real GPU code paths run against it."""

    kind = "nvml"
    note = "scripted GPUs"

    def __init__(self, devices: Dict[str, Tuple[float, Any]], per_process_bytes: Optional[Dict[int, int]] = None,
                 worker_gib: float = 0.0, release_lag_s: float = 0.0) -> None:
        self.total_gib = {name: float(total) for name, (total, _) in devices.items()}
        self.free_gib = {name: list(free) if isinstance(free, (list, tuple)) else [float(free)] for name, (_, free) in devices.items()}
        self.reads: Dict[str, int] = dict.fromkeys(devices, 0)
        self.per_process_bytes = per_process_bytes
        self.worker_gib = worker_gib
        self.release_lag_s = release_lag_s
        self._workers: Dict[int, List[Any]] = {}  # pid -> [device, when it was first seen gone]

    def devices(self) -> List[str]:
        return list(self.total_gib)

    def _held_gib(self, device: str) -> float:
        if not self.worker_gib:
            return 0.0
        for child in psutil.Process().children(recursive=True):
            try:
                if child.pid not in self._workers and "runtimes.worker" in " ".join(child.cmdline()):
                    self._workers[child.pid] = [child.environ().get("CUDA_VISIBLE_DEVICES"), None]
            except psutil.Error:
                continue
        now = time.monotonic()
        held = 0.0
        for pid, entry in self._workers.items():
            if entry[0] != device:
                continue
            try:
                alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                alive = False
            if not alive and entry[1] is None:
                entry[1] = now
            if alive or now - entry[1] < self.release_lag_s:
                held += self.worker_gib
        return held

    def read(self, device: str) -> DeviceReading:
        sequence = self.free_gib[device]
        free = sequence[min(self.reads[device], len(sequence) - 1)] - self._held_gib(device)
        self.reads[device] += 1
        return DeviceReading(device, int(self.total_gib[device] * GIB_BYTES), int(max(free, 0.0) * GIB_BYTES), self.per_process_bytes)

    def process_bytes(self, device: str, pids: Any) -> Optional[int]:
        reading = self.read(device)  # as NVML does: an unknown device is a KeyError
        if reading.per_process_bytes is None:
            return None
        return sum(reading.per_process_bytes.get(pid, 0) for pid in pids)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class AppServer:
    url: str
    process: subprocess.Popen[str]
    data_dir: Path
    lines: queue.Queue[str]
    log: List[str]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_app(
    data_dir: Path, extra_args: Optional[List[str]] = None, timeout_s: float = 180.0, extra_env: Optional[Dict[str, str]] = None
) -> AppServer:
    """Start the app the way the launcher does (``python -m app serve``) and wait for its ready line."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        VOICEGEN_ENVS_DIR=str(built_envs_dir()),
        VOICEGEN_EXTRA_SPEC_DIRS=str(TEST_SPECS),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra_env or {})
    command = [sys.executable, "-m", "app", "serve", "--no-browser", "--port", str(port), "--data-dir", str(data_dir)]
    process = subprocess.Popen(
        command + (extra_args or []),
        cwd=str(PROJECT_ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    log: List[str] = []

    def pump() -> None:
        assert process.stdout is not None
        with process.stdout:  # closed at EOF, when the app is gone
            for line in process.stdout:
                log.append(line.rstrip())
                lines.put(line.rstrip())

    threading.Thread(target=pump, daemon=True).start()
    server = AppServer("http://127.0.0.1:%d/" % port, process, data_dir, lines, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                raise RuntimeError("the app exited early:\n" + "\n".join(log[-30:])) from None
            continue
        if line.strip() == "Ready.":
            return server
    server.stop()
    raise RuntimeError("the app did not become ready in %.0f s:\n%s" % (timeout_s, "\n".join(log[-30:])))


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    server = start_app(tmp_path_factory.mktemp("app-data"))
    yield server
    server.stop()


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


def words(text: str) -> int:
    return len(re.findall(r"[A-Za-z']+", text))
