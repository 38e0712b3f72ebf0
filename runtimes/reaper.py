"""No orphans across app restarts: a record of live workers per app process, and reaping what an app
that died left behind (workers and stale private socket directories). Each worker's entry is its
handle's ``record_entry`` (it names its environment kind); the kind reaps what its entry describes."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import psutil

from runtimes.envkinds.registry import EnvironmentKinds
from runtimes.errors import EnvironmentBuildError

logger = logging.getLogger(__name__)

PRIVATE_DIR_PREFIX = "voicegen-"


def make_private_dir() -> Path:
    """A ``0700`` directory for this app's sockets, named by our pid so a later app can clean it up."""
    return Path(tempfile.mkdtemp(prefix="%s%d-" % (PRIVATE_DIR_PREFIX, os.getpid())))


def clean_stale_private_dirs() -> List[Path]:
    removed = []
    pattern = re.compile(r"^%s(\d+)-" % re.escape(PRIVATE_DIR_PREFIX))
    for entry in Path(tempfile.gettempdir()).glob(PRIVATE_DIR_PREFIX + "*"):
        match = pattern.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not psutil.pid_exists(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


LEGACY_KIND = "venv"
"""The kind of an entry written before entries named their kind (every worker was a venv's then)."""


class WorkerRecord:
    """``<run_dir>/workers-<app pid>.json``: the entries of this app's live workers (each its handle's
    ``record_entry``: its kind, and what that kind needs to find it again, e.g. a pid and its start time)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / ("workers-%d.json" % os.getpid())

    def write(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Replace the record atomically; a unique temporary name, so writers never share one."""
        rows = [{**entry, "owner": os.getpid()} for entry in entries]
        fd, tmp = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.run_dir)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(rows))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def reap_leftovers(self, kinds: EnvironmentKinds) -> List[Dict[str, Any]]:
        """End the workers recorded by app processes that no longer exist, each by its own kind."""
        reaped: List[Dict[str, Any]] = []
        for path in self.run_dir.glob("workers-*.json"):
            try:
                owner = int(path.stem.split("-", 1)[1])
                rows = json.loads(path.read_text())
            except (ValueError, OSError):
                path.unlink(missing_ok=True)
                continue
            if owner == os.getpid() or psutil.pid_exists(owner):
                continue
            for row in rows:
                try:
                    kind = kinds.named(str(row.get("kind", LEGACY_KIND)))
                    if kind.reap_leftover(row):
                        reaped.append(row)
                except (EnvironmentBuildError, AttributeError, KeyError, TypeError, ValueError) as exc:  # an unknown kind, a malformed row
                    logger.warning("cannot reap a worker an earlier app recorded (%r): %s", row, exc)
            path.unlink(missing_ok=True)
        if reaped:
            logger.warning("reaped %d worker(s) left by an earlier app: %s", len(reaped), reaped)
        return reaped
