"""The model manager the app's actions call: catalogue, downloads, import, disk use, deletion."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import threading
import urllib.error
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from models.catalogue import RUNNABLE_NOTE, Catalogue, Entry, load_catalogue, parse_entries
from models.errors import CatalogueError, ModelError
from models.fetch import Fetcher
from models.importer import Describe, import_model
from models.installer import Installer, InstallTask
from models.store import Layout, delete, installed
from models.urls import UrlPolicy, shown
from runtimes.inspection import Manifest

logger = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent / "catalogues"
MAX_CATALOGUE_BYTES = 20 << 20
"""A catalogue fetched from a URL is refused above this (the shipped one of 421 characters is ~0.3 MB)."""


class ModelManager:
    def __init__(self, data_dir: Path, runnable: Dict[str, Describe], hf_endpoint: Optional[str] = None,
                 max_parallel_downloads: int = 3, timeout_s: float = 30.0, allow_private_urls: Sequence[str] = (),
                 manifests: Sequence[Manifest] = ()) -> None:
        """``allow_private_urls``: networks (``10.0.5.0/24``, ``127.0.0.1``) fetched though not public, e.g. a private
        mirror; by default only public addresses are (``models.urls``). ``manifests``: the architectures' own facts
        this manager reads (``detect`` for imports; ``hay_say_names`` and assets for the established app's lists)."""
        self.layout = Layout(data_dir)
        self.runnable = runnable
        """Architectures this app runs, with their folder describers."""
        self.manifests = tuple(manifests)
        self.timeout_s = timeout_s
        self.policy = UrlPolicy.allowing(allow_private_urls)
        self.installer = Installer(self.layout, Fetcher(hf_endpoint, timeout_s, policy=self.policy), max_parallel_downloads)
        self._catalogue_lock = threading.Lock()
        self._catalogue: Optional[Catalogue] = None

    # catalogue
    def catalogue_files(self) -> List[Path]:
        shipped = sorted(SHIPPED_DIR.glob("*.json"))
        own = sorted(self.layout.catalogues_dir.glob("*.json")) if self.layout.catalogues_dir.is_dir() else []
        return shipped + own

    @property
    def catalogue(self) -> Catalogue:
        with self._catalogue_lock:
            if self._catalogue is None:
                self._catalogue = load_catalogue(self.catalogue_files(), self.manifests)
            return self._catalogue

    def reload(self) -> Catalogue:
        with self._catalogue_lock:
            self._catalogue = None
        return self.catalogue

    def add_catalogue(self, data: bytes, file_name: str) -> Dict[str, Any]:
        """Keep a catalogue file (ours, or the established app's list as it is) in the data folder."""
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CatalogueError("%s is not JSON: %s" % (file_name, exc)) from None
        entries, problems = parse_entries(parsed, file_name, self.manifests)
        if not entries:
            raise CatalogueError("%s has no usable entries%s" % (file_name, (": " + "; ".join(problems[:3])) if problems else ""))
        self.layout.catalogues_dir.mkdir(parents=True, exist_ok=True)
        (self.layout.catalogues_dir / Path(file_name).name).write_bytes(data)
        self.reload()
        return {"file": Path(file_name).name, "entries": len(entries), "skipped": problems}

    def refresh_from_url(self, url: str) -> Dict[str, Any]:
        """Fetch a catalogue (a public address, or the operator's allowed networks; at most ``MAX_CATALOGUE_BYTES``)."""
        if not url.startswith(("https://", "http://")):
            raise CatalogueError("a catalogue URL must start with https:// or http://")
        self.policy.check(url)
        too_big = CatalogueError("the catalogue at %s is larger than %d MB; refused" % (shown(url), MAX_CATALOGUE_BYTES >> 20))
        try:
            with self.policy.guard(), self.policy.opener().open(url, timeout=self.timeout_s) as response:
                length = response.headers.get("Content-Length") or ""
                if length.isdigit() and int(length) > MAX_CATALOGUE_BYTES:
                    raise too_big
                data = response.read(MAX_CATALOGUE_BYTES + 1)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = "HTTP %d" % exc.code if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", None) or exc
            raise CatalogueError("the catalogue at %s could not be fetched: %s" % (shown(url), reason)) from None
        if len(data) > MAX_CATALOGUE_BYTES:
            raise too_big
        name = Path(url.split("?")[0]).name
        if not name.endswith(".json") or not name.split(".")[0]:
            name = "remote-%s.json" % hashlib.sha256(url.encode()).hexdigest()[:10]
        return self.add_catalogue(data, name)

    def search(self, query: str = "", architecture: str = "", kind: str = "character") -> List[Dict[str, Any]]:
        """Matching entries, what can be used here first: characters of installed architectures, then assets and
        shared models, then the architectures this app does not run."""
        rows = [self.row(entry) for entry in self.catalogue.search(query, architecture, kind)]
        rows.sort(key=lambda row: (row["status"] == RUNNABLE_NOTE, row["kind"] != "character", row["architecture"],
                                   row["name"].lower()))
        return rows

    def row(self, entry: Entry) -> Dict[str, Any]:
        task = self.installer.tasks.get(entry.id)
        downloading = task is not None and task.state in ("queued", "downloading")
        return {"id": entry.id, "name": entry.name, "architecture": entry.architecture, "kind": entry.kind,
                "status": "downloading" if downloading else "installed" if self.layout.is_installed(entry)
                else "available" if entry.architecture in self.runnable else RUNNABLE_NOTE,
                "size_mb": None if entry.size_bytes is None else round(entry.size_bytes / 1e6, 1),
                "license": entry.license, "creator": entry.creator, "origin": entry.origin,
                "sources": sorted({f.source for f in entry.files}), "depends_on": list(entry.depends_on)}

    # downloads
    def download(self, entry_id: str) -> Dict[str, Any]:
        entry = self.catalogue.get(entry_id)
        if entry.architecture not in self.runnable:
            raise ModelError("%s: %s (%s); it stays in the catalogue for when it is" % (entry.name, RUNNABLE_NOTE, entry.architecture))
        return self.installer.start(self.catalogue, entry).summary()

    def downloads(self) -> List[Dict[str, Any]]:
        return self.installer.status()

    def cancel(self, entry_id: str) -> bool:
        entry_id = self.catalogue.get(entry_id).id if entry_id not in self.installer.tasks else entry_id
        return self.installer.cancel(entry_id)

    def wait(self, entry_id: str, timeout_s: Optional[float] = None) -> InstallTask:
        return self.installer.wait(entry_id, timeout_s)

    # installed
    def installed(self) -> List[Dict[str, Any]]:
        return [dict(item, path=None, size_mb=round(item["size_bytes"] / 1e6, 1)) for item in installed(self.layout)]

    def disk_usage(self) -> Dict[str, Any]:
        by_arch: Dict[str, int] = {}
        total = 0
        for item in installed(self.layout):
            key = item["architecture"] or "shared assets"
            by_arch[key] = by_arch.get(key, 0) + item["size_bytes"]
            total += item["size_bytes"]
        return {"total_mb": round(total / 1e6, 1), "by_architecture_mb": {k: round(v / 1e6, 1) for k, v in sorted(by_arch.items())}}

    def delete(self, item_id: str) -> Dict[str, Any]:
        matches = [item for item in installed(self.layout) if item["id"] == item_id]
        if not matches:
            raise ModelError("nothing installed as %r (see the Models tab's installed list)" % item_id)
        freed = delete(self.layout, matches[0])
        return {"deleted": item_id, "freed_mb": round(freed / 1e6, 1)}

    def import_model(self, source: Path, name: str, license_name: str = "", architecture: Optional[str] = None) -> Dict[str, str]:
        return import_model(self.layout, source, name, license_name, self.runnable, architecture or None, manifests=self.manifests)

    def close(self) -> None:
        self.installer.shutdown()

