"""A spectrogram picture of a sound file (what people compare takes by), drawn with numpy alone."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import soundfile

HEIGHT_PX = 160
WIDTH_PX = 640
FLOOR_DB = -80.0


def _colour(levels: np.ndarray) -> np.ndarray:
    """0..1 -> RGB on a dark-to-bright ramp (black, purple, orange, yellow)."""
    stops = np.array([[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]], dtype=np.float64)
    position = levels * (len(stops) - 1)
    low = np.clip(np.floor(position).astype(int), 0, len(stops) - 2)
    fraction = (position - low)[..., None]
    return np.asarray(stops[low] * (1 - fraction) + stops[low + 1] * fraction, dtype=np.uint8)


def spectrogram_image(path: Optional[str], max_seconds: float = 120.0) -> Optional[np.ndarray]:
    """An RGB image (height x width x 3) of the file's first ``max_seconds``: time left to right, frequency
    bottom to top (linear up to 8 kHz, where speech lives), level in dB; None for no file or no audio."""
    if not path or not Path(path).is_file():
        return None
    try:
        with soundfile.SoundFile(path) as handle:
            frames = handle.read(int(min(handle.frames, max_seconds * handle.samplerate)), dtype="float32", always_2d=True)
            rate = handle.samplerate
    except (soundfile.LibsndfileError, RuntimeError, ValueError):
        return None
    audio = frames.mean(axis=1)
    if audio.size < 512:
        return None
    window = 1024
    hop = max(1, (audio.size - window) // WIDTH_PX) if audio.size > window else 1
    starts = np.arange(0, max(1, audio.size - window), hop)[:WIDTH_PX]
    taper = np.hanning(window).astype(np.float32)
    padded = np.pad(audio, (0, window))
    spectra = np.abs(np.fft.rfft(np.stack([padded[s:s + window] * taper for s in starts]), axis=1))
    top = min(spectra.shape[1], int(8000 / (rate / window)) + 1)
    levels_db = 20 * np.log10(spectra[:, :top] + 1e-9)
    levels_db -= levels_db.max()
    levels = np.clip((levels_db - FLOOR_DB) / -FLOOR_DB, 0, 1).T[::-1]  # frequency rows, low at the bottom
    rows = np.linspace(0, levels.shape[0] - 1, HEIGHT_PX).astype(int)
    return _colour(levels[rows])
