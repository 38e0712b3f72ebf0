"""Crash accounting per worker key: restart with exponential backoff and jitter, a retry limit, and a
cooldown that refuses new jobs fast instead of respawning on every request. Boot failures go straight
to a failed state (no restart loop) until someone asks to retry."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from runtimes.errors import ArchitectureUnavailableError


@dataclass
class CrashRecord:
    consecutive: int = 0
    retry_at: float = 0.0
    failed: Optional[str] = None
    last_error: str = ""


@dataclass
class CrashPolicy:
    base_s: float = 1.0
    max_s: float = 60.0
    retry_limit: int = 5
    jitter: float = 0.2
    records: Dict[Tuple[str, str], CrashRecord] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Request threads and the monitor account for crashes at once."""

    def check(self, key: Tuple[str, str], label: str, now: Optional[float] = None) -> None:
        """Raise ``ArchitectureUnavailableError`` while ``key`` is failed or cooling down."""
        with self._lock:
            record = self.records.get(key)
        if record is None:
            return
        now = time.monotonic() if now is None else now
        if record.failed is not None:
            raise ArchitectureUnavailableError(
                "%s is stopped after failing: %s\n(fix the cause, then press Retry in the Runtimes tab)" % (label, record.failed)
            )
        if now < record.retry_at:
            wait_s = record.retry_at - now
            raise ArchitectureUnavailableError(
                "%s failed %d time(s) in a row and is cooling down; retry after %.0f s. Last error: %s"
                % (label, record.consecutive, max(wait_s, 1.0), record.last_error),
                retry_after_s=wait_s,
            )

    def crashed(self, key: Tuple[str, str], error: str, now: Optional[float] = None) -> CrashRecord:
        """The first crash restarts at once; each further one in a row waits twice as long (with jitter)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            record = self.records.setdefault(key, CrashRecord())
            record.consecutive += 1
            record.last_error = error
            if record.consecutive > self.retry_limit:
                record.failed = "failed %d times in a row; last error: %s" % (record.consecutive, error)
                return record
            if record.consecutive > 1:
                delay = min(self.base_s * 2 ** (record.consecutive - 2), self.max_s)
                record.retry_at = now + delay * random.uniform(1 - self.jitter, 1 + self.jitter)
            return record

    def boot_failed(self, key: Tuple[str, str], error: str) -> None:
        with self._lock:
            record = self.records.setdefault(key, CrashRecord())
            record.failed = error
            record.last_error = error

    def succeeded(self, key: Tuple[str, str]) -> None:
        with self._lock:
            self.records.pop(key, None)

    def reset(self, key: Tuple[str, str]) -> None:
        self.succeeded(key)

    def snapshot(self) -> Dict[Tuple[str, str], CrashRecord]:
        with self._lock:
            return dict(self.records)
