"""What an architecture adapter implements: a manifest, ``load`` and ``generate``. Nothing else.

Adapters run inside their architecture's own environment. Import heavy model libraries inside
``load``, never at module level, so the app can read the manifest without them.
Standard library + numpy only at module level; Python 3.9 syntax.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import numpy as np

from runtimes.errors import JobCancelledError
from runtimes.manifest import Manifest


@dataclass(frozen=True)
class ModelRef:
    """Which character to load: a builtin id (``path`` is None) or a folder of model files."""

    character: str
    path: Optional[str] = None
    device: str = "cpu"


@dataclass
class GenerateRequest:
    text: str = ""
    audio: Optional[np.ndarray] = None
    audio_sample_rate: Optional[int] = None
    options: Dict[str, Any] = field(default_factory=dict)
    report_progress: Callable[[float, str], None] = lambda fraction, message: None
    is_cancelled: Callable[[], bool] = lambda: False

    def check_cancelled(self) -> None:
        """Adapters call this between steps so a cancel takes effect without killing the worker."""
        if self.is_cancelled():
            raise JobCancelledError("cancelled")


@dataclass(frozen=True)
class GenerateResult:
    audio: np.ndarray
    sample_rate: int


class Adapter:
    """Base class of every architecture adapter."""

    manifest: Manifest

    def load(self, model: ModelRef) -> None:
        raise NotImplementedError

    def generate(self, request: GenerateRequest) -> GenerateResult:
        raise NotImplementedError
