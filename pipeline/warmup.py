"""Paying the pipeline's one-off costs before the first request does: library imports (soxr, pedalboard,
soundfile) and first calls, ~0.3 s of CPU here. No JIT and no scipy: the default chains use no numba code and measure
loudness without scipy.signal (``pipeline.dsp``); librosa's compiled kernels (7-25 s here, ~1 s from numba's cache) are
paid only by a pitch shift or speed change. Run once at app start, on a background thread beside the app's own
imports; the app takes its address only after it."""

from __future__ import annotations

import logging
import time

import numpy as np

from pipeline.dsp import k_weighting_response
from pipeline.processing import PostOptions, PreOptions
from pipeline.stages import limited

logger = logging.getLogger(__name__)
COMMON_RATES_HZ = (16000, 22050, 24000, 32000, 40000, 44100, 48000)


def warm_up() -> float:
    """Run the default chains on a short signal; returns the seconds it took."""
    started = time.perf_counter()
    rate = 22050
    signal = (0.1 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)).astype(np.float32)
    PreOptions(trim_silence=True, loudness_lufs=-23.0).chain(16000).apply(np.stack([signal, signal]), rate)
    PostOptions().chain().apply(signal, rate)  # at the rate most voices speak at
    limited(signal * 8, rate, -1.0)  # the limiter's library and first call
    for common in COMMON_RATES_HZ:  # the loudness meter's filter response, made once per rate
        k_weighting_response(common)
    took = time.perf_counter() - started
    logger.info("audio pipeline warmed up in %.1f s", took)
    return took
