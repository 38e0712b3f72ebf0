"""The conditioning cache (by a recording's content hash) and the saved-voice folder format workers read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtimes.conditioning import ConditioningCache
from runtimes.errors import BadRequestError
from runtimes.voice_folder import content_digest, read_voice
from tests.voice_files import write_voice


def test_a_conditioning_is_computed_once_per_recording_and_kept_on_disk(tmp_path: Path) -> None:
    calls = []

    def compute() -> dict:
        calls.append(1)
        return {"embedding": np.arange(4, dtype=np.float32)}

    cache = ConditioningCache("f5_tts", folder=str(tmp_path))
    key = content_digest(np.ones(100, np.float32), 16000, "hello")
    first: dict = {}
    second: dict = {}
    cache.get(key, compute, first)
    again = cache.get(key, compute, second)
    assert (first["conditioning"], second["conditioning"], len(calls)) == ("computed", "reused", 1)
    np.testing.assert_array_equal(again["embedding"], np.arange(4))
    restarted = ConditioningCache("f5_tts", folder=str(tmp_path))  # a new worker process: read from disk
    third: dict = {}
    restarted.get(key, compute, third)
    assert (third["conditioning"], third["conditioning_from"], len(calls)) == ("reused", "disk", 1)
    other = content_digest(np.ones(100, np.float32), 16000, "hello there")  # another transcript: another conditioning
    assert other != key
    cache.get(other, compute, {})
    assert len(calls) == 2


def test_a_torn_cache_file_is_computed_again(tmp_path: Path) -> None:
    cache = ConditioningCache("xtts", folder=str(tmp_path))
    key = "ab" * 32
    (tmp_path / (key + ".npz")).write_bytes(b"not a zip")
    details: dict = {}
    value = cache.get(key, lambda: {"x": np.zeros(2)}, details)
    assert details["conditioning"] == "computed" and value["x"].shape == (2,)
    with pytest.raises(ValueError, match="hex digest"):
        cache.get("../../etc/passwd", lambda: {}, {})


def test_a_voice_folder_reads_back_its_recording_and_transcript(tmp_path: Path) -> None:
    audio = np.sin(np.linspace(0, 100, 24000)).astype(np.float32) * 0.5
    write_voice(tmp_path / "ann", audio, 24000, " Hello there. ", name="Ann")
    voice = read_voice(str(tmp_path / "ann"))
    assert voice.sample_rate == 24000 and voice.transcript == "Hello there." and voice.info["name"] == "Ann"
    assert np.max(np.abs(voice.audio - audio)) < 1e-4
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadRequestError, match="not a saved voice"):
        read_voice(str(tmp_path / "empty"))
