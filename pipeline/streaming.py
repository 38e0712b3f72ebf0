"""Post-processing on a stream: the pieces a model yields go out processed as they come, so the first can be heard
while the rest is made.

Each post-processing stage either has an incremental form here (with bounded look-ahead) or needs the whole take:
* trim silence: leading silence is dropped as it comes; silence after the last loud sample is held back until
  more speech follows it (then it is a pause, and goes out) or the take ends (then all but the margin is cut);
* loudness to a target / peak normalisation: the gain is measured on the first piece (at least one BS.1770 block,
  ``LOOKAHEAD_MIN_S``), then held for the take; peaks past the ceiling meet a streaming limiter (a later sentence
  louder than the first comes out a little louder than the target; the batch chain measures the whole take);
* resampling: soxr's streaming resampler; fades: the fade-out's length is held back;
* noise reduction, speed change and pitch shift need the whole take: with any of them the stream waits for the
  take and processes it as the batch chain does (one piece at the end).
What was streamed and what waited is in ``plan`` (a streamed answer says so). The take is the concatenation of what
``push`` and ``finish`` return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from pipeline.processing import PostOptions
from pipeline.stages import (
    ChangeSpeed,
    Fade,
    LoudnessNormalize,
    NoiseReduce,
    PeakNormalize,
    PitchShift,
    Resample,
    Stage,
    TrimSilence,
    integrated_lufs,
)

Audio = np.ndarray
LOOKAHEAD_MIN_S = LoudnessNormalize.MIN_SECONDS
WHOLE_TAKE_STAGES = (NoiseReduce, ChangeSpeed, PitchShift)
"""Stages whose result depends on the whole take (a noise profile from its quietest frames, a phase vocoder)."""


@dataclass(frozen=True)
class StreamPlan:
    incremental: Tuple[str, ...]
    whole_take: Tuple[str, ...]
    """Non-empty: the stream waits for the whole take (these stages need it)."""

    def to_dict(self) -> dict:  # type: ignore[type-arg]
        return {"incremental": list(self.incremental), "whole_take": list(self.whole_take)}


class _Step:
    name = ""

    def push(self, audio: Audio) -> Audio:
        raise NotImplementedError

    def finish(self) -> Audio:
        return np.zeros(0, dtype=np.float32)


def _empty() -> Audio:
    return np.zeros(0, dtype=np.float32)


class _Trim(_Step):
    name = "trim silence"

    def __init__(self, stage: TrimSilence, sample_rate: int) -> None:
        self.threshold = 10.0 ** (stage.threshold_db / 20.0)
        self.keep = int(round(stage.keep_ms * sample_rate / 1000.0))
        self.started = False
        self.held = _empty()
        """Before the first loud sample: the margin's worth of what came; after it: what followed the last loud sample."""

    def push(self, audio: Audio) -> Audio:
        joined = np.concatenate([self.held, audio])
        loud = np.flatnonzero(np.abs(joined) >= self.threshold)
        if loud.size == 0:
            self.held = joined[-self.keep:] if not self.started and self.keep else (joined if self.started else _empty())
            return _empty()
        start = 0 if self.started else max(0, int(loud[0]) - self.keep)
        end = int(loud[-1]) + 1
        self.started = True
        self.held = joined[end:]
        return joined[start:end]

    def finish(self) -> Audio:
        return self.held[: self.keep] if self.started else _empty()


