"""Audio stages shared by every architecture. A stage is configured by keyword options whose names
carry units, validated once in ``__init__``; ``apply(audio, sample_rate)`` returns ``(audio,
sample_rate)``. A ``Chain`` is a stage too, and serialises to and from JSON (presets).
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Type

import numpy as np

from pipeline.dsp import integrated_loudness, loud_frames_span, resample
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
        return np.asarray(resample(audio, sample_rate, self.target_hz), dtype=np.float32), self.target_hz


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
        span = loud_frames_span(mono, self.threshold_db, frame_length=512, hop_length=128)
        if span is None:  # all silence: keep it rather than return nothing
            return audio, sample_rate
        start, end = span
        loud = np.flatnonzero(np.abs(mono[start:end]) >= 10.0 ** (self.threshold_db / 20.0))
        if end <= start or loud.size == 0:
            return audio, sample_rate
        # the frames find the edges to a frame (a lone click in a quiet frame is not speech); refine them to the
        # first and last sample over the threshold
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


def _per_channel(audio: Audio, apply: Callable[[Audio], Audio]) -> Audio:
    if audio.ndim == 1:
        return np.asarray(apply(audio), dtype=np.float32)
    return np.stack([np.asarray(apply(channel), dtype=np.float32) for channel in audio])


class HighPass(Stage):
    """Remove rumble below ``cutoff_hz`` (Butterworth, scipy)."""

    def __init__(self, cutoff_hz: float = 80.0, order: int = 4) -> None:
        cutoff = _number("HighPass", "cutoff_hz", cutoff_hz, 10.0, 4000.0)
        order_value = int(_number("HighPass", "order", order, 1, 10))
        super().__init__(cutoff_hz=cutoff, order=order_value)
        self.cutoff_hz = cutoff
        self.order = order_value

    def apply(self, audio: Audio, sample_rate: int) -> Tuple[Audio, int]:
        from scipy.signal import butter, sosfilt

        if self.cutoff_hz >= sample_rate / 2:
            raise StageConfigError("HighPass: cutoff_hz %g must be below half the sample rate (%d)" % (self.cutoff_hz, sample_rate))
        sos = butter(self.order, self.cutoff_hz, btype="highpass", fs=sample_rate, output="sos")
        return _per_channel(audio, lambda channel: sosfilt(sos, channel)), sample_rate


class NoiseReduce(Stage):
    """Spectral-gating noise reduction (noisereduce); ``strength`` 0..1 is how much of the noise goes.
    The noise profile is learnt from the quietest tenth of the recording (its pauses), as a person
    would pick a noise-only stretch in an editor, so steady voiced sounds are not mistaken for noise."""

    def __init__(self, strength: float = 0.8) -> None:
        value = _number("NoiseReduce", "strength", strength, 0.0, 1.0)
        super().__init__(strength=value)
        self.strength = value

    def apply(self, audio: Audio, sample_rate: int) -> Tuple[Audio, int]:
        if self.strength == 0.0:
            return audio, sample_rate
        import noisereduce

        profile = quietest_frames(audio if audio.ndim == 1 else audio.mean(axis=0), sample_rate)
        reduced = noisereduce.reduce_noise(
            y=audio, sr=sample_rate, y_noise=profile, prop_decrease=self.strength, stationary=True, n_jobs=1
        )
        return np.asarray(reduced, dtype=np.float32), sample_rate


def quietest_frames(mono: Audio, sample_rate: int, frame_ms: float = 50.0, fraction: float = 0.1) -> Audio:
    """The quietest ``fraction`` of ``frame_ms`` frames, joined: a noise-only sample of the recording."""
    frame = max(1, int(sample_rate * frame_ms / 1000.0))
    count = mono.size // frame
    if count < 4:
        return mono
    frames = mono[: count * frame].reshape(count, frame)
    energy = np.einsum("ij,ij->i", frames, frames) / frame  # no squared copy of the whole recording
    keep = np.sort(np.argsort(energy)[: max(2, int(count * fraction))])
    return frames[keep].reshape(-1)


class PitchShift(Stage):
    """Shift pitch by ``semitones`` keeping duration (librosa phase vocoder + soxr)."""

    def __init__(self, semitones: float = 0.0) -> None:
        value = _number("PitchShift", "semitones", semitones, -24.0, 24.0)
        super().__init__(semitones=value)
        self.semitones = value

    def apply(self, audio: Audio, sample_rate: int) -> Tuple[Audio, int]:
        if self.semitones == 0.0:
            return audio, sample_rate
        import librosa  # its numba kernels compile on import: only when a pitch shift is asked for

        shifted = librosa.effects.pitch_shift(audio, sr=sample_rate, n_steps=self.semitones, res_type="soxr_hq")
        return np.asarray(shifted, dtype=np.float32), sample_rate


class ChangeSpeed(Stage):
    """Play ``factor`` times faster without changing pitch (0.25..4; librosa time stretch)."""

    def __init__(self, factor: float = 1.0) -> None:
        value = _number("ChangeSpeed", "factor", factor, 0.25, 4.0)
        super().__init__(factor=value)
        self.factor = value

    def apply(self, audio: Audio, sample_rate: int) -> Tuple[Audio, int]:
        if self.factor == 1.0:
            return audio, sample_rate
        import librosa  # its numba kernels compile on import: only when a speed change is asked for

        stretched = librosa.effects.time_stretch(audio, rate=self.factor)
        return np.asarray(stretched, dtype=np.float32), sample_rate


class LoudnessNormalize(Stage):
    """Integrated loudness to ``target_lufs`` (ITU-R BS.1770, measured as pyloudnorm does) with a true-peak ceiling
    ``true_peak_db`` (dBTP, measured 4x oversampled). Where the gain would push peaks past the ceiling,
    pedalboard's limiter (JUCE's) takes them down, and the gain is re-aimed at the target (limiting lowers
    loudness): speech's short peaks no longer hold the whole signal several LU below the target."""

    MIN_SECONDS = 0.4  # one BS.1770 gating block
    LIMIT_MARGIN_DB = 0.3
    """The limiter works on samples; this keeps the peaks between samples under the ceiling too."""
    ROUNDS = 5
    CLOSE_ENOUGH_LU = 0.25
    """Another limiting round only past this (each costs ~8 ms on 5 s of speech; 0.25 LU is far below what anyone
    hears, and half the 0.5 LU the targets promise)."""
    MAX_LIMITING_DB = 12.0
    """Past this much gain reduction on peaks speech sounds squashed: the target is given up instead."""

    def __init__(self, target_lufs: float = -16.0, true_peak_db: float = -1.0) -> None:
        target = _number("LoudnessNormalize", "target_lufs", target_lufs, -70.0, -5.0)
        ceiling = _number("LoudnessNormalize", "true_peak_db", true_peak_db, -20.0, 0.0)
        super().__init__(target_lufs=target, true_peak_db=ceiling)
        self.target_lufs = target
        self.true_peak_db = ceiling
        self.reached_lufs: Optional[float] = None
        """What the last ``apply`` reached (None: too short to measure; -inf: silence): the result's details need
        it, and measuring it again would cost as much as a round of the loop."""

    def apply(self, audio: Audio, sample_rate: int) -> Tuple[Audio, int]:
        self.reached_lufs = None
        if audio.shape[-1] < self.MIN_SECONDS * sample_rate:
            return audio, sample_rate  # too short to measure: left as it is
        loudness = integrated_lufs(audio, sample_rate)
        self.reached_lufs = loudness
        if not np.isfinite(loudness):
            return audio, sample_rate  # digital silence
        ceiling = 10.0 ** (self.true_peak_db / 20.0)
        gain_db = self.target_lufs - loudness
        most_db = math.inf  # known after the first true-peak measurement (peaks scale with the gain)
        margin_db = self.LIMIT_MARGIN_DB
        out = audio
        reached = loudness
        for _ in range(self.ROUNDS):
            gain_db = min(gain_db, most_db)
            out = np.multiply(audio, np.float32(10.0 ** (gain_db / 20.0)), dtype=np.float32)
            peak = true_peak(out, sample_rate)
            if peak <= ceiling:
                reached = loudness + gain_db  # a plain gain moves loudness by exactly its dB
                break  # no limiting needed: the gain alone reaches the target
            if most_db == math.inf:
                most_db = gain_db + self.true_peak_db - 20.0 * math.log10(peak) + self.MAX_LIMITING_DB
                if gain_db > most_db:
                    reached = loudness + most_db  # the next round's gain (a plain gain moves loudness by its dB)
                    continue
            out = limited(out, sample_rate, self.true_peak_db - margin_db)
            peak = true_peak(out, sample_rate)
            if peak > ceiling:  # the limiter works on samples: take off what it left between them, and aim lower next
                out = out * np.float32(ceiling / peak)
                margin_db += 20.0 * math.log10(peak / ceiling)
                peak = ceiling
            reached = integrated_lufs(out, sample_rate)
            if np.isfinite(reached) and reached > self.target_lufs:
                # JUCE's limiter compresses above -10 dBFS first and can come out louder than it went in: a plain
                # gain down reaches the target and only lowers the peaks (re-aiming the gain instead fell short)
                out = out * np.float32(10.0 ** ((self.target_lufs - reached) / 20.0))
                peak *= 10.0 ** ((self.target_lufs - reached) / 20.0)
                reached = self.target_lufs
            if not np.isfinite(reached) or abs(reached - self.target_lufs) <= self.CLOSE_ENOUGH_LU or gain_db >= most_db:
                break
            gain_db += self.target_lufs - reached
        if peak > ceiling:  # only where the limiting was given up (more than MAX_LIMITING_DB): the plain ceiling
            out = out * np.float32(ceiling / peak)
            reached += 20.0 * math.log10(ceiling / peak)
        self.reached_lufs = reached
        return np.asarray(out, dtype=np.float32), sample_rate


