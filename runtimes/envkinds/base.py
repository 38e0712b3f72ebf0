"""The environment-kind seam: how an architecture's environment is built and how a worker runs in it.

An ``EnvironmentKind`` (``venv`` today; ``conda`` and ``container`` next) builds the environment a spec
describes (``build``: cached by the spec's hash, a new version built beside the working one and swapped
in only once complete; a failed update keeps the working one), says whether what is built matches the
spec (``is_current``), starts a worker in it (``launch``) and maps a host path to the path the worker
sees (``map_path``: identity for a venv; a container maps its mounts). ``launch`` returns a
``WorkerHandle``: everything the supervisor does to a running worker goes through it (its processes,
exit, stop signals, memory on the CPU, its output, and the record entry a restarted app reaps from).
The supervisor never branches on the kind: it picks the kind object by ``spec.kind`` from the registry
(``runtimes.envkinds.registry``) and calls these methods.

One module per kind beside this one (``venv.py``); ``tests/runtimes/test_envkinds.py`` runs the same
cases against every kind the registry names.
"""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, Iterator, List, Mapping, Optional, Sequence, TextIO

import psutil

from runtimes.envspec import EnvSpec, Progress
from runtimes.errors import EnvironmentBuildError


def no_progress(line: str) -> None:
    pass


def process_running(process: psutil.Process) -> bool:
    """Still running and not a zombie: what every kind's handle asks of the processes it noted."""
    try:
        return bool(process.is_running()) and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def run_logged(command: List[str], log_file: TextIO, progress: Progress, name: str, what: str = "",
               env: Optional[Mapping[str, str]] = None) -> None:
    """Run one build step: its output (stdout and stderr) to the build log and, line by line, to ``progress``;
    a non-zero exit is an ``EnvironmentBuildError`` naming ``what`` ran (default: the command)."""
    log_file.write("$ %s\n" % " ".join(command))
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                          env=dict(env) if env is not None else None) as process:
        assert process.stdout is not None
        for line in process.stdout:
            log_file.write(line)
            stripped = line.strip()
            if stripped:
                progress("[%s] %s" % (name, stripped))
        code = process.wait()
    log_file.flush()
    if code != 0:
        raise EnvironmentBuildError("%s exited with %d" % (what or command[0], code))


@dataclass(frozen=True)
class KindSettings:
    """Where every kind builds and logs: one set for all kinds, from the app's settings."""

    envs_dir: Path
    """Built environments (a venv's versions and the link to the current one)."""
    logs_dir: Path
    """Build logs (``env-<name>.log``)."""
    layer: str = "cpu"
    """Which requirement layer is installed: ``cpu`` or ``cuda``."""
    conda_executable: str = ""
    """The conda kind's tool (a path or a name on PATH); "" finds ``micromamba``, ``mamba`` or ``conda`` on PATH."""
    container_engine: str = "docker"
    """The container kind's engine command line: ``docker`` or ``podman`` (or a path to either)."""
    container_base_image: str = ""
    """The container kind's ``BASE`` build argument; "" keeps the Dockerfile's default (``python:<version>-slim``)."""
    container_run_args: str = ""
    """More arguments for every worker's ``run`` (shell-quoted), for what a host needs: e.g. podman on a host whose
    limits it cannot raise, ``--ulimit nofile=20000:20000 --ulimit nproc=32768:32768``."""
    instance: str = ""
    """Names this app's data folder in what a kind leaves outside it (container labels), so a restarted
    app finds what its predecessor left and nothing of another app's."""


@dataclass(frozen=True)
class Mount:
    """A host folder a worker needs (its code, its socket's folder, its character and asset folders). A kind
    that shares the host's files (a venv) needs nothing of it; one that does not (a container) makes exactly
    these visible to the worker, each at ``map_path(host_path)``, read-only unless ``writable``."""

    host_path: str
    writable: bool = False


@dataclass(frozen=True)
class BuiltEnv:
    """A built environment a worker can be launched in."""

    spec: EnvSpec
    kind: str
    """The registry name of the kind that built it (and launches in it)."""
    interpreter: str
    """The Python a worker runs, as the kind's ``launch`` names it (a venv: its ``bin/python`` on this host)."""
    location: str = ""
    """Where the build lives, as the kind knows it (a venv: its versioned folder); "" when not known."""
    spec_hash: str = ""
    """The hash of what it was built from; "" when not known (an interpreter a caller handed in)."""
    current: bool = True
    """False when an update failed and the earlier build was kept; ``note`` says why."""
    note: str = ""

    @classmethod
    def given(cls, spec: EnvSpec, interpreter: Path, note: str = "") -> BuiltEnv:
        """An environment a caller built (or chose) itself and hands over as its interpreter."""
        return cls(spec=spec, kind=spec.kind, interpreter=str(interpreter), current=not note, note=note)


