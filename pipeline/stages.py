"""Audio stages shared by every architecture. A stage is configured by keyword options whose names
carry units, validated once in ``__init__``; ``apply(audio, sample_rate)`` returns ``(audio,
sample_rate)``. A ``Chain`` is a stage too, and serialises to and from JSON (presets).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Dict, List, Sequence, Tuple, Type

import librosa
import numpy as np

from pipeline.errors import StageConfigError

Audio = np.ndarray
STAGES: Dict[str, Type[Stage]] = {}


def _number(stage: str, name: str, value: Any, minimum: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise StageConfigError("%s: %s must be a number, got %r" % (stage, name, value))
    if not minimum <= value <= maximum:
        raise StageConfigError("%s: %s must be between %g and %g, got %g" % (stage, name, minimum, maximum, value))
    return float(value)


class Stage:
    """Base class: subclasses validate options in ``__init__`` and implement ``apply``."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = cls.__name__
        STAGES[cls.kind] = cls

    def __init__(self, **options: Any) -> None:
        self.options = options

    def apply(self, audio: Audio, sample_rate: int) -> Tuple[Audio, int]:
        raise NotImplementedError

    def to_dict(self) -> Dict[str, Any]:
        return {"stage": self.kind, **self.options}

    def __repr__(self) -> str:
        args = ", ".join("%s=%r" % item for item in self.options.items())
        return "%s(%s)" % (self.kind, args)


def stage_from_dict(data: Dict[str, Any]) -> Stage:
    data = dict(data)
    kind = data.pop("stage", None)
    if kind not in STAGES:
        raise StageConfigError("unknown stage %r (known: %s)" % (kind, ", ".join(sorted(STAGES))))
    if kind == "Chain":
        return Chain([stage_from_dict(item) for item in data.get("stages", [])])
    try:
        return STAGES[kind](**data)
    except TypeError as exc:
        raise StageConfigError("%s: %s" % (kind, exc)) from exc


class Chain(Stage):
    """Stages applied in order."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        super().__init__()
        self.stages: List[Stage] = list(stages)

    def apply(self, audio: Audio, sample_rate: int) -> Tuple[Audio, int]:
        for stage in self.stages:
            audio, sample_rate = stage.apply(audio, sample_rate)
        return audio, sample_rate

    def to_dict(self) -> Dict[str, Any]:
        return {"stage": "Chain", "stages": [stage.to_dict() for stage in self.stages]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Chain:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StageConfigError("preset is not valid JSON: %s" % exc) from exc
        stage = stage_from_dict(data)
        return stage if isinstance(stage, Chain) else Chain([stage])

    def __repr__(self) -> str:
        return "Chain(%r)" % self.stages


class MixToMono(Stage):
    """Average all channels into one."""

    def apply(self, audio: Audio, sample_rate: int) -> Tuple[Audio, int]:
        mono = audio.mean(axis=0) if audio.ndim == 2 else audio
        return mono.astype(np.float32, copy=False), sample_rate


class Resample(Stage):
    """Resample to ``target_hz`` with soxr (high quality)."""

    def __init__(self, target_hz: int) -> None:
        value = _number("Resample", "target_hz", target_hz, 1000, 384000)
        super().__init__(target_hz=int(value))
        self.target_hz = int(value)

    def apply(self, audio: Audio, sample_rate: int) -> Tuple[Audio, int]:
        if sample_rate == self.target_hz:
            return audio, sample_rate
        out = librosa.resample(audio, orig_sr=sample_rate, target_sr=self.target_hz, res_type="soxr_hq", axis=-1)
        return np.asarray(out, dtype=np.float32), self.target_hz


class TrimSilence(Stage):
    """Cut leading and trailing audio quieter than ``threshold_db`` (dBFS), keeping ``keep_ms`` of margin."""

    def __init__(self, threshold_db: float = -50.0, keep_ms: float = 30.0) -> None:
        threshold = _number("TrimSilence", "threshold_db", threshold_db, -120.0, 0.0)
        keep = _number("TrimSilence", "keep_ms", keep_ms, 0.0, 5000.0)
        super().__init__(threshold_db=threshold, keep_ms=keep)
        self.threshold_db = threshold
        self.keep_ms = keep

    def apply(self, audio: Audio, sample_rate: int) -> Tuple[Audio, int]:
        mono = audio if audio.ndim == 1 else audio.mean(axis=0)
        if mono.size == 0:
            return audio, sample_rate
        _, (start, end) = librosa.effects.trim(
            mono, top_db=-self.threshold_db, ref=1.0, frame_length=512, hop_length=128
        )
        loud = np.flatnonzero(np.abs(mono[start:end]) >= 10.0 ** (self.threshold_db / 20.0))
        if end <= start or loud.size == 0:  # all silence: keep it rather than return nothing
            return audio, sample_rate
        # librosa finds the edges to a frame; refine them to the first and last sample over the threshold
        start, end = start + int(loud[0]), start + int(loud[-1]) + 1
        keep = int(round(self.keep_ms * sample_rate / 1000.0))
        start, end = max(0, start - keep), min(mono.size, end + keep)
        return audio[..., start:end], sample_rate


class PeakNormalize(Stage):
    """Scale so the highest sample peak sits at ``peak_db`` dBFS (never amplifies silence)."""

    def __init__(self, peak_db: float = -1.0) -> None:
        peak = _number("PeakNormalize", "peak_db", peak_db, -60.0, 0.0)
        super().__init__(peak_db=peak)
        self.peak_db = peak

    def apply(self, audio: Audio, sample_rate: int) -> Tuple[Audio, int]:
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak < 1e-6:
            return audio, sample_rate
        gain = (10.0 ** (self.peak_db / 20.0)) / peak
        return (audio * gain).astype(np.float32), sample_rate


def default_pre_chain(target_hz: int) -> Chain:
    return Chain([MixToMono(), Resample(target_hz=target_hz)])


def default_post_chain() -> Chain:
    return Chain([TrimSilence(), PeakNormalize()])
