"""Runtime controls: warm, pin, unload and stop workers, keep-alive, the status (full for the operator, short for
others) and the memory plot's samples."""

from __future__ import annotations

import collections
import logging
import threading
import time
from datetime import datetime
from typing import Any, Deque, Dict, List, Optional, Tuple

from app.access import Access
from app.catalog import Catalog
from app.errors import UserFacingError
from app.settings import Settings
from runtimes.errors import RemoteError, RuntimeLayerError
from runtimes.supervisor import Supervisor

logger = logging.getLogger(__name__)


def configured_pairs(text: str) -> List[Tuple[str, str]]:
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        architecture, sep, character = item.partition(":")
        if not sep or not architecture or not character:
            raise UserFacingError("%r is not architecture:character" % item)
        pairs.append((architecture, character))
    return pairs


class RuntimeControls:
    def __init__(self, settings: Settings, catalog: Catalog, supervisor: Supervisor, access: Access) -> None:
        self.settings, self.catalog, self.supervisor, self.access = settings, catalog, supervisor, access
        self._memory_samples: Deque[Dict[str, Any]] = collections.deque(maxlen=900)
        self._closed = threading.Event()

    def prewarm_configured(self) -> None:
        """Start the workers named by the ``prewarm`` setting (failures are only logged: the app still starts)."""
        setting, default = self.settings.prewarm.strip(), self.settings.default_architecture
        if setting == "default":
            characters = self.catalog.characters(default) if default in self.catalog.manifests else []
            pairs = [(default, characters[0].id)] if characters else []
        else:
            pairs = configured_pairs(setting) if setting else []
        for architecture, character in pairs:
            try:
                self.prewarm(architecture, character)
            except UserFacingError as exc:
                logger.warning("could not prewarm %s:%s: %s", architecture, character, exc)

    def pin_configured(self) -> None:
        if self.settings.pinned.strip():
            for architecture, character in configured_pairs(self.settings.pinned):
                self.pin(architecture, character, True)

    def runtime_status(self, username: Optional[str] = None) -> List[Dict[str, Any]]:
        """The full status for the operator; for anyone else on a shared server which models are warm and
        how long the lines are (no pids, paths or log tails)."""
        rows = self.supervisor.status()
        if self.access.is_admin(username):
            return rows
        return [{"architecture": row["architecture"], "characters": row["characters"], "state": row["state"],
                 "jobs_in_line": row["jobs_in_line"]} for row in rows if row.get("pid")]

    def sample_memory(self) -> None:
        """One reading of each live worker's memory, for the Runtimes tab's plot (the last 30 minutes)."""
        now = time.time()
        for row in self.supervisor.status():
            if row.get("pid"):
                self._memory_samples.append({"time": datetime.fromtimestamp(now).strftime("%H:%M:%S"), "worker": row["name"],
                                             "memory_mb": float(row.get("memory_mb") or 0.0)})

    def start_memory_sampler(self, interval_s: float = 2.0) -> None:
        def run() -> None:
            while not self._closed.wait(interval_s):
                try:
                    self.sample_memory()
                except Exception:  # a thread boundary: a failed reading must not end the sampling
                    logger.exception("memory sampling failed")

        threading.Thread(target=run, name="memory-sampler", daemon=True).start()

    def memory_history(self) -> List[Dict[str, Any]]:
        return list(self._memory_samples)

    def memory_note(self) -> str:
        return self.supervisor.memory_note()

    def prewarm(self, architecture: str, character_id: str) -> str:
        """Start (or retry) a character's worker now."""
        character = self.catalog.character(architecture, character_id)
        try:
            self.supervisor.prewarm(architecture, character.id, character.model_path)
        except RemoteError as exc:
            raise UserFacingError("%s could not load %s: %s" % (architecture, character.id, exc.message)) from exc
        except RuntimeLayerError as exc:
            raise UserFacingError(str(exc)) from exc
        return "%s / %s is warm" % (architecture, character.id)

    def pin(self, architecture: str, character_id: str, pinned: bool) -> str:
        character = self.catalog.character(architecture, character_id)
        self.supervisor.pin(architecture, character.id, character.model_path, pinned)
        return "%s / %s %s" % (architecture, character_id, "pinned: never unloaded" if pinned else "unpinned")

    def set_keep_alive(self, architecture: str, character_id: str, keep_alive_s: Optional[float]) -> str:
        """Idle seconds before this character is unloaded (its worker stops when it holds nothing else):
        -1 forever, 0 right after each job, None the default."""
        if keep_alive_s is not None and keep_alive_s < 0 and keep_alive_s != -1:
            raise UserFacingError("keep-alive is seconds >= 0, or -1 for forever, got %g" % keep_alive_s)
        character = self.catalog.character(architecture, character_id)
        self.supervisor.set_keep_alive(architecture, character.id, character.model_path, keep_alive_s)
        shown = "the default" if keep_alive_s is None else "forever" if keep_alive_s < 0 else "%g s" % keep_alive_s
        return "%s / %s keep-alive: %s" % (architecture, character_id, shown)

    def stop_worker(self, name: str) -> str:
        if not self.supervisor.stop(name):
            raise UserFacingError("no running worker named %r" % name)
        return "stopped %s" % name

    def unload(self, architecture: str, character_id: str) -> str:
        """Free one character's memory; its worker keeps serving the others."""
        character = self.catalog.character(architecture, character_id)
        try:
            unloaded = self.supervisor.unload(architecture, character.id, character.model_path)
        except RuntimeLayerError as exc:
            raise UserFacingError(str(exc)) from exc
        if not unloaded:
            raise UserFacingError("%s / %s is not loaded" % (architecture, character.id))
        return "%s / %s unloaded" % (architecture, character.id)

    def close(self) -> None:
        self._closed.set()
