"""The launcher compiles the app environment's bytecode once (uv installs none unless asked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import launcher


def test_the_app_environment_is_compiled_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without bytecode every start compiled each module it imported wherever Python may not write it back
    (PYTHONDONTWRITEBYTECODE, as containers and this machine set): the app's imports took 7.7 s of CPU instead of
    3.0 s (issue 17 defect 15). An environment made before is compiled at the next launch, then never again."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    package = next((venv / "lib").glob("python*")) / "site-packages" / "some_package"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 1\n")
    monkeypatch.setattr(launcher, "VENV", venv)
    monkeypatch.setattr(launcher, "BYTECODE_MARKER", venv / ".voicegen-bytecode")
    launcher.ensure_bytecode("deps-1")
    compiled = list((package / "__pycache__").glob("__init__.*.pyc"))
    assert compiled and (venv / ".voicegen-bytecode").read_text().strip() == "deps-1"
    compiled[0].unlink()
    launcher.ensure_bytecode("deps-1")  # the same deps: nothing compiled again
    assert not list((package / "__pycache__").glob("__init__.*.pyc"))
    launcher.ensure_bytecode("deps-2")  # other deps (an update made by an older launcher): compiled again
    assert list((package / "__pycache__").glob("__init__.*.pyc"))
