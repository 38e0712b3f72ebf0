"""The ``venv`` environment kind: a virtual environment per architecture, and its workers as host
processes in their own process group.

Versions side by side: each build goes to its own folder ``<envs>/<name>-<hash>/`` (a venv cannot be
moved: its scripts and ``pyvenv.cfg`` name its own path), and ``<envs>/<name>`` is a symbolic link to
the current one, replaced atomically (``os.replace``) once a new build is complete. A rebuild that fails
(offline, a requirement that cannot install) leaves the working environment where it was and says so;
workers get the versioned path, so a running one keeps its files; an old version is removed once no
process runs from it (at the swap, or at a later ``ensure``). One build per name at a time, across
processes (a lock file beside the versions). An ``<envs>/<name>`` folder made before versions existed
is used as it is until its first rebuild. A build streams its output to a log file and to a progress
callback; a failed or interrupted build leaves no half environment behind (the completion marker is
written last).

A worker runs the env's own interpreter directly (no shell) in a session of its own, so its process
group can be signalled whole; its descendants are noted by ``psutil`` identity while it lives, so they
are reached after it is gone too. The group is signalled only while its leader is unreaped: after that
the id may be a stranger's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, ClassVar, Dict, Iterator, List, Mapping, Optional, Sequence, Set, TextIO, Tuple, Type

import psutil

from runtimes.envkinds.base import (
    BuiltEnv,
    EnvironmentKind,
    KindSettings,
    Mount,
    WorkerHandle,
    no_progress,
    process_running,
    run_logged,
)
from runtimes.envspec import (
    EnvSpec,
    Progress,
    failing_package,
    find_interpreter,
    find_uv,
    pip_find_links,
    update_failed_note,
)
from runtimes.errors import EnvironmentBuildError

logger = logging.getLogger(__name__)

BUILDER_VERSION = "1"
MARKER_NAME = ".voicegen-env.json"
VERSION_HASH_CHARS = 12
POINTER_FILE_SUFFIX = ".current"
MEMBERS_MAX_AGE_S = 2.0
"""How old a list of a worker's child processes may be for a memory reading."""
"""Where symbolic links cannot be made (Windows without the right): ``<name>.current`` names the version."""


