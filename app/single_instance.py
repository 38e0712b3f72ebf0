"""One app per data folder. Two apps over one folder share its job database: the second's start-up
recovery would mark the first's running jobs interrupted and run its queued jobs again. The lock is
the kernel's (through ``filelock``), so it goes with the process, also when the process is killed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict

from filelock import BaseFileLock, FileLock, Timeout

LOCK_FILE = ".app.lock"
INSTANCE_FILE = ".app-instance.json"
"""Who holds the lock, for the message a second launch prints (the lock itself is the truth)."""


class AlreadyRunning(Exception):
    def __init__(self, data_dir: Path, holder: Dict[str, Any]) -> None:
        self.url = str(holder.get("url") or "")
        super().__init__("Voice workstation is already running on this data folder (%s; pid %s): %s" % (
            data_dir, holder.get("pid", "?"), self.url or "address unknown"))


def hold_data_folder(data_dir: Path, url: str) -> BaseFileLock:
    """Take the folder for this process (keep the returned lock referenced), or raise AlreadyRunning."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(data_dir / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise AlreadyRunning(data_dir, _holder(data_dir)) from None
    (data_dir / INSTANCE_FILE).write_text(json.dumps({"pid": os.getpid(), "url": url}), encoding="utf-8")
    return lock


def _holder(data_dir: Path) -> Dict[str, Any]:
    try:
        holder = json.loads((data_dir / INSTANCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}
