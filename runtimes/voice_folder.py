"""A saved voice, as zero-shot architectures read it: a folder holding ``reference.wav`` (the recording, mono 16-bit
PCM, as the app's Voices panel trimmed it) and ``voice.json`` (its transcript, who made it, from what, when).

The app writes these folders (``app.voices``); workers read them here. Standard library + numpy only; Python 3.9.
"""

from __future__ import annotations

import hashlib
import json
import os
import wave
from dataclasses import dataclass
from typing import Any, Dict

import numpy as np

from runtimes.errors import BadRequestError

REFERENCE_FILE = "reference.wav"
VOICE_FILE = "voice.json"


@dataclass(frozen=True)
class VoiceRecording:
    audio: np.ndarray
    """Mono float32 samples in [-1, 1]."""
    sample_rate: int
    transcript: str
    """What the recording says ("" when not given: a model that needs it transcribes it)."""
    digest: str
    """sha256 of the samples, rate and transcript: what a computed conditioning is cached by."""
    info: Dict[str, Any]
    """All of ``voice.json`` (name, made_by, source, created_at, ...)."""


def read_info(folder: str) -> Dict[str, Any]:
    path = os.path.join(folder, VOICE_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise BadRequestError("%s is not a saved voice: it has no %s" % (os.path.basename(folder), VOICE_FILE)) from None
    except (OSError, ValueError) as exc:
        raise BadRequestError("%s of %s cannot be read: %s" % (VOICE_FILE, os.path.basename(folder), exc)) from None
    if not isinstance(data, dict):
        raise BadRequestError("%s of %s is not a JSON object" % (VOICE_FILE, os.path.basename(folder)))
    return data


def read_wav(path: str) -> "tuple[np.ndarray, int]":
    """A 16-bit PCM WAV as mono float32 (channels averaged) and its rate."""
    try:
        with wave.open(path, "rb") as handle:
            channels, width, rate = handle.getnchannels(), handle.getsampwidth(), handle.getframerate()
            frames = handle.readframes(handle.getnframes())
    except FileNotFoundError:
        raise BadRequestError("the voice has no %s" % os.path.basename(path)) from None
    except (OSError, wave.Error, EOFError) as exc:
        raise BadRequestError("%s cannot be read as a WAV file: %s" % (os.path.basename(path), exc)) from None
    if width != 2:
        raise BadRequestError("%s must be 16-bit PCM; it has %d-byte samples" % (os.path.basename(path), width))
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples, int(rate)


def content_digest(audio: np.ndarray, sample_rate: int, transcript: str = "") -> str:
    """What a conditioning computed from this recording (and transcript) is cached by."""
    digest = hashlib.sha256(np.ascontiguousarray(audio, dtype=np.float32).tobytes())
    digest.update(("|%d|%s" % (int(sample_rate), transcript)).encode("utf-8"))
    return digest.hexdigest()


def read_voice(folder: str) -> VoiceRecording:
    """The saved voice in ``folder``; BadRequestError naming what is wrong."""
    info = read_info(folder)
    audio, rate = read_wav(os.path.join(folder, REFERENCE_FILE))
    if not audio.size:
        raise BadRequestError("the recording of voice %s is empty" % os.path.basename(folder))
    transcript = str(info.get("transcript") or "").strip()
    return VoiceRecording(audio, rate, transcript, content_digest(audio, rate, transcript), info)


def is_voice_folder(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, VOICE_FILE)) and os.path.isfile(os.path.join(folder, REFERENCE_FILE))
