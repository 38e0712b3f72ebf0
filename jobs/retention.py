"""Retention, owned by the job store: which ended jobs go (per owner: one person's many jobs never purge another's
history), and which files may go with them (none that any remaining row names, by key or by a legacy absolute path;
files no row names are swept only after a grace period, since a job writes its file before its row names it). Files
go through the artifact store that holds them (``jobs.artifacts``)."""

from __future__ import annotations

import collections
import functools
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from jobs.artifacts import ArtifactStore, LocalFolderStore, check_prefix, is_legacy_path, under
from jobs.errors import MissingArtifactError
from jobs.store import JobStore

logger = logging.getLogger(__name__)
FILE_COLUMNS = ("output_path", "master_path", "input_path")


def doomed_jobs(rows_newest_first: Sequence[Dict[str, Any]], keep: int, max_bytes: int, max_age_s: float, grace_s: float,
                now: float) -> List[Dict[str, Any]]:
    """Per owner, and per client (a login, else an address: one address asking in many sessions or HTTP requests,
    each its own owner, is still held to one share): ended jobs beyond ``keep`` jobs or ``max_bytes`` of outputs, and
    any older than ``max_age_s``; never one that began in the last ``grace_s`` (its file may still be on its way)."""
    counted: Dict[str, int] = collections.Counter()
    total_bytes: Dict[str, int] = collections.Counter()
    doomed = []
    for row in rows_newest_first:
        over = False
        for holder in {"owner:" + row["owner"], "client:" + (row.get("client") or row["owner"])}:
            counted[holder] += 1
            total_bytes[holder] += int(row["output_bytes"] or 0)
            over = over or counted[holder] > keep or total_bytes[holder] > max_bytes
        age_s = now - float(row["created_at"])
        if age_s > grace_s and (over or age_s > max_age_s):
            doomed.append(row)
    return doomed


Place = Tuple[ArtifactStore, str]
"""A folder of keys (``""``: all of them) in an artifact store where job files live."""


def folder_place(folder: Path, artifacts: Optional[ArtifactStore] = None) -> Place:
    """A local folder as a place: a folder of keys of ``artifacts`` where that store holds it; else the folder as
    ``LocalFolderStore(folder.parent)``, keys under ``folder.name``: the keys ``JobService(inputs_dir=folder)`` writes."""
    if artifacts is not None:
        probe = artifacts.key_of(folder / "probe")
        if probe is not None:
            return artifacts, probe.rpartition("/")[0]
    return LocalFolderStore(folder.parent), check_prefix(folder.name)


def _outermost(places: Sequence[Place]) -> List[Place]:
    return [(artifacts, prefix) for index, (artifacts, prefix) in enumerate(places)
            if not any(other is artifacts and under(prefix, outer) and (prefix != outer or earlier < index)
                       for earlier, (other, outer) in enumerate(places) if earlier != index)]


def _found(value: str, places: Sequence[Place]) -> Optional[Place]:
    """The store and key of the file a row value names (a key, or a legacy absolute path), if a place holds it."""
    for artifacts, prefix in places:
        key = artifacts.key_of(value) if is_legacy_path(value) else value
        if key is not None and under(key, prefix):
            return artifacts, key
    return None


def _names(artifacts: ArtifactStore, key: str, places: Sequence[Place]) -> Set[str]:
    """Every value a row may name this file by: its key and legacy path in its store, and its key in any other store
    of ``places`` that holds the same local file (a folder swept as a folder of one store, named by keys of another)."""
    names = set(artifacts.names(key))
    for path in [name for name in names if is_legacy_path(name)]:
        for other, _ in places:
            other_key = other.key_of(path) if other is not artifacts else None
            if other_key is not None:
                names.update(other.names(other_key))
    return names


