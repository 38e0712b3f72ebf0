"""A cover's last stage: the converted vocals put back over the accompaniment, at chosen gains, loudness-matched to
the original song, in the song's rate and length.

Everything here is linear until the one matching gain: the mix is exactly ``match * (vocals_gain * vocals +
backing_gain * backing + accompaniment_gain * accompaniment)`` (reverb, when asked, is added to the vocals first), so
a person can reason about it and a test can check it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Tuple

import numpy as np

from pipeline.dsp import integrated_loudness
from pipeline.errors import StageConfigError

Audio = np.ndarray
BACKING_CHOICES = ("convert", "keep")
"""What happens to backing vocals, which usually sit in the vocal stem's side (wide-panned) part: ``convert``: the stem's
centre (lead and whatever backing is centred) is converted and the side part dropped; ``keep``: the side part is also
put back as sung, unconverted (a lead/backing separation model would do better; none is offered yet)."""
PEAK_CEILING = 10 ** (-1.0 / 20)
"""-1 dBFS: the matching gain never pushes the mix's sample peak above it (a linear mix has no limiter to lean on)."""


@dataclass(frozen=True)
class RemixOptions:
    vocals_gain_db: float = 0.0
    accompaniment_gain_db: float = 0.0
    backing_gain_db: float = 0.0
    backing_vocals: str = "convert"
    reverb_wet: float = 0.0
    """0: dry; up to 1: that much of a small room's reverb added to the converted vocals (separation keeps the song's
    reverb with the vocals, which conversion mostly loses)."""
    match_loudness: bool = True
    """The mix at the original song's integrated loudness (else at the gains as given)."""

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> RemixOptions:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise StageConfigError("unknown cover setting(s) %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(known))))
        options = cls(**data)
        for name in ("vocals_gain_db", "accompaniment_gain_db", "backing_gain_db"):
            value = getattr(options, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -60.0 <= float(value) <= 24.0:
                raise StageConfigError("%s must be a number of dB from -60 to 24, got %r" % (name, value))
        if options.backing_vocals not in BACKING_CHOICES:
            raise StageConfigError("backing_vocals must be one of %s, got %r" % (", ".join(BACKING_CHOICES), options.backing_vocals))
        if isinstance(options.reverb_wet, bool) or not isinstance(options.reverb_wet, (int, float)) or not 0 <= options.reverb_wet <= 1:
            raise StageConfigError("reverb_wet must be from 0 to 1, got %r" % (options.reverb_wet,))
        if not isinstance(options.match_loudness, bool):
            raise StageConfigError("match_loudness must be true or false, got %r" % (options.match_loudness,))
        return options

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def stereo(audio: Audio) -> Audio:
    """(2, samples): mono duplicated, more channels than two folded to their mean pair."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        return np.stack([audio, audio])
    if audio.shape[0] == 1:
        return np.concatenate([audio, audio])
    if audio.shape[0] == 2:
        return audio
    return np.stack([audio[0::2].mean(axis=0), audio[1::2].mean(axis=0)]).astype(np.float32)


def mid_side(vocals: Audio) -> Tuple[Audio, Audio]:
    """The vocal stem's centre (mono, what goes to the converter) and its side part (stereo, the backing vocals' usual place)."""
    pair = stereo(vocals)
    mid = pair.mean(axis=0)
    return mid.astype(np.float32), (pair - mid).astype(np.float32)


def fitted(audio: Audio, length: int) -> Audio:
    """Cut or zero-padded to ``length`` samples (the last axis)."""
    if audio.shape[-1] >= length:
        return audio[..., :length]
    pad = [(0, 0)] * (audio.ndim - 1) + [(0, length - audio.shape[-1])]
    return np.pad(audio, pad)


def room_reverb(audio: Audio, sample_rate: int, decay_s: float = 1.2) -> Audio:
    """The wet signal of a small room: convolution with exponentially decaying noise (fixed seed: the same take
    reverberates the same), decorrelated between the two channels, at the dry signal's level."""
    from scipy.signal import fftconvolve  # here: importing scipy.signal costs seconds of the app's start

    rng = np.random.default_rng(20261205)
    length = max(1, int(decay_s * sample_rate))
    envelope = np.exp(-6.9 * np.arange(length) / length).astype(np.float32)  # -60 dB at decay_s
    pair = stereo(audio)
    wet = np.stack([fftconvolve(channel, rng.standard_normal(length).astype(np.float32) * envelope)[: pair.shape[-1]]
                    for channel in pair]).astype(np.float32)
    dry_rms, wet_rms = float(np.sqrt(np.mean(pair ** 2))), float(np.sqrt(np.mean(wet ** 2)))
    return wet * (dry_rms / wet_rms) if wet_rms > 0 else wet


def loudness(audio: Audio, sample_rate: int) -> float:
    """Integrated loudness in LUFS; -inf for silence or audio under one 400 ms block (nothing to match)."""
    try:
        return integrated_loudness(audio, sample_rate)
    except ValueError:
        return float("-inf")


def db(gain_db: float) -> float:
    return float(10 ** (gain_db / 20))


def remix(converted: Audio, backing: Audio, accompaniment: Audio, sample_rate: int, song_lufs: float,
          options: RemixOptions) -> Tuple[Audio, Dict[str, Any]]:
    """The cover (2, samples) at ``sample_rate``, as long as ``accompaniment``, and what was done (gains in dB).
    ``converted``: the converted lead (mono or stereo); ``backing``: the vocal stem's side part (stereo), used as
    ``options.backing_vocals`` says."""
    length = accompaniment.shape[-1]
    vocals = fitted(stereo(converted), length)
    if options.reverb_wet:
        vocals = vocals + options.reverb_wet * room_reverb(vocals, sample_rate)
    parts = db(options.vocals_gain_db) * vocals + db(options.accompaniment_gain_db) * stereo(accompaniment)
    if options.backing_vocals == "keep":
        parts = parts + db(options.backing_gain_db) * fitted(stereo(backing), length)
    notes: Dict[str, Any] = {"match_gain_db": 0.0, "song_lufs": round(song_lufs, 2) if np.isfinite(song_lufs) else None}
    gain = 1.0
    if options.match_loudness and np.isfinite(song_lufs):
        mix_lufs = loudness(parts, sample_rate)
        if np.isfinite(mix_lufs):
            gain = db(song_lufs - mix_lufs)
            peak = float(np.max(np.abs(parts))) if parts.size else 0.0
            if peak * gain > PEAK_CEILING:
                gain = PEAK_CEILING / peak
                notes["held_by"] = "the -1 dBFS peak ceiling: matching the song's loudness would clip"
    notes["match_gain_db"] = round(float(20 * np.log10(gain)), 3) if gain > 0 else None
    return (parts * gain).astype(np.float32), notes
