"""A zero-shot model's conditioning (what it computes from a reference recording: speaker embeddings, latents, a
prompt's mel), kept by the recording's content hash so a voice used again skips that work.

Kept in the worker's memory (least recently used first out) and, where the supervisor names a folder
(``VOICEGEN_CONDITIONING_DIR``), on disk as ``.npz`` of plain arrays (no pickles), so a restarted worker reuses it too.
Standard library + numpy only; Python 3.9.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections import OrderedDict
from typing import Callable, Dict, Optional

import numpy as np

logger = logging.getLogger(__name__)

CONDITIONING_ENV = "VOICEGEN_CONDITIONING_DIR"
Conditioning = Dict[str, np.ndarray]


class ConditioningCache:
    """One per adapter. ``get(key, compute, details)``: the kept conditioning, else ``compute()``'s, kept."""

    def __init__(self, architecture: str, capacity: int = 32, folder: Optional[str] = None, disk_capacity: int = 500) -> None:
        """``folder``: where to keep it on disk (default: the worker's own folder, which the supervisor names)."""
        self.architecture = architecture
        self.capacity = capacity
        self.disk_capacity = disk_capacity
        """Files kept on disk (each one-off reference adds one): the least recently used go first."""
        self.folder = folder if folder is not None else os.environ.get(CONDITIONING_ENV, "")
        self.kept: "OrderedDict[str, Conditioning]" = OrderedDict()
        self.computed = 0
        """How many times ``compute`` ran (what the tests and the job's details count)."""

    def get(self, key: str, compute: Callable[[], Conditioning], details: Optional[Dict[str, object]] = None) -> Conditioning:
        if not re.fullmatch(r"[0-9a-f]{16,128}", key):
            raise ValueError("a conditioning key is a hex digest, got %r" % key)
        found = self.kept.get(key)
        where = "memory"
        if found is None:
            found = self._read(key)
            where = "disk"
        if found is not None:
            if where == "disk":
                try:
                    os.utime(self._path(key))  # recently used: the last to be pruned
                except OSError:
                    pass
            self._keep(key, found)
            if details is not None:
                details["conditioning"] = "reused"
                details["conditioning_from"] = where
            return found
        made = {name: np.asarray(value) for name, value in compute().items()}
        self.computed += 1
        self._keep(key, made)
        self._write(key, made)
        if details is not None:
            details["conditioning"] = "computed"
        return made

    def _keep(self, key: str, value: Conditioning) -> None:
        self.kept[key] = value
        self.kept.move_to_end(key)
        while len(self.kept) > self.capacity:
            self.kept.popitem(last=False)

    def _path(self, key: str) -> str:
        return os.path.join(self.folder, key + ".npz")

    def _read(self, key: str) -> Optional[Conditioning]:
        if not self.folder or not os.path.isfile(self._path(key)):
            return None
        try:
            with np.load(self._path(key), allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError) as exc:  # a torn or foreign file: computed again (and rewritten)
            logger.warning("%s conditioning %s unreadable (%s): computing it again", self.architecture, key[:12], exc)
            return None

    def _write(self, key: str, value: Conditioning) -> None:
        if not self.folder:
            return
        try:
            os.makedirs(self.folder, exist_ok=True)
            handle, scratch = tempfile.mkstemp(dir=self.folder, suffix=".npz.part")
            with os.fdopen(handle, "wb") as out:
                np.savez(out, **value)  # type: ignore[arg-type]  # numpy's stub reads the first keyword as allow_pickle
            os.replace(scratch, self._path(key))
            self._prune()
        except OSError as exc:  # a read-only or full disk: memory still keeps it
            logger.warning("could not keep %s conditioning on disk: %s", self.architecture, exc)

    def _prune(self) -> None:
        files = [os.path.join(self.folder, name) for name in os.listdir(self.folder) if name.endswith(".npz")]
        if len(files) <= self.disk_capacity:
            return
        for path in sorted(files, key=os.path.getmtime)[: len(files) - self.disk_capacity]:
            try:
                os.unlink(path)
            except OSError:
                pass
