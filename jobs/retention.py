"""Retention, owned by the job store: which ended jobs go (per owner: one person's many jobs never purge another's
history), and which files may go with them (none that any remaining row names; files no row names are swept
only after a grace period, since a job writes its file before its row names it)."""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence, Tuple

from jobs.store import JobStore

logger = logging.getLogger(__name__)
FILE_COLUMNS = ("output_path", "master_path", "input_path")


def doomed_jobs(rows_newest_first: Sequence[Dict[str, Any]], keep: int, max_bytes: int, max_age_s: float, grace_s: float,
                now: float) -> List[Dict[str, Any]]:
    """Per owner: ended jobs beyond ``keep`` jobs or ``max_bytes`` of outputs, and any older than ``max_age_s``;
    never one that began in the last ``grace_s`` (its file may still be on its way to a person)."""
    counted: Dict[str, int] = collections.Counter()
    total_bytes: Dict[str, int] = collections.Counter()
    doomed = []
    for row in rows_newest_first:
        owner = row["owner"]
        counted[owner] += 1
        total_bytes[owner] += int(row["output_bytes"] or 0)
        age_s = now - float(row["created_at"])
        if age_s > grace_s and (counted[owner] > keep or total_bytes[owner] > max_bytes or age_s > max_age_s):
            doomed.append(row)
    return doomed


def remove_jobs(store: JobStore, rows: Sequence[Dict[str, Any]]) -> int:
    """Delete these jobs' rows, then each of their files that no remaining row names."""
    removed = store.delete([row["id"] for row in rows])
    paths = {row[name] for row in rows for name in FILE_COLUMNS if row.get(name)}
    still_named = store.referenced_paths(sorted(paths))
    for path in paths - still_named:
        Path(path).unlink(missing_ok=True)
    return removed


def prune(store: JobStore, keep: int, max_bytes: int, max_age_s: float, grace_s: float = 120.0) -> int:
    return remove_jobs(store, doomed_jobs(store.ended_newest_first(), keep, max_bytes, max_age_s, grace_s, time.time()))


def sweep_orphans(store: JobStore, folders: Iterable[Path], grace_s: float) -> int:
    """Remove files under ``folders`` that no job names and that nobody touched for ``grace_s`` (left by a crash
    between writing a file and recording it, or by a removed row); empty day folders go too."""
    now = time.time()
    candidates: List[Path] = []
    for folder in folders:
        if folder.is_dir():
            candidates += [p for p in folder.rglob("*") if p.is_file() and now - p.stat().st_mtime > grace_s]
    named = store.referenced_paths([str(p) for p in candidates])
    removed = 0
    for path in candidates:
        if str(path) not in named:
            path.unlink(missing_ok=True)
            removed += 1
    for folder in folders:
        for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True) if folder.is_dir() else []:
            if not any(sub.iterdir()):
                sub.rmdir()
    if removed:
        logger.info("swept %d file(s) no job names", removed)
    return removed


@dataclass(frozen=True)
class RetentionPolicy:
    keep: int
    """Ended jobs kept per owner."""
    max_bytes: int
    """Bytes of outputs kept per owner."""
    max_age_s: float
    folders: Tuple[Path, ...]
    """Where job files live: files here that no job names are swept."""
    orphan_grace_s: float = 3600.0
    grace_s: float = 120.0


class RetentionLoop:
    """Applies a policy now and then on its own thread, off every job's hot path."""

    def __init__(self, store: JobStore, policy: RetentionPolicy, every_s: float = 60.0) -> None:
        self.store, self.policy, self.every_s = store, policy, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def run_once(self) -> None:
        policy = self.policy
        prune(self.store, policy.keep, policy.max_bytes, policy.max_age_s, policy.grace_s)
        sweep_orphans(self.store, policy.folders, policy.orphan_grace_s)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.run_once()
            except Exception:  # a thread boundary: a failed round (the store down) is logged; the next one tries again
                logger.exception("retention failed")

    def stop(self) -> None:
        self._stop.set()
