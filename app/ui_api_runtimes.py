"""The functions behind the runtime endpoints (/runtime_status, /list_assets, /set_keep_alive, /stop_worker,
/prewarm, /pin, /unload, /api_keys, /create_api_key, /revoke_api_key; named in ``app.ui_api``); the Runtimes tab's
buttons call them too. Controls and API keys are the operator's on a shared server."""

from __future__ import annotations

from typing import Any, Dict, List

import gradio as gr

from app.actions import Workstation
from app.api_keys import ApiKeyError, ApiKeyStore
from app.errors import UserFacingError
from app.ui_caller import username_of
from app.ui_errors import as_operator


class RuntimeEndpoints:
    def __init__(self, station: Workstation) -> None:
        self.station = station

    def runtime_status(self, request: gr.Request) -> List[Dict[str, Any]]:
        """Live workers: state, pid, idle time, keep-alive left, last error, log tail (on a shared server, for
        anyone but the operator: which models are warm and how long their lines are)."""
        return self.station.runtime_status(username_of(request))

    def list_assets(self) -> List[Dict[str, Any]]:
        """Shared pretrained assets of every architecture: present or missing, size, where to get them."""
        return self.station.assets()

    def set_keep_alive(self, architecture: str, character: str, keep_alive_s: float, request: gr.Request) -> str:
        """Idle seconds before a character is unloaded (-1 = forever, 0 = after each job). Operator only on a shared server."""
        return as_operator(self.station.access, request, lambda: self.station.set_keep_alive(architecture, character, keep_alive_s))

    def stop_worker(self, name: str, request: gr.Request) -> str:
        """Stop a worker by name (see /runtime_status). Operator only on a shared server."""
        return as_operator(self.station.access, request, lambda: self.station.stop_worker(name))

    def prewarm(self, architecture: str, character: str, request: gr.Request) -> str:
        """Load a character now (starting its architecture's worker if needed); also Retry after a failure. Operator only."""
        return as_operator(self.station.access, request, lambda: self.station.prewarm(architecture, character))

    def unload(self, architecture: str, character: str, request: gr.Request) -> str:
        """Unload one character from its worker (the worker keeps its other characters). Operator only."""
        return as_operator(self.station.access, request, lambda: self.station.unload(architecture, character))

    def pin(self, architecture: str, character: str, pinned: bool, request: gr.Request) -> str:
        """Pin (never unload) or unpin a character. Operator only on a shared server."""
        return as_operator(self.station.access, request, lambda: self.station.pin(architecture, character, pinned))

    def pin_on(self, architecture: str, character: str, request: gr.Request) -> str:
        return self.pin(architecture, character, True, request)

    def pin_off(self, architecture: str, character: str, request: gr.Request) -> str:
        return self.pin(architecture, character, False, request)

    # API keys for programs (app.api_keys): the operator's, like the command line's `keys`
    def _keys(self) -> ApiKeyStore:
        return self.station.access.keys or ApiKeyStore(self.station.settings.data_dir)

    def api_keys(self, request: gr.Request) -> List[Dict[str, Any]]:
        """The API keys (id, owner, created, revoked; never a key or its hash). Operator only on a shared server."""
        return as_operator(self.station.access, request, lambda: [key.public() for key in self._keys().listed()])

    def create_api_key(self, owner: str, request: gr.Request) -> Dict[str, Any]:
        """A new API key for programs on the HTTP routes ('Authorization: Bearer <key>'), speaking for ``owner`` (history,
        quotas). The key is in this answer only: keep it now. Operator only on a shared server."""
        def create() -> Dict[str, Any]:
            try:
                entry, token = self._keys().create(owner.strip())
            except ApiKeyError as exc:
                raise UserFacingError(str(exc)) from None
            return {**entry.public(), "key": token}

        return as_operator(self.station.access, request, create)

    def revoke_api_key(self, key_id: str, request: gr.Request) -> str:
        """Revoke an API key by its id (see /api_keys): it stops at once. Operator only on a shared server."""
        def revoke() -> str:
            try:
                entry = self._keys().revoke(key_id.strip())
            except ApiKeyError as exc:
                raise UserFacingError(str(exc)) from None
            return "API key %s of %s revoked" % (entry.id, entry.owner)

        return as_operator(self.station.access, request, revoke)
