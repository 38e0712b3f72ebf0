#!/usr/bin/env python3
"""One-click entry for the voice workstation.

    python3 launcher.py [--host H] [--port P] [--share] [--auth user:pass] [--data-dir D] [--no-browser]
    python3 launcher.py test [pytest args]
    python3 launcher.py keys create --owner NAME | list | revoke ID     (API keys for programs)
    python3 launcher.py worker --broker-url redis://FRONT:6379/0 --database-url postgresql+psycopg://... [--queues Q]
                                                                        (run a server's jobs on this host too)

Sets up the app's own environment (``.venv`` in the project, with uv when it can be installed from
PyPI, else venv + pip), installs the pinned dependencies, builds the default architecture's
environment with visible progress, then starts the app (or runs the tests). Re-running is fast:
nothing is reinstalled unless the pinned requirements changed. Standard library only, Python 3.10+.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
MARKER = VENV / ".voicegen-deps"
BYTECODE_MARKER = VENV / ".voicegen-bytecode"
"""The deps marker whose packages have their bytecode compiled (environments made before the launcher compiled it)."""
UV_VERSION = "0.13.9"
COMMANDS = ("serve", "setup", "test", "keys", "worker")


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def say(message: str) -> None:
    print("[launcher] %s" % message, flush=True)


def lock_files(with_dev: bool) -> List[Path]:
    files = [ROOT / "requirements" / "app.lock"]
    if with_dev:
        files.append(ROOT / "requirements" / "dev.lock")
    return files


def wanted_marker(with_dev: bool) -> str:
    digest = hashlib.sha256()
    digest.update(("%d.%d|" % sys.version_info[:2]).encode())
    for path in lock_files(with_dev):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def installed_marker() -> str:
    try:
        return MARKER.read_text().strip()
    except OSError:
        return ""


def run(command: List[str]) -> None:
    say("$ " + " ".join(str(part) for part in command))
    subprocess.run(command, check=True)


def install(with_dev: bool) -> None:
    if not venv_python().exists():
        say("creating the app environment in %s" % VENV)
        run([sys.executable, "-m", "venv", str(VENV)])
    python = str(venv_python())
    requirements: List[str] = []
    for path in lock_files(with_dev):
        requirements += ["-r", str(path)]
    uv = VENV / ("Scripts/uv.exe" if os.name == "nt" else "bin/uv")
    if not uv.exists():
        try:
            run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "uv==%s" % UV_VERSION])
        except subprocess.CalledProcessError:
            say("uv could not be installed; using pip (slower)")
    if uv.exists():  # uv writes no bytecode unless asked; pip compiles it by default
        run([str(uv), "pip", "install", "--compile-bytecode", "--python", python, *requirements])
    else:
        run([python, "-m", "pip", "install", "--disable-pip-version-check", *requirements])


def ensure_bytecode(marker: str) -> None:
    """Compile the environment's Python files once. Without bytecode every start compiles each module it imports
    (gradio and its dependencies: the app's imports took 7.7 s of CPU instead of 3.0 s here) wherever Python may
    not write it back (PYTHONDONTWRITEBYTECODE, as containers and this machine set; a read-only install)."""
    try:
        if BYTECODE_MARKER.read_text().strip() == marker:
            return
    except OSError:
        pass
    started = time.monotonic()
    say("compiling the app environment's Python files once (each start then reads them instead)")
    # a few files in packages are not meant for this Python (templates, other versions' code): compileall says so, we go on
    subprocess.run([str(venv_python()), "-m", "compileall", "-q", "-j", "0", str(VENV / ("Lib" if os.name == "nt" else "lib"))],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    BYTECODE_MARKER.write_text(marker + "\n")
    say("compiled in %.0f s" % (time.monotonic() - started))


@contextlib.contextmanager
def setup_lock() -> Iterator[None]:
    """One set-up at a time per checkout: two commands started at once on a fresh clone (a front and a worker host)
    would otherwise build the same .venv together and break each other's install; the second waits, then finds it made."""
    with open(ROOT / ".venv-setup.lock", "a+") as handle:
        if sys.platform == "win32":  # (mypy reads this check and skips the other platform's branch)
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
        else:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # the lock goes with the file's closing


def ensure_app_env(with_dev: bool) -> None:
    with setup_lock():
        _ensure_app_env(with_dev)


def _ensure_app_env(with_dev: bool) -> None:
    wanted = wanted_marker(with_dev)
    have = installed_marker()
    # A test set-up satisfies a plain run too (it installs a superset).
    if have == wanted or (not with_dev and have == wanted_marker(True)):
        ensure_bytecode(have)
        return
    started = time.monotonic()
    say("installing the app's pinned dependencies%s" % (" and test tools" if with_dev else ""))
    fresh = not venv_python().exists()
    try:
        install(with_dev)
    except (subprocess.CalledProcessError, OSError) as exc:
        say("set-up failed: %s" % exc)
        if fresh:
            shutil.rmtree(VENV, ignore_errors=True)  # never leave a half-made environment behind
        else:  # an environment that worked stays (a network blip mid-upgrade); the next run tries again
            say("the existing app environment was kept; run the same command again to retry the update")
        raise SystemExit(1) from None
    MARKER.write_text(wanted + "\n")
    BYTECODE_MARKER.write_text(wanted + "\n")  # compiled by the install
    say("app environment ready in %.0f s" % (time.monotonic() - started))


PATH_FLAGS = ("--data-dir", "--auth-file", "--shared-dir")
PATH_ENV = ("VOICEGEN_DATA_DIR", "VOICEGEN_AUTH_FILE", "VOICEGEN_ENVS_DIR")


def absolute_paths(args: List[str], cwd: Path) -> List[str]:
    """Paths given on the command line are the person's, relative to where they ran the command: made
    absolute before the app starts in the checkout."""
    out: List[str] = []
    expect_path = False
    for arg in args:
        if expect_path:
            out.append(str((cwd / Path(arg).expanduser()).resolve()))
            expect_path = False
            continue
        flag, sep, value = arg.partition("=")
        if flag in PATH_FLAGS and sep:
            out.append("%s=%s" % (flag, (cwd / Path(value).expanduser()).resolve()))
        else:
            out.append(arg)
            expect_path = arg in PATH_FLAGS
    return out


def main(argv: List[str]) -> int:
    if sys.version_info < (3, 10):
        print("Python 3.10 or newer is needed (this is %s)" % sys.version.split()[0], file=sys.stderr)
        return 2
    command = argv[0] if argv and argv[0] in COMMANDS else "serve"
    rest = argv[1:] if argv and argv[0] in COMMANDS else argv
    if any(arg in ("-h", "--help") for arg in rest) and command == "serve":
        print(__doc__)
        return 0
    ensure_app_env(with_dev=command == "test")
    cwd = Path.cwd()
    rest = absolute_paths(rest, cwd)
    for name in PATH_ENV:
        if os.environ.get(name):
            os.environ[name] = str((cwd / Path(os.environ[name]).expanduser()).resolve())
    os.chdir(ROOT)
    args = [str(venv_python()), "-m", "app", command, *rest]
    if os.name == "nt":  # no exec on Windows: wait and pass the exit code on
        return subprocess.call(args)
    os.execv(args[0], args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
