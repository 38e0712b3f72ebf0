"""The one-click entry, as a person re-runs it: nothing is reinstalled or rebuilt when nothing changed."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_rerunning_the_launcher_rebuilds_nothing() -> None:
    env = dict(os.environ)
    started = time.monotonic()
    out = subprocess.run(
        ["python3", str(ROOT / "launcher.py"), "setup"],
        cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    took_s = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    assert "installing" not in out.stdout and "building" not in out.stdout
    assert "piper environment:" in out.stdout
    assert took_s < 60


def test_launcher_help_names_both_commands() -> None:
    out = subprocess.run(["python3", str(ROOT / "launcher.py"), "--help"], capture_output=True, text=True, timeout=60, check=True)
    assert "python3 launcher.py test" in out.stdout and "--no-browser" in out.stdout
