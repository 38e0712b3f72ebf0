"""What an architecture's environment is made from: its folder in ``envs/``, read into an ``EnvSpec``,
and the tools every kind's build shares (finding an interpreter and uv, pip's find-links, the package an
installer's output blames, the note a kept environment gives).

A folder holds ``spec.toml`` (name, kind, python, adapter; optionally ``device``, the device policy:
``cpu-only``, ``gpu-preferred`` (the default) or ``gpu-required``, with ``min_gpu_memory_mb``) and
layered requirements:
``requirements.txt`` plus ``requirements-cpu.txt`` or ``requirements-cuda.txt``, the layer picked by
whether an NVIDIA GPU is present, and optionally ``requirements-nodeps.txt``, installed last without
dependencies. ``kind`` names the environment kind that builds and launches it
(``runtimes.envkinds``: one module per kind, chosen from ``runtimes.envkinds.registry.KINDS``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from runtimes.errors import EnvironmentBuildError

DEVICE_POLICIES = ("cpu-only", "gpu-preferred", "gpu-required")
NO_DEPS_FILE = "requirements-nodeps.txt"

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
        """What is installed with dependencies: the shared file and the layer's."""
        files = [self.folder / "requirements.txt", self.folder / ("requirements-%s.txt" % layer)]
        return [path for path in files if path.exists()]

    def no_deps_file(self) -> Optional[Path]:
        """``requirements-nodeps.txt``: packages installed after the rest without their declared dependencies
        (an upstream package whose metadata names one that does not exist, or pins an old torch); the
        dependencies they really need are listed in the other files."""
        path = self.folder / NO_DEPS_FILE
        return path if path.exists() else None


def load_spec(folder: Path) -> EnvSpec:
    path = folder / "spec.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise EnvironmentBuildError("cannot read %s: %s" % (path, exc)) from exc
    missing = [key for key in ("name", "kind", "python", "adapter") if key not in data]
    if missing:
        raise EnvironmentBuildError("%s lacks %s" % (path, ", ".join(missing)))
    known = known_kinds()
    if data["kind"] not in known:
        raise EnvironmentBuildError("%s: kind %r is not supported yet (supported: %s)" % (path, data["kind"], ", ".join(known)))
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


def known_kinds() -> List[str]:
    """The environment kinds the registry knows (imported here, not at the top: the kinds import this module)."""
    from runtimes.envkinds.registry import KINDS

    return sorted(KINDS)


def load_specs(envs_root: Path) -> Dict[str, EnvSpec]:
    specs: Dict[str, EnvSpec] = {}
    for spec_file in sorted(envs_root.glob("*/spec.toml")):
        spec = load_spec(spec_file.parent)
        specs[spec.name] = spec
    return specs


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

