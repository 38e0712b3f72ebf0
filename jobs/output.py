"""What a finished job hands back to the store: typed, so that only the job layer knows its column names."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class JobOutput:
    output_path: Path
    master_path: Optional[Path]
    """A lossless copy when the output format is lossy: exports are re-encoded from it."""
    sample_rate: int
    duration_s: float
    cached: bool
    timings_s: Dict[str, float] = field(default_factory=dict)
    provenance: Dict[str, Any] = field(default_factory=dict)

    def columns(self) -> Dict[str, Any]:
        master = self.master_path if self.master_path is not None and self.master_path.is_file() else None
        return {
            "output_path": str(self.output_path), "master_path": str(master) if master else None,
            "output_bytes": self.output_path.stat().st_size + (master.stat().st_size if master else 0),
            "sample_rate": self.sample_rate, "duration_s": self.duration_s, "cached": self.cached,
            "timings": {key: round(value, 4) for key, value in self.timings_s.items()},
            "provenance": self.provenance,
        }
