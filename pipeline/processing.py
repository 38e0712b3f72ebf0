"""What a person sets in the UI (or an API client sends) as flat, unit-named options, turned into
chains of stages; and named presets (a pair of chains as JSON) saved in the data directory."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type, TypeVar

from pipeline.atomic_file import write_text_atomic
from pipeline.errors import StageConfigError
from pipeline.stages import (
    Chain,
    ChangeSpeed,
    Fade,
    HighPass,
    LoudnessNormalize,
    MixToMono,
    NoiseReduce,
    PeakNormalize,
    PitchShift,
    Resample,
    Stage,
    TrimSilence,
)

T = TypeVar("T", bound="_Options")


@dataclass(frozen=True)
class _Options:
    @classmethod
    def from_dict(cls: Type[T], data: Optional[Dict[str, Any]]) -> T:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise StageConfigError("unknown processing option(s): %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(known))))
        options = cls(**data)
        options.to_chain_parts()  # validates every value through the stages
        return options

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def to_chain_parts(self) -> List[Stage]:
        raise NotImplementedError


@dataclass(frozen=True)
class PreOptions(_Options):
    """Applied to input recordings before the model (after decoding, mono and resampling)."""

    highpass_hz: float = 0.0
    """0 = off."""
    noise_reduction: float = 0.0
    """0..1; 0 = off."""
    trim_silence: bool = False
    trim_threshold_db: float = -50.0
    pitch_semitones: float = 0.0
    loudness_lufs: Optional[float] = None
    """None = off."""

    def to_chain_parts(self) -> List[Stage]:
        stages: List[Stage] = []
        if self.highpass_hz:
            stages.append(HighPass(cutoff_hz=self.highpass_hz))
        if self.noise_reduction:
            stages.append(NoiseReduce(strength=self.noise_reduction))
        if self.trim_silence:
            stages.append(TrimSilence(threshold_db=self.trim_threshold_db))
        if self.pitch_semitones:
            stages.append(PitchShift(semitones=self.pitch_semitones))
        if self.loudness_lufs is not None:
            stages.append(LoudnessNormalize(target_lufs=self.loudness_lufs))
        return stages

    def chain(self, target_hz: int) -> Chain:
        return Chain([MixToMono(), Resample(target_hz=target_hz), *self.to_chain_parts()])


@dataclass(frozen=True)
class PostOptions(_Options):
    """Applied to what the model made, before it is written."""

    speed: float = 1.0
    pitch_semitones: float = 0.0
    noise_reduction: float = 0.0
    trim_silence: bool = True
    trim_threshold_db: float = -50.0
    loudness_lufs: Optional[float] = -16.0
    """None = peak-normalise to the true-peak ceiling instead."""
    true_peak_db: float = -1.0
    fade_in_ms: float = 0.0
    fade_out_ms: float = 0.0
    sample_rate_hz: Optional[int] = None
    """None = the model's rate."""

    def to_chain_parts(self) -> List[Stage]:
        stages: List[Stage] = []
        if self.noise_reduction:
            stages.append(NoiseReduce(strength=self.noise_reduction))
        if self.speed != 1.0:
            stages.append(ChangeSpeed(factor=self.speed))
        if self.pitch_semitones:
            stages.append(PitchShift(semitones=self.pitch_semitones))
        if self.trim_silence:
            stages.append(TrimSilence(threshold_db=self.trim_threshold_db))
        # Loudness before resampling: measuring (4x oversampled true peak) at the model's usually lower
        # rate costs half as much, and resampling leaves loudness and true peak where they were.
        if self.loudness_lufs is not None:
            stages.append(LoudnessNormalize(target_lufs=self.loudness_lufs, true_peak_db=self.true_peak_db))
        else:
            stages.append(PeakNormalize(peak_db=self.true_peak_db))
        if self.sample_rate_hz:
            stages.append(Resample(target_hz=self.sample_rate_hz))
        if self.fade_in_ms or self.fade_out_ms:
            stages.append(Fade(fade_in_ms=self.fade_in_ms, fade_out_ms=self.fade_out_ms))
        return stages

    def chain(self) -> Chain:
        return Chain(self.to_chain_parts())


PRESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


class PresetStore:
    """Named presets as JSON files: ``{"pre": {...}, "post": {...}}`` plus the chains they make."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def names(self) -> List[str]:
        return sorted(path.stem for path in self.folder.glob("*.json"))

    def save(self, name: str, pre: PreOptions, post: PostOptions) -> Path:
        if not PRESET_NAME.match(name or ""):
            raise StageConfigError("a preset name is 1-64 letters, digits, spaces, '.', '_' or '-', got %r" % name)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / ("%s.json" % name)
        document = {
            "pre": pre.to_dict(),
            "post": post.to_dict(),
            "pre_chain": Chain(pre.to_chain_parts()).to_dict(),
            "post_chain": post.chain().to_dict(),
        }
        write_text_atomic(path, json.dumps(document, indent=2))  # a reader never sees half a preset
        return path

    def load(self, name: str) -> Tuple[PreOptions, PostOptions]:
        path = self.folder / ("%s.json" % name)
        if not PRESET_NAME.match(name or "") or not path.exists():
            raise StageConfigError("no preset named %r (saved: %s)" % (name, ", ".join(self.names()) or "none"))
        try:
            document = json.loads(path.read_text())
        except ValueError as exc:
            raise StageConfigError("preset %r is not valid JSON: %s" % (name, exc)) from exc
        return PreOptions.from_dict(document.get("pre")), PostOptions.from_dict(document.get("post"))
