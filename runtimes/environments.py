"""Building each architecture's own environment from its folder in ``envs/``.

A folder holds ``spec.toml`` (name, kind, python, adapter; optionally ``device``, the device policy:
``cpu-only``, ``gpu-preferred`` (the default) or ``gpu-required``, with ``min_gpu_memory_mb``) and
layered requirements:
``requirements.txt`` plus ``requirements-cpu.txt`` or ``requirements-cuda.txt``, the layer picked by
whether an NVIDIA GPU is present. An environment is rebuilt only when the hash of what it was built
from changes. A build streams its output to a log file and to a progress callback; a failed or
interrupted build leaves no half environment behind (the completion marker is written last).

Versions side by side: each build goes to its own folder ``<envs>/<name>-<hash>/`` (a venv cannot be
moved: its scripts and ``pyvenv.cfg`` name its own path), and ``<envs>/<name>`` is a symbolic link to
the current one, replaced atomically (``os.replace``) once a new build is complete. A rebuild that fails
(offline, a requirement that cannot install) leaves the working environment where it was and says so;
workers get the versioned path, so a running one keeps its files; an old version is removed once no
process runs from it (at the swap, or at a later ``ensure``). One build per name at a time, across
processes (a lock file beside the versions). An ``<envs>/<name>`` folder made before versions existed
is used as it is until its first rebuild.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Set, TextIO, Tuple

import psutil

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from runtimes.errors import EnvironmentBuildError

logger = logging.getLogger(__name__)

BUILDER_VERSION = "1"
MARKER_NAME = ".voicegen-env.json"
VERSION_HASH_CHARS = 12
POINTER_FILE_SUFFIX = ".current"
"""Where symbolic links cannot be made (Windows without the right): ``<name>.current`` names the version."""
KINDS = ("venv",)
DEVICE_POLICIES = ("cpu-only", "gpu-preferred", "gpu-required")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EnvSpec:
    name: str
    kind: str
    python: str
    adapter: str
    folder: Path
    device: str = "gpu-preferred"
    """Where its workers may run: ``cpu-only``, ``gpu-preferred`` (CPU when no GPU fits) or ``gpu-required``."""
    min_gpu_memory_mb: int = 0
    """A GPU smaller than this is never chosen for it."""
    prune: Tuple[str, ...] = ()
    """Globs under site-packages removed after installing: files a package ships that cannot work in
    this env and that it works without (PyPI's CUDA-built torchaudio native library beside a CPU torch)."""

    def requirement_files(self, layer: str) -> List[Path]:
        files = [self.folder / "requirements.txt", self.folder / ("requirements-%s.txt" % layer)]
        return [path for path in files if path.exists()]


def load_spec(folder: Path) -> EnvSpec:
    path = folder / "spec.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise EnvironmentBuildError("cannot read %s: %s" % (path, exc)) from exc
    missing = [key for key in ("name", "kind", "python", "adapter") if key not in data]
    if missing:
        raise EnvironmentBuildError("%s lacks %s" % (path, ", ".join(missing)))
    if data["kind"] not in KINDS:
        raise EnvironmentBuildError("%s: kind %r is not supported yet (supported: %s)" % (path, data["kind"], ", ".join(KINDS)))
    device = str(data.get("device", "gpu-preferred"))
    if device not in DEVICE_POLICIES:
        raise EnvironmentBuildError("%s: device %r is not one of %s" % (path, device, ", ".join(DEVICE_POLICIES)))
    try:
        min_gpu_mb = int(data.get("min_gpu_memory_mb", 0))
    except (TypeError, ValueError):
        raise EnvironmentBuildError("%s: min_gpu_memory_mb must be a whole number of MiB" % path) from None
    prune = data.get("prune", [])
    if not isinstance(prune, list) or not all(isinstance(p, str) and ".." not in p and not p.startswith("/") for p in prune):
        raise EnvironmentBuildError("%s: prune must be a list of globs inside site-packages" % path)
    return EnvSpec(str(data["name"]), str(data["kind"]), str(data["python"]), str(data["adapter"]), folder, device, min_gpu_mb,
                   tuple(prune))


def load_specs(envs_root: Path) -> Dict[str, EnvSpec]:
    specs: Dict[str, EnvSpec] = {}
    for spec_file in sorted(envs_root.glob("*/spec.toml")):
        spec = load_spec(spec_file.parent)
        specs[spec.name] = spec
    return specs


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


def update_failed_note(name: str, error: EnvironmentBuildError) -> str:
    """One line for a person: the update failed, the working environment serves on."""
    why = "package %s could not be installed" % error.package if error.package else "log %s" % error.log_path
    return "could not update the %s environment (%s); using the working one built before" % (name, why)


def find_interpreter(version: str) -> Optional[str]:
    """A working local interpreter of ``version`` (e.g. "3.11"): this one, one on PATH, or a pyenv one.
    Each candidate is asked for its version and real path: a pyenv shim on PATH may not work."""
    if "%d.%d" % sys.version_info[:2] == version:
        return getattr(sys, "_base_executable", None) or sys.executable
    candidates = [shutil.which("python%s" % version), _uv_python(version)]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(p) for p in sorted(pyenv_root.glob("versions/%s.*/bin/python%s" % (version, version)), reverse=True)]
    for candidate in candidates:
        if not candidate:
            continue
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"],
                capture_output=True, text=True, timeout=20, check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = out.stdout.split()
        if out.returncode == 0 and len(lines) == 2 and lines[0] == version:
            return lines[1]
    return None


