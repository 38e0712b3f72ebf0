"""The few signal operations the default chains need, on numpy and soxr alone.

librosa gave the same results, but importing its effects and feature modules compiles numba code (its
``vectorize``/``guvectorize`` kernels): 7-25 s on this 2-core machine the first time, ~1 s even from numba's
cache, paid by whichever request came first. These are the same computations, with no JIT: librosa stays for
the stages that need it (pitch shift, time stretch), imported when one of them runs.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import soxr

Audio = np.ndarray


def resample(audio: Audio, from_hz: int, to_hz: int) -> Audio:
    """``audio`` (``(samples,)`` or ``(channels, samples)``) from ``from_hz`` to ``to_hz`` with soxr's high quality,
    ``ceil(samples * to_hz / from_hz)`` samples long: what ``librosa.resample(..., res_type="soxr_hq")`` returns."""
    if from_hz == to_hz:
        return audio
    length = int(math.ceil(audio.shape[-1] * float(to_hz) / from_hz))
    frames = np.ascontiguousarray(audio.T if audio.ndim == 2 else audio)  # soxr takes (frames, channels)
    out = soxr.resample(frames, from_hz, to_hz, quality="HQ")
    out = out.T if audio.ndim == 2 else out
    if out.shape[-1] > length:
        out = out[..., :length]
    elif out.shape[-1] < length:
        out = np.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, length - out.shape[-1])])
    return np.asarray(out, dtype=audio.dtype)


def loud_frames_span(mono: Audio, threshold_db: float, frame_length: int = 512, hop_length: int = 128) -> Optional[Tuple[int, int]]:
    """Samples ``(start, end)`` from the first to past the last frame whose mean square is above ``threshold_db``
    (dBFS, full scale 1.0), frames centred on multiples of ``hop_length`` as ``librosa.effects.trim`` frames them
    (``start`` is the first such frame's centre); None when no frame is that loud."""
    if mono.size == 0:
        return None
    half = frame_length // 2
    padded = np.pad(np.asarray(mono, dtype=np.float32), half)
    if padded.size < frame_length:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length]
    mean_square = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / frame_length
    # librosa: 10*log10(max(1e-10, ms)) > threshold_db
    loud = np.flatnonzero(np.maximum(mean_square, 1e-10) > 10.0 ** (threshold_db / 10.0))
    if loud.size == 0:
        return None
    return int(loud[0]) * hop_length, min(mono.size, (int(loud[-1]) + 1) * hop_length)
