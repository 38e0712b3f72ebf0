"""An adapter whose manifest is malformed on the wire: the worker boots and connects, then says hello
with a manifest the supervisor cannot read (a handshake that must fail cleanly)."""

from __future__ import annotations

from typing import Any, Dict

from runtimes.adapter import Adapter


class _BrokenManifest:
    architecture = "fake"

    def to_dict(self) -> Dict[str, Any]:
        return {"architecture": "fake", "no_such_field": True}


class MalformedManifestAdapter(Adapter):
    manifest = _BrokenManifest()  # type: ignore[assignment]
