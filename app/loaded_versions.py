"""Which version of each character this process last ran: a warm worker keeps characters by folder, so a folder whose
files changed since (a new checkpoint copied over the old one, a newer version fetched from the front) would be
answered with the model the worker loaded before. The version is the folder's files' sizes and times, as the output
cache and provenance see it; a change unloads the character from its worker before the next job."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Dict, Tuple

from app.characters import files_signature
from pipeline.cache import key_of

logger = logging.getLogger(__name__)

Unload = Callable[[str, str, str], bool]
"""(architecture, character, folder) -> whether a worker held it (``Supervisor.unload``)."""


class LoadedVersions:
    def __init__(self, unload: Unload) -> None:
        self.unload = unload
        self._lock = threading.Lock()
        self._seen: Dict[Tuple[str, str], str] = {}

    def check(self, architecture: str, character: str, folder: str) -> None:
        """Before a job for this character: unload it where its files changed since the last job this process sent."""
        version = key_of(files_signature(Path(folder)))
        with self._lock:
            before = self._seen.get((architecture, folder))
            self._seen[(architecture, folder)] = version
        if before is None or before == version:
            return
        try:
            if self.unload(architecture, character, folder):
                logger.info("%s/%s changed on disk since its worker loaded it: unloaded, the job loads the new files",
                            architecture, character)
        except Exception:  # the job goes on (its worker then answers as before); a failed unload must not fail it
            logger.warning("could not unload %s/%s after its files changed", architecture, character, exc_info=True)
