"""What one client may hold of a shared server at once: jobs waiting, and bytes of kept recordings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OwnerQuotas:
    max_queued_jobs: int = 0
    """Jobs one client may have waiting at once (0: no limit)."""
    max_kept_input_bytes: int = 0
    """Bytes of input recordings kept for one client's jobs (0: no limit)."""
