"""What a finished job hands back to the store: typed, so that only the job layer knows its column names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class JobOutput:
    output_key: str
    """Where the result is in the artifact store (``jobs.artifacts``): a key, never a server path."""
    master_key: Optional[str]
    """A lossless copy when the output format is lossy: exports are re-encoded from it."""
    output_bytes: int
    sample_rate: int
    duration_s: float
    cached: bool
    timings_s: Dict[str, float] = field(default_factory=dict)
    provenance: Dict[str, Any] = field(default_factory=dict)

    def columns(self) -> Dict[str, Any]:
        return {
            "output_path": self.output_key, "master_path": self.master_key, "output_bytes": self.output_bytes,
            "sample_rate": self.sample_rate, "duration_s": self.duration_s, "cached": self.cached,
            "timings": {key: round(value, 4) for key, value in self.timings_s.items()},
            "provenance": self.provenance,
        }