def _uv_python(version: str) -> Optional[str]:
    """An interpreter uv knows (its own downloads, system and pyenv ones), asked offline."""
    uv = find_uv()
    if uv is None:
        return None
    try:
        out = subprocess.run([uv, "python", "find", "--no-python-downloads", version], capture_output=True, text=True, timeout=20,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def find_uv() -> Optional[str]:
    beside = Path(sys.executable).parent / ("uv.exe" if os.name == "nt" else "uv")
    return str(beside) if beside.exists() else shutil.which("uv")


def pip_find_links() -> List[str]:
    """pip's configured find-links (local wheel folders, e.g. a CPU torch); uv does not read pip's config."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    links: List[str] = []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".find-links"):
            links.extend(part for part in value.strip().strip("'\"").split() if part not in links)
    return links


_PACKAGE = r"([A-Za-z0-9_.\-]+)"
# Installers wrap long lines, so a space in these patterns may be any run of whitespace.
_FAILED_PACKAGE_PATTERNS = tuple(
    re.compile(pattern.replace(" ", r"\s+"))
    for pattern in (
        r"No matching distribution found for " + _PACKAGE,
        r"Because " + _PACKAGE + r"(?:==\S+)? was not found in the (?:package registry|provided package locations)",
        r"Because there is no version of " + _PACKAGE,
        r"Failed to (?:build|download|prepare distributions?|fetch)[^`]*`" + _PACKAGE,
        r"Could not find a version that satisfies the requirement " + _PACKAGE,
        r"ERROR: Failed building wheel for " + _PACKAGE,
    )
)


def failing_package(log_text: str) -> Optional[str]:
    """Name of the package an installer's output blames, if it blames one."""
    for pattern in _FAILED_PACKAGE_PATTERNS:
        match = pattern.search(log_text)
        if match:
            return match.group(1)
    return None


class EnvironmentBuilder:
    """Builds (or reuses) the environment of each architecture under ``envs_dir``."""

    def __init__(self, envs_dir: Path, logs_dir: Path, layer: str) -> None:
        self.envs_dir = envs_dir
        self.logs_dir = logs_dir
        self.layer = layer

    def spec_hash(self, spec: EnvSpec) -> str:
        digest = hashlib.sha256()
        digest.update(("%s|%s|%s|%s|%s" % (BUILDER_VERSION, spec.kind, spec.python, spec.adapter, self.layer)).encode())
        for path in [spec.folder / "spec.toml", *spec.requirement_files(self.layer)]:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()

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
        if target is None or built_from(target) is None or not env_python(target).exists():
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
            return env_python(current)
        with self._build_lock(spec, wait=True):
            current = self.current_dir(spec)  # another process may have built it meanwhile
            if current is None or built_from(current) != wanted:
                current = self._build_version(spec, wanted, current, progress)
            self._remove_unused_versions(spec, current)
            return env_python(current)

    def ensure_or_keep(self, spec: EnvSpec, progress: Progress = lambda line: None) -> Path:
        """``ensure``, except that a failed rebuild returns the working env it kept, after saying why."""
        try:
            return self.ensure(spec, progress)
        except EnvironmentBuildError as exc:
            if exc.kept_python is None:
                raise
            logger.warning("%s", exc)
            progress(update_failed_note(spec.name, exc))
            return Path(exc.kept_python)

    def _build_version(self, spec: EnvSpec, wanted: str, current: Optional[Path], progress: Progress) -> Path:
        """Build the spec's version beside ``current`` (the working env, if any), then point at it."""
        target = self.version_dir(spec)
        if built_from(target) == wanted and env_python(target).exists():  # built, but the switch did not happen
            self._point_at(spec, target)
            return target
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / ("env-%s.log" % spec.name)
        shutil.rmtree(target, ignore_errors=True)  # what an interrupted build of this version left
        progress("building the %s environment (log: %s)" % (spec.name, log_path))
        try:
            with log_path.open("w", encoding="utf-8") as log:
                for step, command in enumerate(self._commands(spec, target), start=1):
                    progress("[%s %d/2] %s" % (spec.name, step, " ".join(command[:3])))
                    self._run(command, log, progress, spec.name)
            self._prune(spec, target, progress)
        except BaseException as exc:  # interrupted or failed: never leave a half env, never touch the working one
            shutil.rmtree(target, ignore_errors=True)
            if isinstance(exc, EnvironmentBuildError):
                text = log_path.read_text(encoding="utf-8", errors="replace")
                package = failing_package(text)
                blamed = "package %s" % package if package else "see the log"
                tail = "\n".join(text.strip().splitlines()[-8:])
                kept = ("\nThe working %s environment was kept (%s); it still serves, built from the earlier spec."
                        % (spec.name, current) if current is not None else "")
                raise EnvironmentBuildError(
                    "building the %s environment failed (%s; log %s):\n%s%s" % (spec.name, blamed, log_path, tail, kept),
                    package=package,
                    log_path=str(log_path),
                    kept_python=str(env_python(current)) if current is not None else None,
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
            install = [uv, "pip", "install", "--compile-bytecode", "--python", str(env_python(env_dir)), *find_links, *requirements]
            return [create, install]
        if interpreter is None:
            raise EnvironmentBuildError("no Python %s found for the %s environment, and uv is not installed" % (spec.python, spec.name))
        create = [interpreter, "-m", "venv", str(env_dir)]
        install = [str(env_python(env_dir)), "-m", "pip", "install", "--disable-pip-version-check", *requirements]
        return [create, install]

    def _run(self, command: List[str], log_file: TextIO, progress: Progress, name: str) -> None:
        log_file.write("$ %s\n" % " ".join(command))
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as process:
            assert process.stdout is not None
            for line in process.stdout:
                log_file.write(line)
                stripped = line.strip()
                if stripped:
                    progress("[%s] %s" % (name, stripped))
            code = process.wait()
        log_file.flush()
        if code != 0:
            raise EnvironmentBuildError("%s exited with %d" % (command[0], code))
