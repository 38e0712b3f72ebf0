"""Decoding what people upload and encoding what they download. The one place where soundfile's
``(frames, channels)`` layout is converted to ours: float32 ``(channels, samples)`` or ``(samples,)``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import soundfile

from pipeline.dsp import resample
from pipeline.errors import AudioDecodeError, AudioEncodeError

# format name -> (soundfile format, subtype, file suffix)
OUTPUT_FORMATS: Dict[str, Tuple[str, str, str]] = {
    "wav": ("WAV", "PCM_16", ".wav"),
    "wav24": ("WAV", "PCM_24", ".wav"),
    "wav-float": ("WAV", "FLOAT", ".wav"),
    "flac": ("FLAC", "PCM_16", ".flac"),
    "flac24": ("FLAC", "PCM_24", ".flac"),
    "ogg": ("OGG", "VORBIS", ".ogg"),
    "opus": ("OGG", "OPUS", ".opus"),
    "mp3": ("MP3", "MPEG_LAYER_III", ".mp3"),
}
OPUS_RATES_HZ = (8000, 12000, 16000, 24000, 48000)
TAG_NAMES = ("title", "artist", "album", "comment", "software")


@dataclass(frozen=True)
class DecodedAudio:
    audio: np.ndarray  # float32, (channels, samples)
    sample_rate: int


@dataclass(frozen=True)
class AudioHeader:
    duration_s: float
    channels: int
    sample_rate: int


def probe(path: Path) -> Optional[AudioHeader]:
    """What the file's header says, without decoding it (None: no header soundfile can read; ``decode`` says why)."""
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    return AudioHeader(float(info.frames) / info.samplerate if info.samplerate else 0.0, int(info.channels), int(info.samplerate))


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


def pcm16(audio: np.ndarray) -> np.ndarray:
    """Mono float samples as the 16-bit integers a PCM_16 file of them holds (libsndfile's own conversion)."""
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", samplerate=8000, channels=1, format="RAW", subtype="PCM_16") as out:
        out.write(np.asarray(audio, dtype=np.float32).reshape(-1))
    samples: np.ndarray = np.frombuffer(buffer.getvalue(), dtype="<i2").copy()
    return samples


def output_sample_rate(output_format: str, sample_rate: int) -> int:
    """The rate ``encode`` writes: the audio's own, except where the format cannot carry it (Opus)."""
    subtype = OUTPUT_FORMATS[output_format][1] if output_format in OUTPUT_FORMATS else ""
    return 48000 if subtype == "OPUS" and sample_rate not in OPUS_RATES_HZ else sample_rate


def encode(
    audio: np.ndarray, sample_rate: int, path: Path, output_format: str, tags: Optional[Dict[str, str]] = None
) -> Path:
    """Write ``audio`` to ``path`` (its suffix replaced by the format's), with metadata ``tags`` (title,
    artist, album, comment, software), and return the path written. Opus takes 48 kHz (resampled)."""
    try:
        container, subtype, suffix = OUTPUT_FORMATS[output_format]
    except KeyError:
        raise AudioEncodeError(
            "unknown output format %r (choose one of %s)" % (output_format, ", ".join(OUTPUT_FORMATS))
        ) from None
    target = path.with_suffix(suffix)
    target_rate = output_sample_rate(output_format, sample_rate)
    if target_rate != sample_rate:
        audio = resample(audio, sample_rate, target_rate)
        sample_rate = target_rate
    frames = audio.T if audio.ndim == 2 else audio
    channels = 1 if audio.ndim == 1 else audio.shape[0]
    try:
        with soundfile.SoundFile(
            str(target), "w", samplerate=sample_rate, channels=channels, format=container, subtype=subtype
        ) as out:
            for name, value in (tags or {}).items():
                if name not in TAG_NAMES:
                    raise AudioEncodeError("unknown tag %r (known: %s)" % (name, ", ".join(TAG_NAMES)))
                setattr(out, name, value)
            out.write(frames)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioEncodeError("could not write %s as %s: %s" % (target.name, output_format, exc)) from exc
    return target
