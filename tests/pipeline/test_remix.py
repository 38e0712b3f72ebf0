"""A cover's remix: a gain-weighted sum of its parts, one matching gain, the song's length and loudness."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import StageConfigError
from pipeline.remix import RemixOptions, loudness, mid_side, remix

RATE = 44100


def tone(hz: float, seconds: float, level: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_the_mix_is_the_gain_weighted_sum_of_its_parts_at_the_songs_loudness() -> None:
    accompaniment = np.stack([tone(110, 4, 0.3), tone(165, 4, 0.3)])
    converted = tone(440, 3.5, 0.2)  # a converter's take comes back a little short: padded to the song
    side = np.stack([tone(660, 4, 0.05), -tone(660, 4, 0.05)])
    song = accompaniment + np.stack([tone(440, 4, 0.2)] * 2)
    song_lufs = loudness(song, RATE)
    options = RemixOptions(vocals_gain_db=3.0, accompaniment_gain_db=-6.0, backing_gain_db=-3.0, backing_vocals="keep")
    mix, notes = remix(converted, side, accompaniment, RATE, song_lufs, options)
    assert mix.shape == accompaniment.shape
    padded = np.concatenate([converted, np.zeros(4 * RATE - converted.size, np.float32)])
    parts = 10 ** (3 / 20) * np.stack([padded, padded]) + 10 ** (-6 / 20) * accompaniment + 10 ** (-3 / 20) * side
    gain = 10 ** (notes["match_gain_db"] / 20)
    np.testing.assert_allclose(mix, gain * parts, atol=1e-5)
    assert abs(loudness(mix, RATE) - song_lufs) < 0.1 and "held_by" not in notes
    dropped, _ = remix(converted, side, accompaniment, RATE, song_lufs, RemixOptions(backing_vocals="convert", match_loudness=False))
    np.testing.assert_allclose(dropped, np.stack([padded, padded]) + accompaniment, atol=1e-6)


def test_the_matching_gain_stops_at_the_peak_ceiling() -> None:
    loud_song_lufs = -3.0  # louder than a quiet mix can be made without clipping
    mix, notes = remix(tone(440, 2, 0.1), np.zeros((2, 2 * RATE), np.float32), np.stack([tone(110, 2, 0.1)] * 2), RATE,
                       loud_song_lufs, RemixOptions())
    assert np.max(np.abs(mix)) <= 10 ** (-1 / 20) + 1e-6 and "peak ceiling" in notes["held_by"]


def test_reverb_adds_a_tail_and_mid_side_splits_the_stem() -> None:
    dry, _ = remix(tone(440, 1, 0.2), np.zeros((2, RATE * 2), np.float32), np.zeros((2, RATE * 2), np.float32), RATE,
                   float("-inf"), RemixOptions(match_loudness=False))
    wet, _ = remix(tone(440, 1, 0.2), np.zeros((2, RATE * 2), np.float32), np.zeros((2, RATE * 2), np.float32), RATE,
                   float("-inf"), RemixOptions(match_loudness=False, reverb_wet=0.5))
    assert np.abs(dry[:, int(1.2 * RATE):]).max() == 0 and np.abs(wet[:, int(1.2 * RATE):]).max() > 1e-3
    left, right = tone(440, 1, 0.3), tone(440, 1, 0.1)
    mid, side = mid_side(np.stack([left, right]))
    np.testing.assert_allclose(mid, (left + right) / 2, atol=1e-6)
    np.testing.assert_allclose(side[0], (left - right) / 2, atol=1e-6)


@pytest.mark.parametrize("settings, problem", [
    ({"vocals_gain_db": 90}, "vocals_gain_db must be a number of dB"),
    ({"backing_vocals": "sideways"}, "backing_vocals must be one of convert, keep"),
    ({"reverb_wet": 2}, "reverb_wet must be from 0 to 1"),
    ({"echo": 1}, "unknown cover setting"),
])
def test_bad_cover_settings_are_named(settings: dict, problem: str) -> None:
    with pytest.raises(StageConfigError, match=problem):
        RemixOptions.from_dict(settings)
