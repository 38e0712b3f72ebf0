"""The build context of an architecture's image: the folder's own ``Dockerfile``, or one made from its spec.

The made one installs the same layers a venv gets (``requirements.txt`` + the layer's file, then
``requirements-nodeps.txt`` with ``--no-deps``) into a venv at ``/opt/voicegen/env`` of the base image's
Python, removes the spec's ``prune`` globs, and compiles bytecode at build time (the worker's user cannot
write into the image). Wheels that pip here finds in local folders (``find-links``: a CPU torch) go into the
context when a requirement names them, since the build cannot see the host's folders.
A shipped ``Dockerfile`` must take ``ARG BASE``; its interpreter is the ``voicegen.interpreter`` label, or
``/opt/voicegen/env/bin/python``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import List, Set

from runtimes.envspec import EnvSpec, pip_find_links

CONTAINER_ENV = "/opt/voicegen/env"
CONTAINER_INTERPRETER = CONTAINER_ENV + "/bin/python"
INTERPRETER_LABEL = "voicegen.interpreter"

TEMPLATE = """\
# Made by voicegen from envs/{name}/ (spec hash {spec_hash}); the folder may ship its own Dockerfile instead.
ARG BASE=python:{python}-slim
FROM $BASE
LABEL {label}="{interpreter}"
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv {env}
COPY requirements/ /opt/voicegen/requirements/
COPY wheels/ /opt/voicegen/wheels/
RUN {env}/bin/python -m pip install --find-links /opt/voicegen/wheels {requirements}
{no_deps}{prune}"""

PRUNE = """\
RUN {env}/bin/python -c "import glob, os, shutil, site; [shutil.rmtree(p) if os.path.isdir(p) else os.remove(p) \\
    for s in site.getsitepackages() for g in {globs!r} for p in glob.glob(os.path.join(s, g))]"
"""


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def required_names(files: List[Path]) -> Set[str]:
    """The distribution names the requirement files list (normalized)."""
    names: Set[str] = set()
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9_.\-]*)", line.split("#", 1)[0])
            if match:
                names.add(normalized(match.group(1)))
    return names


def local_wheels(names: Set[str]) -> List[Path]:
    """Wheels in pip's find-links folders for the named distributions."""
    found: List[Path] = []
    for folder in pip_find_links():
        root = Path(folder.removeprefix("file://"))
        if root.is_dir():
            found += [path for path in sorted(root.glob("*.whl")) if normalized(path.name.split("-", 1)[0]) in names]
    return found


def build_context(spec: EnvSpec, layer: str, context: Path, spec_hash: str) -> Path:
    """Fill ``context`` (an empty folder) for the spec's image; returns the Dockerfile to build with."""
    shipped = spec.folder / "Dockerfile"
    if shipped.exists():
        shutil.copytree(spec.folder, context, dirs_exist_ok=True)
        return context / "Dockerfile"
    requirements = context / "requirements"
    wheels = context / "wheels"
    requirements.mkdir()
    wheels.mkdir()
    files = spec.requirement_files(layer)
    for path in files:
        shutil.copy2(path, requirements / path.name)
    no_deps = spec.no_deps_file()
    if no_deps is not None:
        shutil.copy2(no_deps, requirements / no_deps.name)
    for wheel in local_wheels(required_names([*files, *filter(None, [no_deps])])):
        shutil.copy2(wheel, wheels / wheel.name)
    (wheels / ".keep").touch()  # COPY of an empty folder needs something in it on some engines
    text = TEMPLATE.format(
        name=spec.name, spec_hash=spec_hash[:12], python=spec.python, label=INTERPRETER_LABEL, interpreter=CONTAINER_INTERPRETER,
        env=CONTAINER_ENV,
        requirements=" ".join("-r /opt/voicegen/requirements/%s" % path.name for path in files),
        no_deps=("RUN %s/bin/python -m pip install --no-deps --find-links /opt/voicegen/wheels -r /opt/voicegen/requirements/%s\n"
                 % (CONTAINER_ENV, no_deps.name)) if no_deps is not None else "",
        prune=PRUNE.format(env=CONTAINER_ENV, globs=list(spec.prune)) if spec.prune else "",
    )
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(text, encoding="utf-8")
    return dockerfile
