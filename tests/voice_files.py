"""A saved voice's folder as the tests write one (``runtimes.voice_folder`` reads it; ``app.voices`` writes the app's)."""

from __future__ import annotations

import json
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np


def write_voice(folder: Path, audio: np.ndarray, sample_rate: int, transcript: str = "", **info: Any) -> Path:
    """``reference.wav`` (mono 16-bit PCM) + ``voice.json`` in ``folder``; ``info`` adds to or replaces the record's fields."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(folder / "reference.wav"), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(samples.tobytes())
    record = {"name": folder.name, "transcript": transcript, "made_by": "tests", "source": "tests.contract.voiced_phrases",
              "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    record.update(info)
    (folder / "voice.json").write_text(json.dumps(record))
    return folder
