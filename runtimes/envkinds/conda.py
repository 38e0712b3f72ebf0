"""The ``conda`` environment kind: a conda prefix per architecture, made by micromamba, mamba or conda,
with the spec's pip requirements installed into it by the prefix's own pip; workers run as with ``venv``.

Everything but the tool's step is ``VenvBuilder``'s: versioned prefixes ``<envs>/<name>-<hash>/`` beside
the current one, ``<envs>/<name>`` swapped atomically, one build per name at a time, the marker written
last, a failed update keeping the working prefix. The hash also covers ``environment.yml`` and which
tool builds (micromamba, mamba or conda: each solves on its own).

The environment file is the folder's ``environment.yml`` when it ships one, else ``python=<spec.python>``
and ``pip`` from conda-forge. Its conda part goes to the tool as specs on the command line,
``<tool> create --yes --prefix P [--override-channels] --channel C ... spec ...`` (``--override-channels``
where the channels list ``nodefaults``): the one form micromamba 1.x/2.x, mamba 1.x/2.x
and conda 23+/24+ all read alike (``create --file`` takes a yml only in micromamba and mamba 2; conda wants
a list of specs there, and ``env create`` differs in its flags across conda versions). Its ``pip:`` entries,
the spec's layered requirement files and ``requirements-nodeps.txt`` (``--no-deps``, last) are then installed
by ``<prefix>/bin/python -m pip`` with pip's configured find-links, as the venv kind installs them, so the
torch pin and local wheels apply the same. Never ``conda run``: a worker is the prefix's interpreter itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

import yaml  # type: ignore[import-untyped]  # PyYAML: in the app's lock through gradio and huggingface-hub

from runtimes.envkinds.base import BuiltEnv, KindSettings, WorkerHandle
from runtimes.envkinds.venv import VenvBuilder, VenvHandle, VenvKind
from runtimes.envspec import EnvSpec, Progress, failing_package, pip_find_links
from runtimes.errors import EnvironmentBuildError

CONDA_BUILDER_VERSION = "1"
ENVIRONMENT_FILE = "environment.yml"
TOOL_NAMES = ("micromamba", "mamba", "conda")
"""Looked for on PATH in this order: micromamba and mamba solve faster; all three read the same command."""
TOOL_ENV_VARS = ("MAMBA_EXE", "CONDA_EXE")
"""Set by micromamba's and conda's shell hooks: the tool even where only a shell function names it."""
NO_DEFAULTS = "nodefaults"
"""In an environment file's channels: only the channels it names (``--override-channels``), not the tool's configured ones."""
DEFAULT_CHANNELS = ("conda-forge", NO_DEFAULTS)
"""For a folder without ``environment.yml``: conda-forge alone, the same on every machine (no Anaconda defaults and their terms)."""
PIP_PATH_OPTIONS = ("-r", "--requirement", "-c", "--constraint", "-e", "--editable")

_PACKAGE = r"([A-Za-z0-9_.\-]+)"
# Conda's and the mambas' words for a package no channel has (solvers wrap and indent, so a space is any whitespace).
_CONDA_FAILED_PACKAGE_PATTERNS = tuple(
    re.compile(pattern.replace(" ", r"\s+"))
    for pattern in (
        r"PackagesNotFoundError: The following packages are not available from current channels: (?:- )?" + _PACKAGE,
        r"nothing provides requested " + _PACKAGE,  # libmamba (conda 23.10+, mamba 1.x, micromamba 1.x)
        r"nothing provides " + _PACKAGE + r"\S* needed by",
        r"[└─-]+ " + _PACKAGE + r"[^\n]* does not exist \(perhaps a typo or a missing channel\)",  # micromamba/mamba 1.5+, 2.x
    )
)

_CHECK_PYTHON = ("import sys; v = '%d.%d' % sys.version_info[:2]; print('Python', v, 'at', sys.executable); "
                 "sys.exit(v != sys.argv[1] and 'the prefix has Python %s, but spec.toml asks for %s: make them agree' % (v, sys.argv[1]))")
"""Run by the prefix's interpreter right after the tool made it: the workers' Python must be the spec's."""


def conda_failing_package(log_text: str) -> Optional[str]:
    """The package a conda tool's output (or, after it, pip's) blames, if it blames one."""
    for pattern in _CONDA_FAILED_PACKAGE_PATTERNS:
        match = pattern.search(log_text)
        if match:
            return match.group(1)
    return failing_package(log_text)


def prefix_python(prefix: Path) -> Path:
    """A conda prefix's interpreter: ``bin/python``; on Windows ``python.exe`` at its top."""
    return prefix / "python.exe" if os.name == "nt" else prefix / "bin" / "python"


def prefix_of(python: Path) -> Path:
    """The prefix whose interpreter ``python`` is (``prefix_python``'s inverse)."""
    return python.parent if os.name == "nt" else python.parent.parent