class _Gain(_Step):
    """A gain measured on the first ``LOOKAHEAD_MIN_S`` or more (the first piece), held for the take. Peaks past the
    ceiling meet a block limiter whose state carries from piece to piece (gain reduction at once, released over
    ``RELEASE_S``), then a soft knee for what is left between blocks: a later sentence louder than the first is brought
    under the ceiling instead of clipped (the batch chain's limiter needs the whole take)."""

    KNEE_DB = 1.0
    """Below the ceiling by this much the knee starts to bend; the limiter aims at the knee."""
    KNEE_HEADROOM_DB = 3.0
    BLOCK_S = 0.005
    RELEASE_S = 0.08

    def __init__(self, stage: Stage, sample_rate: int) -> None:
        self.stage, self.rate = stage, sample_rate
        self.name = "loudness" if isinstance(stage, LoudnessNormalize) else "peak normalisation"
        ceiling_db = stage.true_peak_db if isinstance(stage, LoudnessNormalize) else stage.peak_db  # type: ignore[attr-defined]
        self.ceiling = float(10.0 ** (float(ceiling_db) / 20.0))
        self.knee = float(self.ceiling * 10.0 ** (-self.KNEE_DB / 20.0))
        self.pending: List[Audio] = []
        self.gain: Optional[float] = None
        self.block = max(1, int(self.BLOCK_S * sample_rate))
        self.release = 1.0 - math.exp(-self.BLOCK_S / self.RELEASE_S)
        self.reduction = 1.0
        """The limiter's gain at the end of the last piece."""

    def _limited(self, audio: Audio) -> Audio:
        blocks = -(-audio.size // self.block)
        padded = np.zeros(blocks * self.block, dtype=np.float32)
        padded[:audio.size] = np.abs(audio)
        peaks = padded.reshape(blocks, self.block).max(axis=1)
        needs = np.minimum(1.0, self.knee / np.maximum(peaks, 1e-9))
        gains = np.empty(blocks, dtype=np.float32)
        reduction = self.reduction
        for index, need in enumerate(needs):  # a few hundred blocks a second: cheap beside the model
            reduction = float(need) if need < reduction else min(float(need), reduction + (1.0 - reduction) * self.release)
            gains[index] = reduction
        self.reduction = reduction
        return np.asarray(audio * np.repeat(gains, self.block)[:audio.size], dtype=np.float32)

    def _decide(self, window: Audio) -> float:
        """The linear gain for the take, from its first piece."""
        peak = float(np.max(np.abs(window))) if window.size else 0.0
        if peak < 1e-6:
            return 1.0
        if not isinstance(self.stage, LoudnessNormalize):
            return float(self.ceiling / peak)
        if window.size < LoudnessNormalize.MIN_SECONDS * self.rate:  # a whole take this short: left as it is, as the batch stage does
            return 1.0
        loudness = integrated_lufs(window, self.rate)
        if not np.isfinite(loudness):
            return 1.0
        most = self.ceiling * 10.0 ** (self.KNEE_HEADROOM_DB / 20.0) / peak
        return float(min(10.0 ** ((self.stage.target_lufs - loudness) / 20.0), most))

    def _apply(self, audio: Audio) -> Audio:
        assert self.gain is not None
        out: Audio = self._limited(np.multiply(audio, np.float32(self.gain), dtype=np.float32))
        over = np.abs(out) > self.knee
        if over.any():  # above the knee: bent smoothly towards the ceiling, never past it
            span = self.ceiling - self.knee
            bent = self.knee + span * np.tanh((np.abs(out[over]) - self.knee) / span)
            out[over] = np.sign(out[over]) * bent.astype(np.float32)
        return out

    def push(self, audio: Audio) -> Audio:
        if self.gain is None:
            self.pending.append(audio)
            window = np.concatenate(self.pending)
            if window.size < LOOKAHEAD_MIN_S * self.rate:
                return _empty()
            self.gain, self.pending = self._decide(window), []
            return self._apply(window)
        return self._apply(audio)

    def finish(self) -> Audio:
        if self.gain is None and self.pending:
            window = np.concatenate(self.pending)
            self.gain, self.pending = self._decide(window), []
            return self._apply(window)
        return _empty()


class _Resample(_Step):
    name = "resample"

    def __init__(self, stage: Resample, sample_rate: int) -> None:
        import soxr

        self.stream = soxr.ResampleStream(sample_rate, stage.target_hz, 1, dtype="float32", quality="HQ")

    def push(self, audio: Audio) -> Audio:
        return np.asarray(self.stream.resample_chunk(np.ascontiguousarray(audio, dtype=np.float32)), dtype=np.float32)

    def finish(self) -> Audio:
        return np.asarray(self.stream.resample_chunk(_empty(), last=True), dtype=np.float32)


class _Fade(_Step):
    name = "fade"

    def __init__(self, stage: Fade, sample_rate: int) -> None:
        self.fade_in = int(stage.fade_in_ms * sample_rate / 1000.0)
        self.fade_out = int(stage.fade_out_ms * sample_rate / 1000.0)
        self.position = 0
        self.held = _empty()

    def push(self, audio: Audio) -> Audio:
        joined = np.concatenate([self.held, audio])
        cut = max(0, joined.size - self.fade_out)
        out, self.held = np.array(joined[:cut], dtype=np.float32), joined[cut:]
        if self.position < self.fade_in and out.size:
            count = min(out.size, self.fade_in - self.position)
            curve = np.sin(np.linspace(0.0, np.pi / 2, self.fade_in, dtype=np.float32))[self.position:self.position + count]
            out[:count] *= curve
        self.position += out.size
        return out

    def finish(self) -> Audio:
        tail = np.array(self.held, dtype=np.float32)
        if tail.size:
            tail *= np.cos(np.linspace(0.0, np.pi / 2, tail.size, dtype=np.float32))
        return tail


def _steps(stages: List[Stage], sample_rate: int) -> Tuple[List[_Step], int]:
    steps: List[_Step] = []
    rate = sample_rate
    for stage in stages:
        if isinstance(stage, TrimSilence):
            steps.append(_Trim(stage, rate))
        elif isinstance(stage, (LoudnessNormalize, PeakNormalize)):
            steps.append(_Gain(stage, rate))
        elif isinstance(stage, Resample):
            if stage.target_hz != rate:
                steps.append(_Resample(stage, rate))
                rate = stage.target_hz
        elif isinstance(stage, Fade):
            steps.append(_Fade(stage, rate))
        else:  # pragma: no cover - a new stage must say here how it streams
            raise TypeError("no streaming form of %s" % type(stage).__name__)
    return steps, rate


@dataclass
class StreamingPost:
    """``post`` applied to a take that arrives in pieces at ``sample_rate`` (mono)."""

    post: PostOptions
    sample_rate: int
    plan: StreamPlan = field(init=False)
    out_rate: int = field(init=False)
    _steps: List[_Step] = field(init=False, default_factory=list)
    _whole: List[Audio] = field(init=False, default_factory=list)
    _made: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        stages = self.post.to_chain_parts()
        whole = tuple(type(stage).__name__ for stage in stages if isinstance(stage, WHOLE_TAKE_STAGES))
        if whole:
            self._steps, self.out_rate = [], self.post.sample_rate_hz or self.sample_rate
            self.plan = StreamPlan((), whole)
        else:
            self._steps, self.out_rate = _steps(stages, self.sample_rate)
            self.plan = StreamPlan(tuple(step.name for step in self._steps), ())

    @property
    def waits_for_the_take(self) -> bool:
        return bool(self.plan.whole_take)

    def push(self, audio: Audio) -> Audio:
        """What of the take can go out now that ``audio`` came (often all of it; empty while a step looks ahead)."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        self._made += audio.size
        if self.waits_for_the_take:
            self._whole.append(audio)
            return _empty()
        for step in self._steps:
            audio = step.push(audio)
        return audio

    def finish(self) -> Audio:
        """The rest of the take: what the steps held back, flushed through the steps after them."""
        if self.waits_for_the_take:
            take = np.concatenate(self._whole) if self._whole else _empty()
            return np.asarray(self.post.chain().apply(take, self.sample_rate)[0], dtype=np.float32)
        out = _empty()
        for index, step in enumerate(self._steps):
            flushed = step.finish()
            for later in self._steps[index + 1:]:
                flushed = later.push(flushed)
            out = np.concatenate([out, flushed]) if out.size else flushed
        return out
