"""The few signal operations the default chains need, on numpy and soxr alone.

librosa gave the same results, but importing its effects and feature modules compiles numba code (its
``vectorize``/``guvectorize`` kernels): 7-25 s on this 2-core machine the first time, ~1 s even from numba's
cache, paid by whichever request came first. These are the same computations, with no JIT: librosa stays for
the stages that need it (pitch shift, time stretch), imported when one of them runs.
"""

from __future__ import annotations

import functools
import math
from typing import List, Optional, Tuple

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


def _k_weighting_biquads(sample_rate: int) -> Tuple[Tuple[np.ndarray, np.ndarray], ...]:
    """BS.1770's two K-weighting stages as pyloudnorm designs them for any rate (RBJ cookbook): a +4 dB high shelf at
    1500 Hz (Q 1/sqrt 2) and a high-pass at 38 Hz (Q 0.5); each ``(b, a)`` normalised to ``a[0] == 1``."""
    stages = []
    for kind, gain_db, q, cutoff_hz in (("shelf", 4.0, 1.0 / math.sqrt(2.0), 1500.0), ("high_pass", 0.0, 0.5, 38.0)):
        big_a = 10.0 ** (gain_db / 40.0)
        w0 = 2.0 * math.pi * cutoff_hz / sample_rate
        alpha = math.sin(w0) / (2.0 * q)
        cos_w0 = math.cos(w0)
        if kind == "shelf":
            root = 2.0 * math.sqrt(big_a) * alpha
            b = [big_a * ((big_a + 1) + (big_a - 1) * cos_w0 + root), -2 * big_a * ((big_a - 1) + (big_a + 1) * cos_w0),
                 big_a * ((big_a + 1) + (big_a - 1) * cos_w0 - root)]
            a = [(big_a + 1) - (big_a - 1) * cos_w0 + root, 2 * ((big_a - 1) - (big_a + 1) * cos_w0),
                 (big_a + 1) - (big_a - 1) * cos_w0 - root]
        else:
            b = [(1 + cos_w0) / 2, -(1 + cos_w0), (1 + cos_w0) / 2]
            a = [1 + alpha, -2 * cos_w0, 1 - alpha]
        stages.append((np.array(b) / a[0], np.array(a) / a[0]))
    return tuple(stages)


@functools.lru_cache(maxsize=8)
def k_weighting_response(sample_rate: int) -> np.ndarray:
    """The K-weighting filter's impulse response, as long as it is above 1e-13 of its peak (then it only decays:
    what is cut is far below float32's resolution). A few thousand samples; made once per rate."""
    stages = [([float(v) for v in b], [float(v) for v in a]) for b, a in _k_weighting_biquads(sample_rate)]
    response: List[float] = []
    states = [[0.0, 0.0, 0.0, 0.0] for _ in stages]  # x[n-1], x[n-2], y[n-1], y[n-2] per stage
    quiet_run = 0
    n = 0
    while quiet_run < 64 or n < 16:
        value = 1.0 if n == 0 else 0.0
        for (b, a), state in zip(stages, states, strict=True):
            x1, x2, y1, y2 = state
            out = b[0] * value + b[1] * x1 + b[2] * x2 - a[1] * y1 - a[2] * y2
            state[:] = [value, x1, out, y1]
            value = out
        response.append(value)
        quiet_run = quiet_run + 1 if abs(value) < 1e-13 else 0
        n += 1
    return np.asarray(response[: n - quiet_run + 1], dtype=np.float64)


@functools.lru_cache(maxsize=32)
def _response_spectrum(sample_rate: int, size: int) -> np.ndarray:
    return np.fft.rfft(k_weighting_response(sample_rate), size)


def _k_weighted_squares_cumsum(channel: Audio, sample_rate: int) -> Audio:
    """Running sum (from 0, ``len + 1`` long) of the K-weighted signal's squares: FFT convolution with the filter's
    impulse response; a long signal in pieces (overlap-add) of 4x the response (small transforms stay in cache), so
    memory stays one float64 array of the signal's length; a short one in one transform."""
    response = k_weighting_response(sample_rate)
    piece_size = 1 << max(12, int(math.ceil(math.log2(4 * response.size))))
    whole = channel.size + response.size - 1
    size = piece_size if whole > 4 * piece_size else 1 << int(math.ceil(math.log2(whole)))
    step = size - response.size + 1
    spectrum = _response_spectrum(sample_rate, size)
    squares = np.zeros(channel.size + 1, dtype=np.float64)
    carry = np.zeros(response.size - 1, dtype=np.float64)  # the tail of the previous piece's convolution
    for start in range(0, channel.size, step):
        piece = np.asarray(channel[start:start + step], dtype=np.float64)
        out = np.fft.irfft(np.fft.rfft(piece, size) * spectrum, size)[: piece.size + response.size - 1]
        out[: carry.size] += carry[: out.size]
        carry = out[piece.size:].copy()
        if carry.size < response.size - 1:
            carry = np.pad(carry, (0, response.size - 1 - carry.size))
        squares[start + 1: start + 1 + piece.size] = np.square(out[: piece.size])
    return np.cumsum(squares, out=squares)


def integrated_loudness(audio: Audio, sample_rate: int) -> float:
    """Integrated loudness in LUFS of ``audio`` (``(samples,)`` or ``(channels, samples)``), ITU-R BS.1770-4 as
    pyloudnorm measures it (K-weighting, 400 ms blocks with 75% overlap, -70 LUFS absolute and -10 LU relative gates;
    channel weights 1, 1, 1, 1.41, 1.41, then 1): the same figures (within 1e-4 LU) without scipy.signal, whose import
    alone (1.7 s of CPU here, for one ``lfilter``) was most of the pipeline's start-up. -inf for silence."""
    channels = audio.reshape(1, -1) if audio.ndim == 1 else audio
    samples = channels.shape[-1]
    block_s, step = 0.4, 0.25
    if samples < block_s * sample_rate:
        raise ValueError("Audio must have length greater than the block size.")
    blocks = int(np.round((samples / sample_rate - block_s) / (block_s * step))) + 1
    index = np.arange(blocks)
    lower = np.array([int(block_s * (j * step) * sample_rate) for j in index])
    upper = np.minimum(np.array([int(block_s * (j * step + 1) * sample_rate) for j in index]), samples)
    weights = [1.0, 1.0, 1.0, 1.41, 1.41]
    power = np.zeros((channels.shape[0], blocks))  # mean square per channel and block
    for number, channel in enumerate(channels):
        running = _k_weighted_squares_cumsum(channel, sample_rate)
        power[number] = (running[upper] - running[lower]) / (block_s * sample_rate)
    gains = np.array([weights[i] if i < len(weights) else 1.0 for i in range(channels.shape[0])])
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(gains @ power)
        above = block_lufs >= -70.0
        if not above.any():
            return -math.inf
        relative = -0.691 + 10.0 * np.log10(gains @ power[:, above].mean(axis=1)) - 10.0
        kept = (block_lufs > relative) & (block_lufs > -70.0)
        if not kept.any():
            return -math.inf
        return float(-0.691 + 10.0 * np.log10(gains @ power[:, kept].mean(axis=1)))
