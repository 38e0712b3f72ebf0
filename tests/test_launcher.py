"""The one-click entry, as a person runs it: on a fresh tree it sets everything up; re-run, it
reinstalls and rebuilds nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent


def fresh_tree(target: Path) -> Path:
    """The project's files as a clone has them (tracked and new, nothing git ignores: no .venv, no data)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=str(ROOT),
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def setup(tree: Path) -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEGEN_") and k != "VIRTUAL_ENV"}
    started = time.monotonic()
    out = subprocess.run(["python3", str(tree / "launcher.py"), "setup"], cwd=str(tree), env=env, capture_output=True, text=True,
                         timeout=900, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout, time.monotonic() - started


def test_launcher_sets_up_a_fresh_tree_then_rebuilds_nothing(tmp_path: Path) -> None:
    tree = fresh_tree(tmp_path / "clone")
    assert not (tree / ".venv").exists() and not (tree / "data").exists()
    first, _ = setup(tree)
    assert "installing the app's pinned dependencies" in first and "building the piper environment" in first
    assert (tree / ".venv").is_dir() and (tree / "data" / "envs" / "piper").is_dir()
    second, took_s = setup(tree)
    lines: List[str] = second.splitlines()
    assert not any("installing" in line or "building" in line for line in lines), second
    assert "piper environment (venv):" in second and took_s < 60

    # a relative --data-dir is the person's, relative to where they ran the command
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEGEN_") and k != "VIRTUAL_ENV"}
    out = subprocess.run(["python3", str(tree / "launcher.py"), "setup", "--data-dir", "my-data"], cwd=str(elsewhere), env=env,
                         capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (elsewhere / "my-data" / "envs" / "piper").is_dir() and not (tree / "my-data").exists()

    # an update that fails (a package the registry does not have: like a network blip) keeps the working env
    lock = tree / "requirements" / "app.lock"
    lock.write_text(lock.read_text() + "voicegen-no-such-package-anywhere==9.9.9\n")
    out = subprocess.run(["python3", str(tree / "launcher.py"), "setup"], cwd=str(tree), env=env, capture_output=True, text=True,
                         timeout=900, check=False)
    assert out.returncode != 0 and "existing app environment was kept" in out.stdout
    assert subprocess.run([str(tree / ".venv" / "bin" / "python"), "-c", "import gradio"], check=False).returncode == 0


def test_launcher_help_names_both_commands() -> None:
    out = subprocess.run(["python3", str(ROOT / "launcher.py"), "--help"], capture_output=True, text=True, timeout=60, check=True)
    assert "python3 launcher.py test" in out.stdout and "--no-browser" in out.stdout


def test_two_commands_started_at_once_set_up_one_after_the_other(tmp_path: Path) -> None:
    """A front and a worker host launched together on a fresh clone: the second waits for the first's set-up (each holds
    the checkout's set-up lock while it installs) instead of both writing one .venv (seen: 'Text file busy')."""
    tree = fresh_tree(tmp_path / "tree")
    log = tmp_path / "order.log"
    holder = ("import launcher, time, sys; lock = launcher.setup_lock(); lock.__enter__(); "
              "open(sys.argv[1], 'a').write('%s in\\n'); time.sleep(1.5); open(sys.argv[1], 'a').write('%s out\\n'); "
              "lock.__exit__(None, None, None)")
    first = subprocess.Popen(["python3", "-c", holder % ("first", "first"), str(log)], cwd=str(tree))
    time.sleep(0.5)
    second = subprocess.Popen(["python3", "-c", holder % ("second", "second"), str(log)], cwd=str(tree))
    assert first.wait(30) == 0 and second.wait(30) == 0
    assert log.read_text().split("\n")[:4] == ["first in", "first out", "second in", "second out"]