def remove_jobs(store: JobStore, rows: Sequence[Dict[str, Any]], places: Sequence[Place] = ()) -> int:
    """Delete these jobs' rows, then each of their files that no remaining row names: through the artifact store of
    ``places`` that holds it; a legacy absolute path outside every place is unlinked as it is."""
    removed = store.delete([row["id"] for row in rows])
    doomed: List[Tuple[Set[str], Callable[[], object]]] = []
    for value in sorted({row[name] for row in rows for name in FILE_COLUMNS if row.get(name)}):
        found = _found(value, places)
        if found is not None:
            artifacts, key = found
            doomed.append((_names(artifacts, key, places), functools.partial(artifacts.delete, key)))
        elif is_legacy_path(value):
            doomed.append(({value}, functools.partial(Path(value).unlink, missing_ok=True)))
        else:
            logger.warning("no artifact store here holds %r: left in place", value)
    still_named = store.referenced_paths(sorted(set().union(*(names for names, _ in doomed))))
    for names, remove in doomed:
        if not names & still_named:
            remove()
    return removed


def prune(store: JobStore, keep: int, max_bytes: int, max_age_s: float, grace_s: float = 120.0, places: Sequence[Place] = ()) -> int:
    rows = doomed_jobs(store.ended_newest_first(), keep, max_bytes, max_age_s, grace_s, time.time())
    return remove_jobs(store, rows, places)


def sweep_orphans(store: JobStore, places: Sequence[Place], grace_s: float, also: Sequence[Place] = ()) -> int:
    """Remove the files of ``places`` that no job names and that nobody wrote for ``grace_s`` (left by a crash between
    writing a file and recording it, or by a removed row), through their artifact store. Rows may name them by keys of
    the stores of ``places`` or ``also`` (the job service's store, where a folder above it is swept)."""
    known = [*places, *also]
    now = time.time()
    candidates: List[Tuple[ArtifactStore, str, Set[str]]] = []
    for artifacts, prefix in places:
        for key in artifacts.keys(prefix):
            try:
                if now - artifacts.modified(key) <= grace_s:
                    continue
            except MissingArtifactError:  # gone meanwhile
                continue
            candidates.append((artifacts, key, _names(artifacts, key, known)))
    named = store.referenced_paths(sorted(set().union(*(names for _, _, names in candidates))))
    removed = 0
    for artifacts, key, names in candidates:
        if not names & named and artifacts.delete(key):
            removed += 1
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
    folders: Tuple[Path, ...] = ()
    """Local folders where job files live (files here no job names are swept): a folder inside the loop's artifact
    store is that store's folder of keys, any other one ``LocalFolderStore(folder.parent)`` (see ``folder_place``)."""
    orphan_grace_s: float = 3600.0
    grace_s: float = 120.0
    prefixes: Tuple[str, ...] = ("",)
    """The folders of keys of the loop's artifact store to sweep ("": all of it); unused without a store."""


class RetentionLoop:
    """Applies a policy now and then on its own thread, off every job's hot path. Files go through ``artifacts`` (the
    job service's store: ``service.artifacts``) and the stores of ``policy.folders``."""

    def __init__(self, store: JobStore, policy: RetentionPolicy, every_s: float = 60.0, artifacts: Optional[ArtifactStore] = None,
                 sweep_every_s: float = 600.0) -> None:
        self.store, self.policy, self.every_s, self.sweep_every_s = store, policy, every_s, sweep_every_s
        self._swept_at = -math.inf
        """The sweep lists every kept file: it runs every ``sweep_every_s``, pruning every ``every_s``."""
        folders = [folder_place(folder, artifacts) for folder in policy.folders]
        self.places: List[Place] = ([(artifacts, "")] if artifacts is not None else []) + folders
        """Where a row's file is looked for (the whole store first)."""
        swept = [(artifacts, check_prefix(prefix)) for prefix in policy.prefixes] if artifacts is not None else []
        self.swept: List[Place] = _outermost(swept + folders)
        """What the sweep lists: each file once (a folder inside a swept folder of keys of the same store is not listed again)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def run_once(self) -> None:
        policy = self.policy
        prune(self.store, policy.keep, policy.max_bytes, policy.max_age_s, policy.grace_s, self.places)
        if time.monotonic() - self._swept_at >= self.sweep_every_s:
            self._swept_at = time.monotonic()
            sweep_orphans(self.store, self.swept, policy.orphan_grace_s, also=self.places)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.run_once()
            except Exception:  # a thread boundary: a failed round (the store down) is logged; the next one tries again
                logger.exception("retention failed")

    def stop(self) -> None:
        self._stop.set()
