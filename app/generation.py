"""What a finished generation is, as the UI and the API see it, and the small helpers every part of a job uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from pipeline.audio_io import OUTPUT_FORMATS

ProgressFn = Callable[[Optional[float], str], None]


def no_progress(fraction: Optional[float], message: str) -> None:
    pass


def prefixed(progress: ProgressFn, prefix: str) -> ProgressFn:
    return lambda fraction, message: progress(fraction, prefix + message)


def minutes(seconds: float) -> str:
    return "%.0f s" % seconds if seconds < 120 else "%.0f min" % (seconds / 60)


def output_formats() -> List[str]:
    return list(OUTPUT_FORMATS)


@dataclass(frozen=True)
class Generation:
    path: Path
    architecture: str
    character: str
    text: str
    sample_rate: int
    duration_s: float
    cold: bool
    timings_s: Dict[str, float]
    cached: bool = False
    notes: Dict[str, Any] = field(default_factory=dict)
    """What the person should know about the result (e.g. a loudness target that could not be reached, and why)."""
    job_id: str = ""

    def info(self) -> Dict[str, Any]:
        return {
            **self.notes,
            "job_id": self.job_id,
            "architecture": self.architecture,
            "character": self.character,
            "sample_rate": self.sample_rate,
            "duration_s": round(self.duration_s, 3),
            "cold_start": self.cold,
            "cached": self.cached,
            "timings_s": {key: round(value, 4) for key, value in self.timings_s.items()},
            "file": self.path.name,
        }