class WorkerHandle(ABC):
    """A launched worker, as the supervisor sees it whatever the kind: all of its processes, its exit,
    stop signals, its memory on the CPU, its output, and what the reaper needs to find it later."""

    kind: ClassVar[str]

    @property
    @abstractmethod
    def main_pid(self) -> int:
        """The worker's main process on this host, as launched (status rows, logs; never signalled by callers)."""

    @abstractmethod
    def pids(self) -> List[int]:
        """Every process to watch: the main one first, then those it started that still run. Calling it
        also notes them, so ``terminate`` and ``kill`` reach them after the main process is gone."""

    @abstractmethod
    def poll(self) -> Optional[int]:
        """The main process's exit code once it has exited (and been reaped); None while it runs."""

    @abstractmethod
    def wait(self, timeout_s: float) -> Optional[int]:
        """Wait up to ``timeout_s`` for the main process to exit (reaping it); its exit code, or None."""

    @abstractmethod
    def wait_all(self, timeout_s: float) -> bool:
        """Wait (bounded) until the main process and every process noted with it are gone; True when they are."""

    @abstractmethod
    def terminate(self) -> None:
        """Ask every process of the worker to end (SIGTERM to the group and to each one noted)."""

    @abstractmethod
    def kill(self) -> None:
        """End every process of the worker now (SIGKILL)."""

    @abstractmethod
    def memory_bytes(self) -> Optional[int]:
        """Resident memory of its processes on the CPU (RSS summed); None where the kind cannot say."""

    @abstractmethod
    def output(self) -> Iterator[bytes]:
        """The worker's output (stdout and stderr together), line by line until it closes."""

    @abstractmethod
    def record_entry(self) -> Dict[str, Any]:
        """A JSON-able entry for the record of live workers: enough for ``EnvironmentKind.reap_leftover``
        in a later app to find this worker and to tell it from a stranger; carries ``kind``."""


class EnvironmentKind(ABC):
    """One way of building an environment and running a worker in it. Made once per app with the
    ``KindSettings``; a kind made without them can launch, map paths and reap, but not build."""

    name: ClassVar[str]
    shares_host_files: ClassVar[bool] = True
    """Whether the worker sees every host path the app does; when not, only what ``launch`` mounted."""

    def __init__(self, settings: Optional[KindSettings] = None) -> None:
        self.settings = settings

    def require_settings(self) -> KindSettings:
        if self.settings is None:
            raise EnvironmentBuildError("the %s environment kind was made without settings: it cannot build" % self.name)
        return self.settings

    @abstractmethod
    def build(self, spec: EnvSpec, progress: Progress = no_progress) -> BuiltEnv:
        """The spec's environment, built first when missing or out of date (progress line by line).
        A failed update keeps the working build (``current`` False, ``note`` says why, also told to
        ``progress``); a failed first build raises ``EnvironmentBuildError``."""

    @abstractmethod
    def is_current(self, spec: EnvSpec) -> bool:
        """Whether a complete build of the spec as it is now exists (nothing to build)."""

    @abstractmethod
    def launch(
        self, built: BuiltEnv, argv_tail: Sequence[str], env: Mapping[str, str], cwd: Path, stdin_data: bytes = b"",
        mounts: Sequence[Mount] = (),
    ) -> WorkerHandle:
        """Start ``built.interpreter`` with ``argv_tail`` in its own process group, with exactly ``env``
        (paths in it already mapped), in ``cwd`` (a host path, visible to the worker); ``stdin_data`` is written
        to its stdin, which is then closed. ``mounts``: the host folders the worker needs (a kind that shares
        the host's files ignores them). Raises ``OSError`` when it cannot start."""

    @abstractmethod
    def map_path(self, host_path: str) -> str:
        """The path under which the worker sees ``host_path`` (identity where it shares the host's files)."""

    def reap_strays(self) -> int:
        """End what an earlier app of this instance left that no record names (a kind that labels what it starts
        outside the app's process tree); how many were ended. Host processes need nothing: the record has them."""
        return 0

    @abstractmethod
    def reap_leftover(self, entry: Mapping[str, Any]) -> bool:
        """End what a dead app left running, as its ``record_entry`` describes it, if that is still the
        same worker (never a stranger that reuses an id); True when something was ended."""
