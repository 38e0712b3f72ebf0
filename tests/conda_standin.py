"""A stand-in for a conda tool (no conda channel is reachable in tests): an executable that answers the
commands the conda kind runs as conda does. ``--version`` prints a version; ``create --yes --prefix P
[--override-channels] [--channel C ...] spec ...`` prints conda's progress lines and makes ``P`` a real environment of a local
Python of the asked ``python=X.Y`` (a venv of it, with pip when ``pip`` is asked), with ``conda-meta/history``
as conda writes it. It knows python and pip only: any other spec fails as conda fails on a package no
channel has (``PackagesNotFoundError``, exit 1)."""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STANDIN_VERSION = "24.1.2"

SCRIPT = r'''
import argparse, datetime, os, re, subprocess, sys
sys.path.insert(0, %(root)r)
from runtimes.envspec import find_interpreter

if sys.argv[1:] == ["--version"]:
    print("conda %(version)s")
    sys.exit(0)
parser = argparse.ArgumentParser(prog="conda")
sub = parser.add_subparsers(dest="command", required=True)
create = sub.add_parser("create")
create.add_argument("-y", "--yes", action="store_true")
create.add_argument("-p", "--prefix", required=True)
create.add_argument("-c", "--channel", action="append", default=[])
create.add_argument("--override-channels", action="store_true")
create.add_argument("specs", nargs="*")
args = parser.parse_args()
if not args.yes:
    sys.exit("the stand-in never prompts: pass --yes")
channels = args.channel + ([] if args.override_channels else ["defaults"])
print("Channels:\n - " + "\n - ".join(channels) + "\nPlatform: linux-64", flush=True)
print("Collecting package metadata (repodata.json): done", flush=True)
print("Solving environment: failed" if any(re.split(r"[=<>!~ ]", s)[0] not in ("python", "pip") for s in args.specs)
      else "Solving environment: done", flush=True)
unknown = [s for s in args.specs if re.split(r"[=<>!~ ]", s)[0] not in ("python", "pip")]
if unknown:
    print("\nPackagesNotFoundError: The following packages are not available from current channels:\n", file=sys.stderr)
    for spec in unknown:
        print("  - %%s" %% spec, file=sys.stderr)
    print("\nCurrent channels:\n\n" + "\n".join("  - https://conda.anaconda.org/%%s/linux-64" %% c for c in channels), file=sys.stderr)
    sys.exit(1)
python = next((re.split(r"=+", s, maxsplit=1)[1] for s in args.specs if s.startswith("python=")), "%(default_python)s")
if os.path.exists(args.prefix) and os.listdir(args.prefix):
    sys.exit("CondaValueError: prefix already exists: %%s" %% args.prefix)
interpreter = find_interpreter(python)
if interpreter is None:
    print("\nPackagesNotFoundError: The following packages are not available from current channels:\n\n  - python=%%s" %% python,
          file=sys.stderr)
    sys.exit(1)
print("\n## Package Plan ##\n\n  environment location: %%s\n" %% args.prefix, flush=True)
print("Downloading and Extracting Packages: ...working... done", flush=True)
print("Preparing transaction: done", flush=True)
print("Verifying transaction: done", flush=True)
print("Executing transaction: ...working...", flush=True)
names = [re.split(r"[=<>!~ ]", s)[0] for s in args.specs]
command = [interpreter, "-m", "venv", args.prefix] + ([] if "pip" in names else ["--without-pip"])
done = subprocess.run(command, capture_output=True, text=True)
if done.returncode != 0:
    print(done.stdout + done.stderr, file=sys.stderr)
    sys.exit("CondaError: could not link python into %%s" %% args.prefix)
os.makedirs(os.path.join(args.prefix, "conda-meta"), exist_ok=True)
with open(os.path.join(args.prefix, "conda-meta", "history"), "w") as history:
    history.write("==> %%s <==\n# cmd: %%s\n# conda version: %(version)s\n" %% (
        datetime.datetime.now().strftime("%%Y-%%m-%%d %%H:%%M:%%S"), " ".join(sys.argv)))
    for spec in args.specs:
        history.write("+%%s/linux-64::%%s\n" %% (channels[0], spec))
    history.write("# update specs: %%r\n" %% (args.specs,))
print("done\n#\n# To activate this environment, use\n#\n#     $ conda activate %%s\n#" %% args.prefix, flush=True)
'''


def write_conda_standin(folder: Path, name: str = "conda", default_python: str = "3.11") -> Path:
    """Write the stand-in as ``folder/name`` (executable, run by this Python) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    body = SCRIPT % {"root": str(PROJECT_ROOT), "version": STANDIN_VERSION, "default_python": default_python}
    path.write_text("#!%s\n%s" % (sys.executable, body), encoding="utf-8")
    path.chmod(0o755)
    return path
