"""The Praat voice changer through the real supervisor, in its own real environment."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from runtimes.environments import EnvironmentBuilder, load_spec
from runtimes.errors import BadRequestError, RemoteError
from runtimes.supervisor import JobRequest
from tests.conftest import PROJECT_ROOT, SupervisorFactory
from tests.contract import adapter_contract

RATE = 44100
DEFAULTS = {"formant_shift_ratio": 0.0, "pitch_shift_ratio": 0.0, "pitch_range_factor": 1.0, "duration_factor": 1.0,
            "pitch_floor_hz": 75.0, "pitch_ceiling_hz": 600.0}


def voiced(f0_hz: float, seconds: float = 1.5) -> np.ndarray:
    """A harmonic-rich, vowel-like signal with a clear pitch."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.08 * sum(np.sin(2 * np.pi * f0_hz * k * t) / k for k in range(1, 25))).astype(np.float32)


def f0_of(audio: np.ndarray, rate: int) -> float:
    import librosa

    f0, voiced_flag, _ = librosa.pyin(audio.astype(np.float64), fmin=60, fmax=800, sr=rate, frame_length=2048)
    return float(np.nanmedian(f0[voiced_flag]))


@pytest.fixture
def praat(make_supervisor: SupervisorFactory, builder: EnvironmentBuilder) -> object:
    spec = load_spec(PROJECT_ROOT / "envs" / "praat")
    builder.ensure(spec)
    return make_supervisor({"praat": spec})


def job(character: str, audio: np.ndarray, **options: float) -> JobRequest:
    return JobRequest(architecture="praat", character=character, audio=audio, audio_sample_rate=RATE,
                      options=dict(DEFAULTS, **options))


def test_pitch_moves_by_the_ratio(praat: object) -> None:
    source = voiced(150.0)
    result = praat.generate(job("as-recorded", source, pitch_shift_ratio=2.0))  # type: ignore[attr-defined]
    assert result.sample_rate == RATE
    assert abs(f0_of(result.audio, RATE) - 300.0) < 10.0
    assert abs(result.audio.size - source.size) < 0.02 * RATE


def test_characters_and_duration(praat: object) -> None:
    source = voiced(150.0)
    higher = praat.generate(job("higher", source)).audio  # type: ignore[attr-defined]
    lower = praat.generate(job("lower", source)).audio  # type: ignore[attr-defined]
    assert f0_of(higher, RATE) > 200.0 and f0_of(lower, RATE) < 110.0
    longer = praat.generate(job("as-recorded", source, duration_factor=2.0)).audio  # type: ignore[attr-defined]
    assert abs(longer.size / source.size - 2.0) < 0.05


def test_unvoiced_input_is_a_clear_error(praat: object) -> None:
    silence = np.zeros(RATE, dtype=np.float32)
    with pytest.raises(BadRequestError, match="no voiced speech found"):
        praat.generate(job("as-recorded", silence))  # type: ignore[attr-defined]
    with pytest.raises(RemoteError, match="has the characters higher, lower, as-recorded"):
        praat.generate(replace(job("as-recorded", voiced(150.0)), character="robot"))  # type: ignore[attr-defined]


TestContract = adapter_contract("praat")
