"""What an architecture adapter implements: a manifest, ``load`` and ``generate`` (``load_shared`` and
``unload`` when it has something to share or free). Nothing else.

One worker serves many characters of its architecture: ``load_shared`` runs once per worker (content
encoders, pitch extractors: what every character uses), ``load`` returns one loaded character, which the
scaffold keeps under the character's key and hands back to ``generate`` and ``unload``.

Adapters run inside their architecture's own environment. Import heavy model libraries inside
``load_shared``/``load``, never at module level, so the app can read the manifest without them.
Standard library + numpy only at module level; Python 3.9 syntax.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np

from runtimes.errors import JobCancelledError
from runtimes.manifest import Manifest


@dataclass(frozen=True)
class ModelRef:
    """Which character to load: a builtin id (``path`` is None) or a folder of model files."""

    character: str
    path: Optional[str] = None
    device: str = "cpu"

    @property
    def key(self) -> str:
        """What identifies the loaded character inside a worker: its folder, or its builtin id."""
        return self.character if self.path is None else self.path


@dataclass(frozen=True)
class CharacterInfo:
    """What a character folder holds, read without loading it (standard library only, in the app)."""

    usable: bool = True
    problem: str = ""
    """Why it cannot be used, and what to do about it (e.g. "two .pth files; keep one")."""
    version: str = ""
    speakers: Sequence[str] = ()
    extras: Sequence[str] = ()
    """Optional parts it has, e.g. "cluster model"."""
    unavailable: Mapping[str, str] = field(default_factory=dict)
    """Options (``"name"``) or choices (``"name=value"``) this character cannot use, with why."""

    def to_dict(self) -> Dict[str, Any]:
        return {"usable": self.usable, "problem": self.problem, "version": self.version, "speakers": list(self.speakers),
                "extras": list(self.extras), "unavailable": dict(self.unavailable)}


@dataclass
class GenerateRequest:
    text: str = ""
    audio: Optional[np.ndarray] = None
    audio_sample_rate: Optional[int] = None
    options: Dict[str, Any] = field(default_factory=dict)
    """Every option of the manifest: the worker checked them (known, in range) and filled in the defaults,
    and checked that the text or recording the manifest needs is there, before ``generate``."""
    report_progress: Callable[[float, str], None] = lambda fraction, message: None
    is_cancelled: Callable[[], bool] = lambda: False
    streaming: bool = False
    """The pieces ``stream`` yields are played as they come: an adapter may make its first piece smaller to start sooner."""
    details: Dict[str, Any] = field(default_factory=dict)
    """What the adapter tells the app about this job (JSON values; e.g. ``{"conditioning": "reused"}``): sent with the result."""

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

    @staticmethod
    def describe(folder: str) -> CharacterInfo:
        """Check a character folder's layout and read its version and speakers, without loading it.
        Runs in the app's process: standard library only."""
        return CharacterInfo()

    def load_shared(self, device: str) -> None:
        """Once per worker, before any character: load what all characters share."""

    def load(self, model: ModelRef) -> Any:
        """Load one character and return it (any object); it is passed back to ``generate``."""
        raise NotImplementedError

    def details(self, character: Any) -> Dict[str, Any]:
        """What a loaded character turned out to be (e.g. RVC's v1/v2, read from the checkpoint): JSON values."""
        return {}

    def unload(self, character: Any) -> None:
        """Free a character ``load`` returned (dropping the last reference is the default)."""

    def generate(self, character: Any, request: GenerateRequest) -> GenerateResult:
        """The whole take. The default joins what ``stream`` yields; an adapter overrides one of the two."""
        if type(self).stream is Adapter.stream:
            raise NotImplementedError("%s implements neither generate nor stream" % type(self).__name__)
        return join_pieces(list(self.stream(character, request)))

    def stream(self, character: Any, request: GenerateRequest) -> Iterator[GenerateResult]:
        """The take in pieces as they are made (a sentence, or the architecture's own unit), so the first can
        be played while the rest is made; the pieces joined are the take. Each piece has the same rate.
        The default: ``generate``'s whole take as one piece (converters, and architectures that cannot split)."""
        yield self.generate(character, request)

    def report_progress(self, fraction: Optional[float], message: str) -> None:
        """Long loads may call this; the scaffold replaces it with one that reaches the app."""


def join_pieces(pieces: List[GenerateResult]) -> GenerateResult:
    """Pieces of one take joined (they share a rate); at least one piece is needed."""
    if not pieces:
        raise ValueError("a take needs at least one piece of audio")
    rates = {int(piece.sample_rate) for piece in pieces}
    if len(rates) != 1:
        raise ValueError("the pieces of a take have different rates: %s" % sorted(rates))
    audio = np.concatenate([np.asarray(piece.audio, dtype=np.float32).reshape(-1) for piece in pieces])
    return GenerateResult(audio=audio, sample_rate=rates.pop())
