"""Pipeline v1: decoding, encoding and the default stages on small synthetic signals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from pipeline.audio_io import OUTPUT_FORMATS, decode, encode
from pipeline.errors import AudioDecodeError, AudioEncodeError, StageConfigError
from pipeline.stages import Chain, MixToMono, PeakNormalize, Resample, TrimSilence

RATE = 22050


def tone(seconds: float, freq_hz: float = 440.0, amplitude: float = 0.5, rate: int = RATE) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq_hz * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


@pytest.mark.parametrize("output_format", list(OUTPUT_FORMATS))
def test_every_output_format_reads_back(tmp_path: Path, output_format: str) -> None:
    written = encode(tone(1.0), RATE, tmp_path / "out.wav", output_format)
    assert written.suffix == OUTPUT_FORMATS[output_format][2]
    decoded = decode(written)
    rate = 48000 if output_format == "opus" else RATE  # Opus only takes 48 kHz and a few lower rates
    assert decoded.sample_rate == rate and decoded.audio.shape[0] == 1
    assert abs(decoded.audio.shape[1] - rate) < 0.1 * rate  # lossy codecs pad a little
    spectrum = np.abs(np.fft.rfft(decoded.audio[0, : rate // 2]))
    assert abs(np.argmax(spectrum) * 2 - 440) <= 4  # the tone's pitch survives


def test_decode_stereo_keeps_channels_first(tmp_path: Path) -> None:
    path = tmp_path / "stereo.flac"
    soundfile.write(str(path), np.stack([tone(0.5), -tone(0.5)], axis=1), RATE)
    decoded = decode(path)
    assert decoded.audio.shape == (2, RATE // 2) and decoded.audio.dtype == np.float32
    mono, _ = MixToMono().apply(decoded.audio, RATE)
    assert mono.shape == (RATE // 2,) and np.max(np.abs(mono)) < 1e-3


def test_decode_errors_name_the_file_and_problem(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"\x00\x01not audio at all" * 100)
    with pytest.raises(AudioDecodeError, match="garbage.mp3: not a readable audio file"):
        decode(garbage)
    with pytest.raises(AudioDecodeError, match="missing.wav: file not found"):
        decode(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    soundfile.write(str(empty), np.zeros(0, dtype=np.float32), RATE)
    with pytest.raises(AudioDecodeError, match="empty.wav: the file holds no audio samples"):
        decode(empty)
    with pytest.raises(AudioEncodeError, match="unknown output format 'aiff'"):
        encode(tone(0.1), RATE, tmp_path / "x.wav", "aiff")


def test_resample_changes_rate_and_keeps_pitch() -> None:
    audio, rate = Resample(target_hz=16000).apply(tone(1.0), RATE)
    assert rate == 16000 and audio.size == 16000
    assert abs(np.argmax(np.abs(np.fft.rfft(audio))) - 440) <= 1


def test_trim_silence_cuts_to_the_threshold() -> None:
    padded = np.concatenate([np.zeros(RATE), tone(0.5), np.zeros(RATE)]).astype(np.float32)
    trimmed, _ = TrimSilence(threshold_db=-40.0, keep_ms=0.0).apply(padded, RATE)
    assert abs(trimmed.size - RATE // 2) <= 2  # sample-accurate edges
    kept, _ = TrimSilence(threshold_db=-40.0, keep_ms=100.0).apply(padded, RATE)
    assert abs(kept.size - (RATE // 2 + 2 * RATE // 10)) <= 2
    quiet = tone(0.5, amplitude=0.001)  # -60 dBFS: below the threshold, all "silence": kept as is
    assert TrimSilence(threshold_db=-40.0).apply(quiet, RATE)[0].size == quiet.size


def test_peak_normalize_hits_the_target_and_leaves_silence_alone() -> None:
    out, _ = PeakNormalize(peak_db=-3.0).apply(tone(0.2, amplitude=0.1), RATE)
    assert abs(20 * np.log10(np.max(np.abs(out))) + 3.0) < 0.01
    silence = np.zeros(100, dtype=np.float32)
    np.testing.assert_array_equal(PeakNormalize().apply(silence, RATE)[0], silence)


def test_stage_options_are_validated() -> None:
    with pytest.raises(StageConfigError, match="peak_db must be between -60 and 0, got 3"):
        PeakNormalize(peak_db=3.0)
    with pytest.raises(StageConfigError, match="threshold_db must be a number"):
        TrimSilence(threshold_db="loud")  # type: ignore[arg-type]
    with pytest.raises(StageConfigError, match="target_hz must be between"):
        Resample(target_hz=10)


def test_chain_round_trips_through_json() -> None:
    chain = Chain([MixToMono(), Resample(target_hz=16000), Chain([TrimSilence(), PeakNormalize()])])
    again = Chain.from_json(chain.to_json())
    assert again.to_dict() == chain.to_dict()
    audio = np.stack([tone(0.3), tone(0.3)])
    np.testing.assert_allclose(again.apply(audio, RATE)[0], chain.apply(audio, RATE)[0])
    with pytest.raises(StageConfigError, match="unknown stage 'Reverb'"):
        Chain.from_json('{"stage": "Reverb"}')
    with pytest.raises(StageConfigError, match="not valid JSON"):
        Chain.from_json("{")
