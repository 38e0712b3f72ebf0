"""The functions behind the model endpoints (/catalogue, /download_model, /downloads, /cancel_download,
/installed_models, /disk_usage, /delete_model, /import_model, /add_catalogue, /refresh_catalogue; named in
``app.ui_api``). Downloads, deletions, imports and catalogue changes fill or empty the server's disk: on a shared
server they are the operator's. Thin wiring over ``app.model_actions``."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import gradio as gr

from app import model_actions as actions
from app.actions import Workstation
from app.ui_errors import as_operator, shown_to_person


class ModelEndpoints:
    def __init__(self, station: Workstation) -> None:
        self.station = station

    def catalogue(self, query: str, architecture: str, kind: str) -> List[Dict[str, Any]]:
        """Search the catalogue (query words in name or creator; architecture and kind filters, "" = all)."""
        return shown_to_person(lambda: actions.catalogue(self.station, query, architecture, kind))

    def download_model(self, entry_id: str, request: gr.Request) -> Dict[str, Any]:
        """Start downloading a catalogue entry (id or unique name) and what it depends on; returns its progress."""
        return as_operator(self.station.access, request, lambda: actions.download(self.station, entry_id))

    def downloads(self) -> List[Dict[str, Any]]:
        """Every download of this app run: state, bytes, speed, time left, per file."""
        return actions.downloads(self.station)

    def cancel_download(self, entry_id: str, request: gr.Request) -> str:
        """Cancel a download; nothing of it stays."""
        return as_operator(self.station.access, request, lambda: actions.cancel_download(self.station, entry_id))

    def installed_models(self) -> List[Dict[str, Any]]:
        """Installed characters, shared models and assets with their size, license and source."""
        return actions.installed(self.station)

    def disk_usage(self) -> Dict[str, Any]:
        """Disk used by models, in total and per architecture (MB)."""
        return actions.disk_usage(self.station)

    def delete_model(self, item_id: str, request: gr.Request) -> Dict[str, Any]:
        """Delete an installed model by id (see /installed_models); returns the space freed."""
        return as_operator(self.station.access, request, lambda: actions.delete(self.station, item_id))

    def import_model(self, file: Optional[str], path: str, name: str, license_name: str, architecture: str,
                     request: gr.Request) -> Dict[str, str]:
        """Import a zip (file) or a folder or zip on the server (path) as a character named ``name``."""
        return as_operator(self.station.access, request, lambda: actions.import_model(
            self.station, file or path or None, name, license_name, architecture or None))

    def add_catalogue(self, file: Optional[str], request: gr.Request) -> Dict[str, Any]:
        """Add a catalogue file (ours, or the established app's <architecture>.character_models.json as it is)."""
        return as_operator(self.station.access, request, lambda: actions.add_catalogue(self.station, file))

    def refresh_catalogue(self, url: str, request: gr.Request) -> Dict[str, Any]:
        """Fetch a catalogue from a URL and keep it in the data folder."""
        return as_operator(self.station.access, request, lambda: actions.refresh_catalogue(self.station, url))
