"""A built environment holds its packages' bytecode: a worker's imports read it instead of compiling sources."""

from __future__ import annotations

import shutil
from pathlib import Path

from runtimes.environments import EnvironmentBuilder, EnvSpec, find_uv, load_spec


def test_a_built_environment_holds_its_packages_bytecode(tmp_path: Path, fake_spec: EnvSpec) -> None:
    """uv writes no bytecode unless asked; where Python may not write it at run time (PYTHONDONTWRITEBYTECODE, as
    containers and this machine set) every worker start compiled what it imported: torch's import took 3.9 s of CPU
    instead of 1.2 s, Piper's worker imports 0.56 s instead of 0.15 s (issue 17 defect 15)."""
    shutil.copytree(fake_spec.folder, tmp_path / "spec")
    spec = load_spec(tmp_path / "spec")
    python = EnvironmentBuilder(tmp_path / "envs", tmp_path / "logs", "cpu").ensure(spec)
    numpy_dirs = list(python.parent.parent.glob("lib*/python*/site-packages/numpy")) or \
        list(python.parent.parent.glob("Lib/site-packages/numpy"))
    assert numpy_dirs, "numpy is not installed in the fake env"
    compiled = list((numpy_dirs[0] / "__pycache__").glob("__init__.*.pyc"))
    assert compiled or find_uv() is None, "no bytecode for numpy/__init__.py"  # pip compiles by default anyway
