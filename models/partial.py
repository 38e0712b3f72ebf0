"""The bytes of a file not yet fully downloaded, kept so that a later try resumes them: after a dropped
connection, a failed download fetched again, or a restart of the app.

``<file>.part`` holds the bytes; ``<file>.part.json`` beside it says where they came from (the catalogue's
source, not a signed CDN address that changes each time) and the server's validator (a strong ``ETag``, else
``Last-Modified``). Kept bytes of another source are dropped; a resumed request sends ``If-Range`` with the
validator, so a file that changed upstream is sent whole again instead of being spliced onto the old bytes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Dict, Optional, Tuple


@dataclass(frozen=True)
class Partial:
    path: Path
    """``<file>.part``"""
    where: str
    """The file's source as the catalogue names it."""

    @property
    def record(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    def kept(self) -> Tuple[int, Optional[str]]:
        """The bytes to resume from and the validator they were fetched under; (0, None) when there are none
        of this source."""
        if not self.path.exists():
            return 0, None
        try:
            record = json.loads(self.record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
        if not isinstance(record, dict) or record.get("where") != self.where:
            self.discard()
            return 0, None
        validator = record.get("validator")
        return self.path.stat().st_size, validator if isinstance(validator, str) else None

    @staticmethod
    def range_headers(have: int, validator: Optional[str]) -> Dict[str, str]:
        if not have:
            return {}
        return dict({"Range": "bytes=%d-" % have}, **({"If-Range": validator} if validator else {}))

    def begin(self, headers: Message) -> None:
        """The server sends the file from its first byte: note where from, and its validator."""
        etag = headers.get("ETag") or ""
        validator = etag if etag and not etag.startswith("W/") else headers.get("Last-Modified")
        self.record.write_text(json.dumps({"where": self.where, "validator": validator}), encoding="utf-8")

    def finish(self, dest: Path, sha256: str) -> str:
        """All bytes arrived: the file takes its name (one rename); returns ``sha256``."""
        os.replace(self.path, dest)
        self.record.unlink(missing_ok=True)
        return sha256

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.record.unlink(missing_ok=True)
