"""Decoding what people upload and encoding what they download. The one place where soundfile's
``(frames, channels)`` layout is converted to ours: float32 ``(channels, samples)`` or ``(samples,)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import soundfile

from pipeline.errors import AudioDecodeError, AudioEncodeError

# format name -> (soundfile format, default subtype, file suffix)
OUTPUT_FORMATS: Dict[str, Tuple[str, str, str]] = {
    "wav": ("WAV", "PCM_16", ".wav"),
    "flac": ("FLAC", "PCM_16", ".flac"),
    "ogg": ("OGG", "VORBIS", ".ogg"),
    "mp3": ("MP3", "MPEG_LAYER_III", ".mp3"),
}


@dataclass(frozen=True)
class DecodedAudio:
    audio: np.ndarray  # float32, (channels, samples)
    sample_rate: int


def decode(path: Path, display_name: Optional[str] = None) -> DecodedAudio:
    """Read any file soundfile can decode (wav, flac, ogg, mp3, ...) as float32 ``(channels, samples)``."""
    name = display_name or path.name
    if not path.exists():
        raise AudioDecodeError("%s: file not found" % name)
    try:
        frames, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioDecodeError(
            "%s: not a readable audio file (wav, flac, ogg and mp3 are supported): %s" % (name, exc)
        ) from exc
    if frames.shape[0] == 0:
        raise AudioDecodeError("%s: the file holds no audio samples" % name)
    if not np.all(np.isfinite(frames)):
        raise AudioDecodeError("%s: the audio holds NaN or infinite samples" % name)
    return DecodedAudio(np.ascontiguousarray(frames.T), int(sample_rate))


def encode(audio: np.ndarray, sample_rate: int, path: Path, output_format: str) -> Path:
    """Write ``audio`` to ``path`` (its suffix replaced by the format's) and return the path written."""
    try:
        container, subtype, suffix = OUTPUT_FORMATS[output_format]
    except KeyError:
        raise AudioEncodeError(
            "unknown output format %r (choose one of %s)" % (output_format, ", ".join(OUTPUT_FORMATS))
        ) from None
    target = path.with_suffix(suffix)
    frames = audio.T if audio.ndim == 2 else audio
    try:
        soundfile.write(str(target), frames, sample_rate, format=container, subtype=subtype)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioEncodeError("could not write %s as %s: %s" % (target.name, output_format, exc)) from exc
    return target
