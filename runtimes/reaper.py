"""No orphans across app restarts: a record of live workers per app process, and reaping what an app
that died left behind (workers and stale private socket directories)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

import psutil

logger = logging.getLogger(__name__)

PRIVATE_DIR_PREFIX = "voicegen-"


def create_time(pid: int) -> Optional[float]:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


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


class WorkerRecord:
    """``<run_dir>/workers-<app pid>.json``: the pids (and start times) of this app's live workers."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / ("workers-%d.json" % os.getpid())

    def write(self, pids: Sequence[int]) -> None:
        """Replace the record atomically; a unique temporary name, so writers never share one."""
        rows = [{"pid": pid, "create_time": create_time(pid), "owner": os.getpid()} for pid in pids]
        fd, tmp = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.run_dir)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(rows))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def reap_leftovers(self) -> List[int]:
        """Kill the process groups of workers recorded by app processes that no longer exist."""
        reaped: List[int] = []
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
                pid = int(row["pid"])
                if create_time(pid) == row.get("create_time"):  # not a recycled pid
                    try:
                        os.killpg(pid, signal.SIGKILL)
                        reaped.append(pid)
                    except (ProcessLookupError, PermissionError):
                        pass
            path.unlink(missing_ok=True)
        if reaped:
            logger.warning("reaped %d worker(s) left by an earlier app: %s", len(reaped), reaped)
        return reaped
