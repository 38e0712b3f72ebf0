"""Post-processing on a stream (pipeline/streaming.py) against the batch chain on the same take."""

from __future__ import annotations

from typing import List

import numpy as np
import pytest

from pipeline.processing import PostOptions
from pipeline.stages import integrated_lufs
from pipeline.streaming import StreamingPost

RATE = 22050


def sentence(seconds: float, level: float, seed: int) -> np.ndarray:
    """A voiced phrase between pauses, as a TTS sentence comes: silence, speech-like tone bursts, silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    voice = level * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 3 * t) > 0) + 0.0005 * rng.standard_normal(t.size)
    return np.concatenate([np.zeros(2000), voice, np.zeros(3000)]).astype(np.float32)


def streamed(post: PostOptions, pieces: List[np.ndarray]) -> List[np.ndarray]:
    processing = StreamingPost(post, RATE)
    return [processing.push(piece) for piece in pieces] + [processing.finish()]


PIECES = [sentence(1.5 + 0.3 * i, 0.1, i) for i in range(5)]


def test_the_first_piece_goes_out_when_it_comes_and_the_take_matches_the_batch_chain() -> None:
    post = PostOptions()  # trim silence + loudness to -16 LUFS: the defaults
    outs = streamed(post, PIECES)
    assert all(out.size for out in outs[:5]), "every sentence goes out as it comes: %s" % [o.size for o in outs]
    take = np.concatenate(outs)
    batch, _ = post.chain().apply(np.concatenate(PIECES), RATE)
    assert take.size == batch.size  # the same silence trimmed at both ends, the pauses between sentences kept
    assert abs(integrated_lufs(take, RATE) - post.loudness_lufs) < 1.0  # type: ignore[operator]
    assert float(np.max(np.abs(take))) <= 10 ** (post.true_peak_db / 20) + 1e-6


def test_a_louder_later_sentence_meets_the_ceiling_not_clipping() -> None:
    pieces = [sentence(1.5, 0.05, 1), sentence(1.5, 0.5, 2)]  # the second 20 dB louder than the one the gain was set on
    take = np.concatenate(streamed(PostOptions(), pieces))
    ceiling = 10 ** (PostOptions().true_peak_db / 20)
    assert float(np.max(np.abs(take))) <= ceiling + 1e-6
    assert np.mean(np.abs(take) > 0.99 * ceiling) < 0.01, "a soft knee, not a wall of clipped samples"


def test_resampling_and_fades_stream_with_the_batch_lengths() -> None:
    post = PostOptions(sample_rate_hz=24000, fade_in_ms=20, fade_out_ms=50)
    processing = StreamingPost(post, RATE)
    outs = [processing.push(piece) for piece in PIECES] + [processing.finish()]
    assert processing.out_rate == 24000 and processing.plan.incremental == ("trim silence", "loudness", "resample", "fade")
    take = np.concatenate(outs)
    batch, rate = post.chain().apply(np.concatenate(PIECES), RATE)
    assert rate == 24000 and abs(take.size - batch.size) <= 2
    assert abs(float(take[0])) < 1e-3 and abs(float(take[-1])) < 1e-3  # faded in and out


@pytest.mark.parametrize("post", [PostOptions(speed=1.25), PostOptions(noise_reduction=0.5), PostOptions(pitch_semitones=2)])
def test_stages_that_need_the_whole_take_wait_for_it_and_say_so(post: PostOptions) -> None:
    processing = StreamingPost(post, RATE)
    outs = [processing.push(piece) for piece in PIECES]
    assert processing.plan.whole_take and not processing.plan.incremental and not any(out.size for out in outs)
    take = processing.finish()
    batch, _ = post.chain().apply(np.concatenate(PIECES), RATE)
    np.testing.assert_array_equal(take, batch)  # exactly the batch chain, run once the take is whole


def test_a_silent_take_is_kept_short_not_amplified() -> None:
    outs = streamed(PostOptions(), [np.zeros(RATE, dtype=np.float32)] * 3)
    assert sum(out.size for out in outs) == 0  # all silence: nothing to say (the batch chain keeps silence whole)


def test_a_take_shorter_than_a_loudness_block_is_left_at_its_level() -> None:
    """A one-word answer ("Hi.") ends before the look-ahead fills: measured as the batch stage would, not an error."""
    short = sentence(0.2, 0.1, 7)
    take = np.concatenate(streamed(PostOptions(), [short]))
    batch, _ = PostOptions().chain().apply(short, RATE)
    assert take.size == batch.size and abs(float(np.max(np.abs(take))) - float(np.max(np.abs(batch)))) < 1e-3
