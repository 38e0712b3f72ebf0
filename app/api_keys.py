"""API keys for programs: ``Authorization: Bearer vgk_<id>_<secret>`` on the HTTP routes, made and revoked by the
operator (``python3 launcher.py keys create --owner NAME``, ``keys list``, ``keys revoke ID``).

Each key speaks for an owner (its jobs join that owner's history and count against its quotas). The file
``<data>/api-keys.json`` (mode 0600) holds only each key's SHA-256: the secret is shown once, at creation, and a
copy of the file proves nothing. A key is 32 random bytes, so a plain hash is enough (no password stretching:
nothing to guess). The app rereads the file when it changes, so a key revoked from the command line stops at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

PREFIX = "vgk_"
KEY_PATTERN = re.compile(r"vgk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
OWNER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
FILE_NAME = "api-keys.json"


class ApiKeyError(ValueError):
    """A request to the store that cannot be done (an owner name that cannot be used, an unknown key id)."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    owner: str
    sha256: str
    created_at: float
    revoked_at: Optional[float] = None

    def public(self) -> Dict[str, object]:
        """What the operator may list: never the hash."""
        return {"id": self.id, "owner": self.owner, "created_at": self.created_at, "revoked_at": self.revoked_at}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ApiKeyStore:
    """The keys of one data folder, read again whenever the file changes (the CLI may edit it under a running app)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        self._lock = threading.Lock()
        self._seen: Optional[Tuple[int, int]] = None
        self._keys: Dict[str, ApiKey] = {}

    def _load(self) -> Dict[str, ApiKey]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._keys = None, {}
            return self._keys
        signature = (stat.st_mtime_ns, stat.st_size)
        if signature != self._seen:
            rows = json.loads(self.path.read_text(encoding="utf-8") or "[]")
            self._keys = {row["id"]: ApiKey(**row) for row in rows}
            self._seen = signature
        return self._keys

    def _save(self, keys: Dict[str, ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=FILE_NAME, suffix=".partial", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:  # mkstemp makes it 0600: only the operator reads even the hashes
            json.dump([asdict(key) for key in keys.values()], out, indent=1)
        os.replace(partial, self.path)
        self._seen = None

    def create(self, owner: str) -> Tuple[ApiKey, str]:
        """A new key for ``owner``: the entry and the token, which is shown this once and kept nowhere."""
        if not OWNER_PATTERN.fullmatch(owner):
            raise ApiKeyError("an owner is 1-64 letters, digits or . _ @ - (starting with a letter or digit), not %r" % owner[:80])
        with self._lock:
            keys = dict(self._load())
            key_id = secrets.token_hex(6)
            token = "%s%s_%s" % (PREFIX, key_id, secrets.token_urlsafe(32))
            entry = ApiKey(id=key_id, owner=owner, sha256=digest(token), created_at=time.time())
            keys[key_id] = entry
            self._save(keys)
        return entry, token

    def revoke(self, key_id: str) -> ApiKey:
        with self._lock:
            keys = dict(self._load())
            entry = keys.get(key_id)
            if entry is None:
                raise ApiKeyError("no API key %r (see `keys list`)" % key_id[:40])
            if entry.revoked_at is None:
                entry = keys[key_id] = ApiKey(**{**asdict(entry), "revoked_at": time.time()})
                self._save(keys)
            return entry

    def listed(self) -> List[ApiKey]:
        with self._lock:
            return sorted(self._load().values(), key=lambda key: key.created_at)

    def any_active(self) -> bool:
        with self._lock:
            return any(key.revoked_at is None for key in self._load().values())

    def owner_of(self, token: str) -> Optional[str]:
        """The owner a token speaks for; None for anything else (unknown, revoked, malformed)."""
        match = KEY_PATTERN.fullmatch(token)
        if match is None:
            return None
        with self._lock:
            entry = self._load().get(match.group(1))
        if entry is None or entry.revoked_at is not None:
            return None
        return entry.owner if secrets.compare_digest(digest(token), entry.sha256) else None