def activated(env: Mapping[str, str], prefix: Path) -> Dict[str, str]:
    """``env`` with what conda's activation sets that a worker's own subprocesses need: the prefix's programs
    first on PATH (an ffmpeg or espeak-ng from the environment file) and ``CONDA_PREFIX``. Packages'
    ``activate.d`` scripts are not run (no shell between the app and the worker)."""
    if os.name == "nt":
        library = prefix / "Library"
        folders = [prefix, library / "mingw-w64" / "bin", library / "usr" / "bin", library / "bin", prefix / "Scripts"]
    else:
        folders = [prefix / "bin"]
    path = os.pathsep.join([*(str(folder) for folder in folders), *([env["PATH"]] if env.get("PATH") else [])])
    return {**env, "PATH": path, "CONDA_PREFIX": str(prefix)}


def find_tool(setting: str = "") -> Optional[str]:
    """The conda tool to build with: the setting (a path or a name on PATH), else micromamba, mamba or conda
    on PATH, else what ``$MAMBA_EXE`` / ``$CONDA_EXE`` name; None when there is none."""
    if setting:
        return shutil.which(setting) or (setting if Path(setting).is_file() else None)
    for name in TOOL_NAMES:
        found = shutil.which(name)
        if found:
            return found
    for variable in TOOL_ENV_VARS:
        value = os.environ.get(variable, "")
        if value and Path(value).is_file():
            return value
    return None


def tool_family(tool: Optional[str]) -> str:
    """Which tool it is (``micromamba``, ``mamba``, ``conda``), by its file name; "none" without one."""
    if tool is None:
        return "none"
    stem = Path(tool).name.lower().split(".")[0]
    return next((name for name in TOOL_NAMES if name in stem), stem)


@dataclass(frozen=True)
class CondaEnvironment:
    """An environment file split as it is built: the tool's part and pip's."""

    channels: Tuple[str, ...]
    conda: Tuple[str, ...]
    """Conda specs (``python=3.11``, ``ffmpeg``), always with a python and, when pip has work, pip."""
    pip: Tuple[str, ...]
    """The ``pip:`` section's lines, as a requirements file reads them."""


def environment_file(spec: EnvSpec) -> Optional[Path]:
    path = spec.folder / ENVIRONMENT_FILE
    return path if path.exists() else None


def pip_line(line: str, folder: Path) -> str:
    """A ``pip:`` line as it reads in a requirements file elsewhere: a relative path (``-r``, ``-c``, ``-e``, ``./pkg``)
    made absolute from the environment file's folder, where conda's own pip step would read it."""
    text = line.strip()
    for option in PIP_PATH_OPTIONS:
        if text.startswith((option + " ", option + "=")):
            return "%s %s" % (option, _from_folder(text[len(option) + 1:].strip(), folder))
    return _from_folder(text, folder) if text == "." or text.startswith(("./", "../")) else text


def _from_folder(path: str, folder: Path) -> str:
    """A relative local path made absolute from ``folder``; a URL or an absolute path kept."""
    return path if "://" in path or path.startswith("git+") or Path(path).is_absolute() else str(folder / path)


def read_environment(spec: EnvSpec, pip_has_work: bool = True) -> CondaEnvironment:
    """The folder's ``environment.yml`` split into channels, conda specs and pip lines; without one, the spec's python and pip."""
    path = environment_file(spec)
    if path is None:
        return CondaEnvironment(DEFAULT_CHANNELS, ("python=%s" % spec.python, "pip"), ())
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise EnvironmentBuildError("cannot read %s: %s" % (path, exc)) from exc
    if not isinstance(data, dict):
        raise EnvironmentBuildError("%s: expected a mapping with channels and dependencies" % path)
    channels = data.get("channels") or list(DEFAULT_CHANNELS)
    conda: List[str] = []
    pip: List[str] = []
    for entry in data.get("dependencies") or []:
        if isinstance(entry, dict) and set(entry) == {"pip"} and isinstance(entry["pip"], list):
            pip += [pip_line(str(line), path.parent) for line in entry["pip"]]
        elif isinstance(entry, (str, int, float)):
            conda.append(str(entry))
        else:
            raise EnvironmentBuildError("%s: a dependency is neither a conda spec nor the pip: list: %r" % (path, entry))
    if not isinstance(channels, list) or not all(isinstance(channel, str) for channel in channels):
        raise EnvironmentBuildError("%s: channels must be a list of names" % path)
    names = {re.split(r"[\s=<>!~\[]", spec_text.strip(), maxsplit=1)[0].split("::")[-1] for spec_text in conda}
    if "python" not in names:
        conda.insert(0, "python=%s" % spec.python)  # the prefix's python is the workers' interpreter
    if (pip or pip_has_work) and "pip" not in names:
        conda.append("pip")
    return CondaEnvironment(tuple(channels), tuple(conda), tuple(pip))


