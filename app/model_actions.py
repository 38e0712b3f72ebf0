"""What the Models tab and its API endpoints do: the model manager's answers, its errors turned into
messages a person sees (never a traceback), a deleted character unloaded from its worker first."""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, TypeVar

from app.actions import Workstation
from app.errors import UserFacingError
from models.errors import ModelError
from runtimes.errors import RuntimeLayerError

logger = logging.getLogger(__name__)
T = TypeVar("T")
CATALOGUE_COLUMNS = ["id", "name", "architecture", "kind", "status", "size_mb", "license", "creator", "sources", "origin"]
DOWNLOAD_COLUMNS = ["id", "state", "done_mb", "total_mb", "speed_mb_s", "eta_s", "error"]
INSTALLED_COLUMNS = ["id", "kind", "architecture", "size_mb", "license", "source", "verified", "flags"]


def translated(call: Callable[[], T]) -> T:
    try:
        return call()
    except ModelError as exc:
        raise UserFacingError(str(exc)) from exc


def catalogue(station: Workstation, query: str = "", architecture: str = "", kind: str = "character") -> List[Dict[str, Any]]:
    return translated(lambda: station.models.search(query or "", architecture or "", kind or ""))


def catalogue_table(station: Workstation, query: str, architecture: str, limit: int = 500) -> List[List[Any]]:
    rows = catalogue(station, query, architecture, kind="")  # characters, shared models and assets; usable first
    return [[row[column] if column != "sources" else ", ".join(row[column]) for column in CATALOGUE_COLUMNS] for row in rows[:limit]]


def download(station: Workstation, entry_id: str) -> Dict[str, Any]:
    if not (entry_id or "").strip():
        raise UserFacingError("choose a catalogue entry to download (its id or name)")
    remote = station.remote_downloads
    if remote is not None:
        return translated(lambda: remote.start(entry_id.strip()))
    return translated(lambda: station.models.download(entry_id.strip()))


def downloads(station: Workstation) -> List[Dict[str, Any]]:
    remote = station.remote_downloads
    return station.models.downloads() + (remote.downloads() if remote is not None else [])


def downloads_table(station: Workstation) -> List[List[Any]]:
    return [[d["id"], d["state"], round(d["done_bytes"] / 1e6, 1), None if d["total_bytes"] is None else round(d["total_bytes"] / 1e6, 1),
             d["speed_mb_s"], d["eta_s"], d["error"] or "; ".join(d["flags"])] for d in downloads(station)]


def cancel_download(station: Workstation, entry_id: str) -> str:
    remote = station.remote_downloads
    cancelled = translated(lambda: station.models.cancel(entry_id.strip()) or (remote is not None and remote.cancel(entry_id.strip())))
    return "cancelling %s" % entry_id if cancelled else "%s is not downloading" % entry_id


def installed(station: Workstation) -> List[Dict[str, Any]]:
    return station.models.installed()


def installed_table(station: Workstation) -> List[List[Any]]:
    rows = []
    for item in installed(station):
        hashes = {f.get("sha256_from") for f in item["files"]}
        item["verified"] = ("catalogue sha256" if hashes == {"catalogue"} else "sha256 measured at install" if hashes
                            else "placed by hand")
        rows.append([item[c] if c != "flags" else "; ".join(item[c]) for c in INSTALLED_COLUMNS])
    return rows


def disk_usage(station: Workstation) -> Dict[str, Any]:
    return station.models.disk_usage()


def disk_usage_text(station: Workstation) -> str:
    usage = disk_usage(station)
    parts = ", ".join("%s %.1f MB" % item for item in usage["by_architecture_mb"].items())
    return "Models on disk: **%.1f MB**%s" % (usage["total_mb"], " (%s)" % parts if parts else "")


def delete(station: Workstation, item_id: str) -> Dict[str, Any]:
    item_id = (item_id or "").strip()
    matches = [item for item in station.models.installed() if item["id"] == item_id]
    if matches and matches[0]["kind"] == "character" and matches[0]["architecture"] in station.specs:
        path = station.settings.characters_dir / matches[0]["architecture"] / matches[0]["name"]
        try:  # a loaded character is unloaded first: its files are about to go
            station.supervisor.unload(matches[0]["architecture"], matches[0]["name"], str(path))
        except RuntimeLayerError as exc:
            logger.info("unloading %s before deleting it: %s", item_id, exc)
    return translated(lambda: station.models.delete(item_id))


def import_model(station: Workstation, source: Optional[str], name: str, license_name: str = "",
                 architecture: Optional[str] = None) -> Dict[str, str]:
    if not source:
        raise UserFacingError("give a zip file (upload) or a folder path to import")
    return translated(lambda: station.models.import_model(Path(source), name or "", license_name or "", architecture or None))


def import_folder_files(station: Workstation, paths: List[str], name: str, license_name: str = "",
                        architecture: Optional[str] = None) -> Dict[str, str]:
    """A folder uploaded from a browser arrives as its files: gather them (a model folder is flat) and import."""
    if not paths:
        raise UserFacingError("choose a folder (or a zip) to import")
    gathered = station.settings.temp_dir / ("import-%s" % uuid.uuid4().hex)
    gathered.mkdir(parents=True)
    try:
        for path in paths:
            shutil.copy(path, gathered / Path(path).name)
        return import_model(station, str(gathered), name, license_name, architecture)
    finally:
        shutil.rmtree(gathered, ignore_errors=True)


def add_catalogue(station: Workstation, path: Optional[str], original_name: str = "") -> Dict[str, Any]:
    if not path:
        raise UserFacingError("give a catalogue file (ours, or the established app's <architecture>.character_models.json)")
    data = Path(path).read_bytes()
    return translated(lambda: station.models.add_catalogue(data, original_name or Path(path).name))


def refresh_catalogue(station: Workstation, url: str) -> Dict[str, Any]:
    return translated(lambda: station.models.refresh_from_url((url or "").strip()))


def catalogue_problems(station: Workstation) -> List[str]:
    return list(station.models.catalogue.problems)
