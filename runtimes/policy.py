"""Keep-alive and pins per character: how long an idle character (and a worker with nothing left to
hold) stays loaded, and which are never evicted."""

from __future__ import annotations

import threading
from typing import Dict, Optional, Set, Tuple

CharacterKey = Tuple[str, str]
"""(architecture, character key): a character folder's path, or a builtin character's id."""


def character_key(architecture: str, character: str, character_path: Optional[str] = None) -> CharacterKey:
    return (architecture, character if character_path is None else character_path)


class KeepAlivePolicy:
    def __init__(self, default_s: float) -> None:
        self.default_s = default_s
        """Idle seconds before unloading; negative keeps forever, 0 unloads right after each job."""
        self._lock = threading.Lock()
        self._pinned: Set[CharacterKey] = set()
        self._overrides: Dict[CharacterKey, float] = {}

    def pin(self, key: CharacterKey, pinned: bool) -> None:
        with self._lock:
            if pinned:
                self._pinned.add(key)
            else:
                self._pinned.discard(key)

    def set_keep_alive(self, key: CharacterKey, keep_alive_s: Optional[float]) -> None:
        with self._lock:
            if keep_alive_s is None:
                self._overrides.pop(key, None)
            else:
                self._overrides[key] = keep_alive_s

    def pinned(self, key: CharacterKey) -> bool:
        with self._lock:
            return key in self._pinned

    def keep_alive_s(self, key: CharacterKey) -> float:
        with self._lock:
            if key in self._pinned:
                return -1.0
            return self._overrides.get(key, self.default_s)

    def expired(self, key: CharacterKey, idle_s: float) -> bool:
        keep_alive = self.keep_alive_s(key)
        return keep_alive >= 0 and idle_s > keep_alive

    def worker_expired(self, architecture: str, character_idle_s: Dict[str, float], worker_idle_s: float) -> bool:
        """A worker may stop when every character it holds has expired (an empty one: after the default)."""
        if not character_idle_s:
            return self.default_s >= 0 and worker_idle_s > self.default_s
        return all(self.expired((architecture, key), idle_s) for key, idle_s in character_idle_s.items())