class CondaBuilder(VenvBuilder):
    """``VenvBuilder``'s versions, lock, marker and kept-on-failure, with a conda tool making each version."""

    def __init__(self, envs_dir: Path, logs_dir: Path, layer: str, executable: str = "") -> None:
        super().__init__(envs_dir, logs_dir, layer)
        self.executable = executable

    def tool(self) -> Optional[str]:
        return find_tool(self.executable)

    def spec_hash(self, spec: EnvSpec) -> str:
        digest = hashlib.sha256(("%s|conda %s|%s" % (super().spec_hash(spec), CONDA_BUILDER_VERSION, tool_family(self.tool()))).encode())
        path = environment_file(spec)
        if path is not None:
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def python_in(self, env_dir: Path) -> Path:
        return prefix_python(env_dir)

    def folder_of(self, python: Path) -> Path:
        return prefix_of(python)

    @staticmethod
    def blame(log_text: str) -> Optional[str]:
        return conda_failing_package(log_text)

    def pip_requirements_path(self, target: Path) -> Path:
        """The environment file's ``pip:`` lines for a version being built (beside it: the tool wants an empty prefix)."""
        return target.with_name(".%s.pip-requirements.txt" % target.name)

    def _build_version(self, spec: EnvSpec, wanted: str, current: Optional[Path], progress: Progress) -> Path:
        if self.tool() is None:  # said before anything is built, and a working prefix is kept
            raise EnvironmentBuildError(
                "the %s environment is a conda one, and no conda tool was found: install micromamba (or mamba, or conda), "
                "or set conda_executable to its path%s" % (spec.name, " (now %r, not found)" % self.executable if self.executable else ""),
                kept_python=str(self.python_in(current)) if current is not None else None,
            )
        try:
            return super()._build_version(spec, wanted, current, progress)
        finally:
            self.pip_requirements_path(self.version_dir(spec)).unlink(missing_ok=True)

    def _commands(self, spec: EnvSpec, env_dir: Path) -> List[List[str]]:
        tool = self.tool()
        if tool is None:
            raise EnvironmentBuildError("no conda tool found")  # _build_version said which and why
        spec_files = [*spec.requirement_files(self.layer), *filter(None, [spec.no_deps_file()])]
        environment = read_environment(spec, pip_has_work=bool(spec_files))
        create = [tool, "create", "--yes", "--prefix", str(env_dir)]
        if NO_DEFAULTS in environment.channels:
            create.append("--override-channels")
        for channel in environment.channels:
            if channel != NO_DEFAULTS:
                create += ["--channel", channel]
        python = str(prefix_python(env_dir))
        check = [python, "-c", _CHECK_PYTHON, spec.python]
        commands = [[tool, "--version"], [*create, *environment.conda], check]
        requirements: List[str] = []
        if environment.pip:
            pip_file = self.pip_requirements_path(env_dir)
            pip_file.write_text("\n".join(environment.pip) + "\n", encoding="utf-8")
            requirements += ["-r", str(pip_file)]
        for path in spec.requirement_files(self.layer):
            requirements += ["-r", str(path)]
        find_links: List[str] = []
        for link in pip_find_links():
            find_links += ["--find-links", link]
        install = [python, "-m", "pip", "install", "--disable-pip-version-check", *find_links]
        if requirements:
            commands.append([*install, *requirements])
        return [*commands, *self._no_deps_step(spec, install)]

    def _run(self, command: List[str], log_file: TextIO, progress: Progress, name: str) -> None:
        try:
            super()._run(command, log_file, progress, name)
        except OSError as exc:  # a tool that cannot start, a prefix without its python: said in the log, whose tail the error shows
            log_file.write("cannot run %s: %s\n" % (command[0], exc))
            log_file.flush()
            raise EnvironmentBuildError("cannot run %s: %s" % (command[0], exc)) from exc


class CondaHandle(VenvHandle):
    """A worker started from a conda prefix: the prefix's interpreter as a host process leading its own group."""

    kind = "conda"


class CondaKind(VenvKind):
    """Builds with ``CondaBuilder``; launches, measures and reaps exactly as the venv kind does."""

    name = "conda"
    handle_type = CondaHandle

    def __init__(self, settings: Optional[KindSettings] = None) -> None:
        super().__init__(settings)
        if settings is not None:
            # prefixes in a folder of their own: a venv of the same name (a spec switched between kinds) is another build
            self._builder = CondaBuilder(settings.envs_dir / "conda", settings.logs_dir, settings.layer, settings.conda_executable)

    def launch(
        self, built: BuiltEnv, argv_tail: Sequence[str], env: Mapping[str, str], cwd: Path, *rest: Any, **options: Any
    ) -> WorkerHandle:
        """The venv kind's launch (the prefix's interpreter itself, never ``conda run``), with the prefix activated in ``env``;
        ``rest``: ``stdin_data`` and ``mounts``, handed on as they came."""
        return super().launch(built, argv_tail, activated(env, prefix_of(Path(built.interpreter))), cwd, *rest, **options)
