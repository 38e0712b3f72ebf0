"""Model downloads beyond one host: the front's Models tab sends a catalogue character's download to ``download.io``;
a worker host that takes that queue runs it with its own model manager (in the manager's download threads: the task
returns at once, so a slow download never holds a generation slot), reports progress over Redis, and publishes the
installed character to the shared store; the front then fetches it (verified) and lists it like a local install.

Shared assets (content encoders, pitch models) install where they are needed: a host's download of a character
brings the assets it depends on with it; an asset alone is installed on each host (the front refuses it here)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, List

from app.character_sharing import CharacterSharing
from jobs.distributed.bus import DOWNLOAD_CHANNEL, Bus
from models.errors import ModelError
from models.manager import ModelManager

logger = logging.getLogger(__name__)
ENDED = ("installed", "failed", "cancelled")


class FrontDownloads:
    """The front's side: what /download_model, /downloads and /cancel_download answer with a broker."""

    def __init__(self, manager: ModelManager, bus: Bus, send: Callable[[str], None], sharing: CharacterSharing) -> None:
        self.manager, self.bus, self.send, self.sharing = manager, bus, send, sharing
        self._lock = threading.Lock()
        self._latest: Dict[str, Dict[str, Any]] = {}
        bus.listen(DOWNLOAD_CHANNEL, self._on_message, "download-progress")

    def start(self, entry_id: str) -> Dict[str, Any]:
        entry = self.manager.catalogue.get(entry_id)
        if entry.architecture not in self.manager.runnable:
            raise ModelError("%s: its architecture (%s) is not installed here" % (entry.name, entry.architecture))
        if entry.kind != "character":
            raise ModelError("%s is a shared %s: on a server with worker hosts it installs with the characters that need "
                             "it, on the host that downloads them" % (entry.name, entry.kind))
        with self._lock:
            current = self._latest.get(entry.id)
            if current is not None and current["state"] not in ENDED:
                return dict(current)
            summary = {"id": entry.id, "name": entry.name, "architecture": entry.architecture, "state": "queued",
                       "error": "", "flags": ["sent to download.io"], "done_bytes": 0, "total_bytes": None, "speed_mb_s": 0.0,
                       "eta_s": None, "files": [], "host": None}
            self._latest[entry.id] = summary
        self.send(entry.id)
        return dict(summary)

    def downloads(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [dict(summary) for summary in self._latest.values()]

    def cancel(self, entry_id: str) -> bool:
        with self._lock:
            current = self._latest.get(entry_id)
        if current is None or current["state"] in ENDED:
            return False
        self.bus.download({"cancel": entry_id})
        return True

    def close(self) -> None:
        self.bus.close()

    def _on_message(self, message: Dict[str, Any]) -> None:
        if "cancel" in message or "id" not in message:
            return
        if message["state"] == "installed" and message.get("folder"):
            try:  # the front lists what it has: its own verified copy of the host's install
                self.sharing.fetch(message["architecture"], message["folder"])
            except Exception as exc:
                message = dict(message, state="failed", error="installed on %s but not copied here: %s" % (message.get("host"), exc))
        with self._lock:
            self._latest[str(message["id"])] = dict(message)


class HostDownloads:
    """A ``download.io`` host's side: start the download, report it, share what was installed."""

    def __init__(self, manager: ModelManager, bus: Bus, sharing: CharacterSharing, host: str, report_every_s: float = 0.5) -> None:
        self.manager, self.bus, self.sharing, self.host = manager, bus, sharing, host
        self.report_every_s = report_every_s
        bus.listen(DOWNLOAD_CHANNEL, self._on_message, "download-cancels")

    def start(self, entry_id: str) -> None:
        try:
            summary = self.manager.download(entry_id)
        except ModelError as exc:
            self.bus.download({"id": entry_id, "name": entry_id, "architecture": "", "state": "failed", "error": str(exc),
                               "flags": [], "done_bytes": 0, "total_bytes": None, "speed_mb_s": 0.0, "eta_s": None, "files": [],
                               "host": self.host})
            return
        threading.Thread(target=self._follow, args=(summary["id"],), name="download-%s" % entry_id[:20], daemon=True).start()

    def _follow(self, entry_id: str) -> None:
        while True:
            summary = next((d for d in self.manager.downloads() if d["id"] == entry_id), None)
            if summary is None:
                return
            if summary["state"] in ENDED:
                break
            self.bus.download(dict(summary, host=self.host))
            time.sleep(self.report_every_s)
        final = dict(summary, host=self.host)
        if summary["state"] == "installed":
            entry = self.manager.catalogue.get(entry_id)
            folder = self.manager.layout.target(entry).name
            try:
                self.sharing.publish(entry.architecture, folder)
                final["folder"] = folder
            except Exception as exc:
                final.update(state="failed", error="installed on %s but not shared: %s" % (self.host, exc))
        self.bus.download(final)

    def _on_message(self, message: Dict[str, Any]) -> None:
        if "cancel" in message:
            try:
                self.manager.cancel(str(message["cancel"]))
            except ModelError:
                pass  # not downloading here