def limited(audio: Audio, sample_rate: int, ceiling_db: float) -> Audio:
    """Peaks above ``ceiling_db`` brought down by pedalboard's limiter, the rest left at its level (JUCE's
    limiter raises its threshold to 0 dBFS; that make-up gain is taken back here)."""
    import pedalboard

    limiter = pedalboard.Limiter(threshold_db=ceiling_db, release_ms=50.0)
    out = limiter(np.ascontiguousarray(audio, dtype=np.float32), sample_rate)
    out *= np.float32(10.0 ** (ceiling_db / 20.0))
    return np.asarray(out, dtype=np.float32)


def integrated_lufs(audio: Audio, sample_rate: int) -> float:
    """BS.1770-4 integrated loudness, pyloudnorm's figures (``pipeline.dsp.integrated_loudness``: no scipy import)."""
    return integrated_loudness(audio, sample_rate)


def true_peak(audio: Audio, sample_rate: int) -> float:
    """Peak of the 4x oversampled signal (BS.1770 Annex 2's method, with soxr as the interpolator)."""
    oversampled = resample(audio, sample_rate, sample_rate * 4)
    return float(np.max(np.abs(oversampled))) if oversampled.size else 0.0


class Fade(Stage):
    """Fade in over ``fade_in_ms`` and out over ``fade_out_ms`` (equal-power curves)."""

    def __init__(self, fade_in_ms: float = 0.0, fade_out_ms: float = 0.0) -> None:
        fade_in = _number("Fade", "fade_in_ms", fade_in_ms, 0.0, 60000.0)
        fade_out = _number("Fade", "fade_out_ms", fade_out_ms, 0.0, 60000.0)
        super().__init__(fade_in_ms=fade_in, fade_out_ms=fade_out)
        self.fade_in_ms = fade_in
        self.fade_out_ms = fade_out

    def apply(self, audio: Audio, sample_rate: int) -> Tuple[Audio, int]:
        out = np.array(audio, dtype=np.float32, copy=True)
        length = out.shape[-1]
        fade_in = min(length, int(self.fade_in_ms * sample_rate / 1000.0))
        fade_out = min(length, int(self.fade_out_ms * sample_rate / 1000.0))
        if fade_in:
            out[..., :fade_in] *= np.sin(np.linspace(0.0, np.pi / 2, fade_in, dtype=np.float32))
        if fade_out:
            out[..., length - fade_out:] *= np.cos(np.linspace(0.0, np.pi / 2, fade_out, dtype=np.float32))
        return out, sample_rate