def env_python(env_dir: Path) -> Path:
    if os.name == "nt":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def built_from(env_dir: Path) -> Optional[str]:
    """The spec hash a complete environment was built from (its marker, written last); None if incomplete."""
    try:
        return str(json.loads((env_dir / MARKER_NAME).read_text())["spec_hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def folders_in_use(folders: List[Path]) -> Set[Path]:
    """Those of ``folders`` that a running process was started from (its interpreter lies inside)."""
    prefixes = {folder: tuple({str(folder) + os.sep, str(folder.resolve()) + os.sep}) for folder in folders}
    used: Set[Path] = set()
    for process in psutil.process_iter(["cmdline"]):
        command = process.info.get("cmdline") or []
        if command:
            used.update(folder for folder, starts in prefixes.items() if command[0].startswith(starts))
    return used



class VenvBuilder:
    """Builds (or reuses) the venv of each architecture under ``envs_dir`` (``runtimes.environments.EnvironmentBuilder``)."""

    def __init__(self, envs_dir: Path, logs_dir: Path, layer: str) -> None:
        self.envs_dir = envs_dir
        self.logs_dir = logs_dir
        self.layer = layer

    def spec_hash(self, spec: EnvSpec) -> str:
        digest = hashlib.sha256()
        digest.update(("%s|%s|%s|%s|%s" % (BUILDER_VERSION, spec.kind, spec.python, spec.adapter, self.layer)).encode())
        for path in [spec.folder / "spec.toml", *spec.requirement_files(self.layer), *filter(None, [spec.no_deps_file()])]:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()

    def python_in(self, env_dir: Path) -> Path:
        """The interpreter a built environment's workers run (a kind with another layout overrides it)."""
        return env_python(env_dir)

    def folder_of(self, python: Path) -> Path:
        """The environment folder ``python_in`` found ``python`` in."""
        return python.parent.parent

    @staticmethod
    def blame(log_text: str) -> Optional[str]:
        """The package a failed build's log blames (a kind whose tool words it otherwise overrides it)."""
        return failing_package(log_text)

    def env_dir(self, spec: EnvSpec) -> Path:
        """Where the architecture's environment is found: a link to its current version."""
        return self.envs_dir / spec.name

    def version_dir(self, spec: EnvSpec) -> Path:
        """The folder a build from the spec as it is now goes to (and stays in)."""
        return self.envs_dir / ("%s-%s" % (spec.name, self.spec_hash(spec)[:VERSION_HASH_CHARS]))

    def current_dir(self, spec: EnvSpec) -> Optional[Path]:
        """The complete environment in use (its real folder), whatever it was built from; None if none."""
        pointer = self.env_dir(spec)
        if pointer.is_symlink():
            target: Optional[Path] = self.envs_dir / os.readlink(pointer)
        elif pointer.is_dir():  # built before versions: the folder itself
            target = pointer
        else:
            try:
                target = self.envs_dir / pointer.with_name(pointer.name + POINTER_FILE_SUFFIX).read_text(encoding="utf-8").strip()
            except OSError:
                target = None
        if target is None or built_from(target) is None or not self.python_in(target).exists():
            return None
        return target

    def is_ready(self, spec: EnvSpec) -> bool:
        current = self.current_dir(spec)
        return current is not None and built_from(current) == self.spec_hash(spec)

    def ensure(self, spec: EnvSpec, progress: Progress = lambda line: None) -> Path:
        """The env's interpreter, building the env first when it is missing or out of date. A failed
        rebuild raises ``EnvironmentBuildError`` with ``kept_python``: the working env stays in use."""
        wanted = self.spec_hash(spec)
        current = self.current_dir(spec)
        if current is not None and built_from(current) == wanted:
            with self._build_lock(spec, wait=False) as held:
                if held:
                    self._remove_unused_versions(spec, current)
            return self.python_in(current)
        with self._build_lock(spec, wait=True):
            current = self.current_dir(spec)  # another process may have built it meanwhile
            if current is None or built_from(current) != wanted:
                current = self._build_version(spec, wanted, current, progress)
            self._remove_unused_versions(spec, current)
            return self.python_in(current)

    def ensure_or_keep(self, spec: EnvSpec, progress: Progress = lambda line: None) -> Path:
        """``ensure``, except that a failed rebuild returns the working env it kept, after saying why."""
        return ensure_or_keep(self, spec, progress)[0]

    def _build_version(self, spec: EnvSpec, wanted: str, current: Optional[Path], progress: Progress) -> Path:
        """Build the spec's version beside ``current`` (the working env, if any), then point at it."""
        target = self.version_dir(spec)
        if built_from(target) == wanted and self.python_in(target).exists():  # built, but the switch did not happen
            self._point_at(spec, target)
            return target
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / ("env-%s.log" % spec.name)
        shutil.rmtree(target, ignore_errors=True)  # what an interrupted build of this version left
        progress("building the %s environment (log: %s)" % (spec.name, log_path))
        try:
            with log_path.open("w", encoding="utf-8") as log:
                commands = self._commands(spec, target)
                for step, command in enumerate(commands, start=1):
                    progress("[%s %d/%d] %s" % (spec.name, step, len(commands), " ".join(command[:3])))
                    self._run(command, log, progress, spec.name)
            self._prune(spec, target, progress)
        except BaseException as exc:  # interrupted or failed: never leave a half env, never touch the working one
            shutil.rmtree(target, ignore_errors=True)
            if isinstance(exc, EnvironmentBuildError):
                text = log_path.read_text(encoding="utf-8", errors="replace")
                package = self.blame(text)
                blamed = "package %s" % package if package else "see the log"
                tail = "\n".join(text.strip().splitlines()[-8:])
                kept = ("\nThe working %s environment was kept (%s); it still serves, built from the earlier spec."
                        % (spec.name, current) if current is not None else "")
                raise EnvironmentBuildError(
                    "building the %s environment failed (%s; log %s):\n%s%s" % (spec.name, blamed, log_path, tail, kept),
                    package=package,
                    log_path=str(log_path),
                    kept_python=str(self.python_in(current)) if current is not None else None,
                ) from exc
            raise
        marker = {"spec_hash": wanted, "layer": self.layer, "python": spec.python}
        (target / MARKER_NAME).write_text(json.dumps(marker))
        self._point_at(spec, target)
        progress("the %s environment is ready" % spec.name)
        return target

    def _point_at(self, spec: EnvSpec, target: Path) -> None:
        """Make ``target`` the current version in one atomic step (a link replaced by ``os.replace``)."""
        pointer = self.env_dir(spec)
        if pointer.is_dir() and not pointer.is_symlink():  # built before versions: moved aside, removed when unused
            aside = self.envs_dir / ("%s-%s" % (spec.name, (built_from(pointer) or "0" * VERSION_HASH_CHARS)[:VERSION_HASH_CHARS]))
            if aside == target:
                aside = self.envs_dir / ("%s-%s" % (spec.name, "f" * VERSION_HASH_CHARS))
            shutil.rmtree(aside, ignore_errors=True)
            os.rename(pointer, aside)
        link = self.envs_dir / (".%s.link-%d" % (spec.name, os.getpid()))
        link.unlink(missing_ok=True)
        try:
            os.symlink(target.name, link, target_is_directory=True)
        except OSError:  # no symbolic links here: a small file names the version instead
            note = pointer.with_name(pointer.name + POINTER_FILE_SUFFIX)
            partial = note.with_name(note.name + ".partial")
            partial.write_text(target.name, encoding="utf-8")
            os.replace(partial, note)
            return
        os.replace(link, pointer)

    def _remove_unused_versions(self, spec: EnvSpec, current: Path) -> None:
        """Remove the spec's other versions (and half-built ones) that no running process uses."""
        pattern = re.compile(r"^%s-[0-9a-f]{%d}$" % (re.escape(spec.name), VERSION_HASH_CHARS))
        try:
            others = [path for path in self.envs_dir.iterdir()
                      if pattern.match(path.name) and path.name != current.name and not path.is_symlink()]
        except OSError:
            return
        if not others:
            return
        used = folders_in_use(others)
        for path in others:
            if path in used:
                logger.info("keeping %s until the processes running from it end", path)
                continue
            logger.info("removing %s (an earlier %s environment)", path, spec.name)
            shutil.rmtree(path, ignore_errors=True)

    @contextmanager
    def _build_lock(self, spec: EnvSpec, wait: bool) -> Iterator[bool]:
        """Held while a name's versions are built, switched or removed, by one process at a time.
        Yields whether it is held (``wait=False``: only when free at once)."""
        self.envs_dir.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: one app per data folder is the guard there
            yield True
            return
        with open(self.envs_dir / (".%s.lock" % spec.name), "a+") as handle:
            deadline = time.monotonic() + 3600.0
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if not wait:
                        yield False
                        return
                    if time.monotonic() > deadline:
                        raise EnvironmentBuildError("another build of the %s environment has not ended in an hour" % spec.name) from None
                    time.sleep(0.2)
            try:
                yield True
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _prune(self, spec: EnvSpec, env_dir: Path, progress: Progress) -> None:
        for site in env_dir.glob("lib/python*/site-packages"):
            for pattern in spec.prune:
                for path in site.glob(pattern):
                    progress("[%s] removing %s (unusable here; the package works without it)" % (spec.name, path.relative_to(site)))
                    if path.is_dir():
                        shutil.rmtree(path)
                    else:
                        path.unlink()

    def _commands(self, spec: EnvSpec, env_dir: Path) -> List[List[str]]:
        interpreter = find_interpreter(spec.python)
        uv = find_uv()
        requirements: List[str] = []
        for path in spec.requirement_files(self.layer):
            requirements += ["-r", str(path)]
        if uv:
            find_links: List[str] = []
            for link in pip_find_links():
                find_links += ["--find-links", link]
            create = [uv, "venv", "--quiet", "--python", interpreter or spec.python, str(env_dir)]
            # bytecode now, not at each worker start (PYTHONDONTWRITEBYTECODE, containers): torch's import 3.9 -> 1.2 s CPU
            install = [uv, "pip", "install", "--compile-bytecode", "--python", str(env_python(env_dir)), *find_links]
            return [create, [*install, *requirements], *self._no_deps_step(spec, install)]
        if interpreter is None:
            raise EnvironmentBuildError("no Python %s found for the %s environment, and uv is not installed" % (spec.python, spec.name))
        create = [interpreter, "-m", "venv", str(env_dir)]
        install = [str(env_python(env_dir)), "-m", "pip", "install", "--disable-pip-version-check"]
        return [create, [*install, *requirements], *self._no_deps_step(spec, install)]

    @staticmethod
    def _no_deps_step(spec: EnvSpec, install: List[str]) -> List[List[str]]:
        """The spec's no-dependencies packages, after the rest (whose pins, torch's among them, they cannot move)."""
        path = spec.no_deps_file()
        return [[*install, "--no-deps", "-r", str(path)]] if path is not None else []

    def _run(self, command: List[str], log_file: TextIO, progress: Progress, name: str) -> None:
        run_logged(command, log_file, progress, name)


def ensure_or_keep(builder: VenvBuilder, spec: EnvSpec, progress: Progress) -> Tuple[Path, str]:
    """``ensure``, except that a failed rebuild returns the working env it kept, after saying why (the note)."""
    try:
        return builder.ensure(spec, progress), ""
    except EnvironmentBuildError as exc:
        if exc.kept_python is None:
            raise
        logger.warning("%s", exc)
        note = update_failed_note(spec.name, exc)
        progress(note)
        return Path(exc.kept_python), note


def create_time(pid: int) -> Optional[float]:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


class VenvHandle(WorkerHandle):
    """A worker started from a venv: a host process leading its own process group."""

    kind = "venv"

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self._pid = popen.pid
        self._reap_lock = threading.Lock()
        """Held by whoever reaps the leader or signals its group: a group id is only safe while unreaped."""
        try:
            self._identity: Optional[psutil.Process] = psutil.Process(self._pid)
        except psutil.Error:  # already gone: nothing to identify
            self._identity = None
        self._noted: List[psutil.Process] = []
        self._noted_lock = threading.Lock()
        self._members_listed_at = -1e9

    @property
    def main_pid(self) -> int:
        return self._pid

    def pids(self) -> List[int]:
        return [self._pid, *(process.pid for process in self._members())]

    def _members(self, max_age_s: float = 0.0) -> List[psutil.Process]:
        """The leader's descendants still running: those it has now (while the leader is this very
        process), and those noted before (a child of an exited leader is no longer its child). The
        leader itself is signalled through its group and reaped by ``Popen`` alone, so its exit code is kept.
        ``max_age_s``: a list found that recently will do (listing children reads every process on the machine:
        a memory reading after each job need not pay that; signals always look again)."""
        now = time.monotonic()
        if max_age_s and now - self._members_listed_at < max_age_s:
            with self._noted_lock:
                return [process for process in self._noted if process_running(process)]
        self._members_listed_at = now
        found: List[psutil.Process] = []
        if self._identity is not None and process_running(self._identity):
            try:
                found = list(self._identity.children(recursive=True))
            except psutil.Error:
                found = []
        with self._noted_lock:
            self._noted.extend(process for process in found if process not in self._noted)
            self._noted = [process for process in self._noted if process_running(process)]
            return list(self._noted)

    def poll(self) -> Optional[int]:
        with self._reap_lock:
            return self.popen.poll()

    def wait(self, timeout_s: float) -> Optional[int]:
        deadline = time.monotonic() + timeout_s
        while (code := self.poll()) is None:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)
        return code

    def wait_all(self, timeout_s: float) -> bool:
        """The noted processes first (a zombie no one reaps counts as gone), then the main one, each
        waited for up to ``timeout_s``."""
        with self._noted_lock:
            members = list(self._noted)
        deadline = time.monotonic() + timeout_s
        while (still := [process for process in members if process_running(process)]) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.wait(timeout_s) is not None and not still

    def terminate(self) -> None:
        self._signal_all(signal.SIGTERM)

    def kill(self) -> None:
        self._signal_all(signal.SIGKILL)

    def _signal_all(self, sig: int) -> None:
        members = self._members()
        self._signal_group(sig)
        for process in members:
            try:
                process.send_signal(sig)  # psutil checks the pid still names the same process
            except psutil.Error:
                pass

    def _signal_group(self, sig: int) -> None:
        """Signal the whole group only while its leader is unreaped: after that the id may be a stranger's."""
        with self._reap_lock:
            if self.popen.poll() is not None:
                return
            try:
                os.killpg(self._pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def memory_bytes(self) -> Optional[int]:
        processes = [self._identity] if self._identity is not None and process_running(self._identity) else []
        total = 0
        for process in [*processes, *self._members(max_age_s=MEMBERS_MAX_AGE_S)]:
            try:
                total += int(process.memory_info().rss)
            except psutil.Error:
                continue
        return total

    def output(self) -> Iterator[bytes]:
        stream: Optional[IO[bytes]] = self.popen.stdout
        if stream is None:
            return
        with stream:  # closed at EOF, when the worker is gone
            yield from stream

    def record_entry(self) -> Dict[str, Any]:
        started = self._identity.create_time() if self._identity is not None else None
        return {"kind": self.kind, "pid": self._pid, "create_time": started}


class VenvKind(EnvironmentKind):
    """Builds with ``VenvBuilder``; launches the env's interpreter as a host process."""

    name = "venv"
    handle_type: ClassVar[Type[VenvHandle]] = VenvHandle

    def __init__(self, settings: Optional[KindSettings] = None) -> None:
        super().__init__(settings)
        self._builder: Optional[VenvBuilder] = None
        if settings is not None:
            self._builder = VenvBuilder(settings.envs_dir, settings.logs_dir, settings.layer)

    @property
    def builder(self) -> VenvBuilder:
        if self._builder is None:
            self.require_settings()
        assert self._builder is not None
        return self._builder

    def build(self, spec: EnvSpec, progress: Progress = no_progress) -> BuiltEnv:
        python, note = ensure_or_keep(self.builder, spec, progress)
        folder = self.builder.folder_of(python)
        return BuiltEnv(spec=spec, kind=self.name, interpreter=str(python), location=str(folder), spec_hash=built_from(folder) or "",
                        current=not note, note=note)

    def is_current(self, spec: EnvSpec) -> bool:
        return self.builder.is_ready(spec)

    def launch(
        self, built: BuiltEnv, argv_tail: Sequence[str], env: Mapping[str, str], cwd: Path, stdin_data: bytes = b"",
        mounts: Sequence[Mount] = (),
    ) -> WorkerHandle:
        # The env's own interpreter directly (no shell, no `conda run`) so signals reach it; its own
        # session makes it a process group we can kill whole, children included.
        popen = subprocess.Popen(
            [built.interpreter, *argv_tail],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=str(cwd),
            env=dict(env),
            start_new_session=True,
        )
        handle = self.handle_type(popen)
        assert popen.stdin is not None
        try:
            popen.stdin.write(stdin_data)
            popen.stdin.close()
        except OSError:  # died before reading it: the caller's handshake reports it
            pass
        return handle

    def map_path(self, host_path: str) -> str:
        return host_path  # the worker shares the host's files

    def reap_leftover(self, entry: Mapping[str, Any]) -> bool:
        """Kill the process group a dead app's worker led, if its leader is still that process."""
        pid = int(entry["pid"])
        if create_time(pid) != entry.get("create_time"):  # gone, or a recycled pid
            return False
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return False
        return True
