"""Song covers through the app, CPU, real-size random weights (HTDemucs at the class's default sizes, 26.9 M parameters;
so-vits-svc 4.x at its real config's sizes), one run:

    .venv/bin/python -m bench.cover_bench [--song-s 60] [--songs 2]

For each song (mixed voiced phrases over an instrumental track): a cover in one character (the song is separated, its
vocals converted, remixed), then a cover of the same song in another character (the stems are reused: conversion and
remix only). Both workers are warmed first on a short other song, so neither cover pays a worker start. Prints each
cover's seconds and stages, and the ratio first / second (target: >= 3x). Results: bench/results/cover_bench-cpu.txt.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import soundfile
from gradio_client import Client, handle_file

from bench.conversion_bench import real_models
from runtimes.environments import EnvironmentBuilder, load_spec
from tests.conftest import PROJECT_ROOT, built_envs_dir, start_app
from tests.demucs_fixtures import mixed_song

RATE = 44100


def full_demucs(python: Path) -> Path:
    import subprocess

    folder = built_envs_dir().parent / "bench-models" / "demucs-full"
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([str(python), str(PROJECT_ROOT / "tests" / "builders" / "build_demucs_model.py"), str(folder), "--full"],
                       check=True, capture_output=True)
        (folder / ".complete").write_text("")
    return folder


def song(path: Path, seconds: float, seed: int) -> str:
    audio = mixed_song(seconds, RATE)
    audio = np.roll(audio, seed * 4410, axis=1)  # another song: the same parts, elsewhere (another hash)
    soundfile.write(str(path), audio.T, RATE)
    return str(path)


def cover(client: Client, path: str, character: str) -> Dict[str, Any]:
    started = time.perf_counter()
    _, _, info = client.predict(handle_file(path), "sovits", character, {"f0_method": "dio"}, {}, "wav", False, api_name="/cover")
    return {"s": time.perf_counter() - started, "reused": info["cover"]["stems_reused"], "timings": info["timings_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--song-s", type=float, default=60.0)
    parser.add_argument("--songs", type=int, default=2)
    args = parser.parse_args()
    builder = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp()), "cpu")
    sovits_spec, demucs_spec = load_spec(PROJECT_ROOT / "envs" / "sovits"), load_spec(PROJECT_ROOT / "envs" / "demucs")
    sovits = real_models(sovits_spec, builder.ensure(sovits_spec))
    demucs = full_demucs(builder.ensure(demucs_spec))
    scratch = Path(tempfile.mkdtemp())
    data = scratch / "data"
    shutil.copytree(sovits / "assets", data / "assets", symlinks=True)
    shutil.copytree(sovits / "characters", data / "characters" / "sovits", symlinks=True)
    shutil.copytree(demucs / "assets" / "demucs_htdemucs", data / "assets" / "demucs_htdemucs")
    app = start_app(data, extra_env={"VOICEGEN_PREWARM": ""})
    try:
        client = Client(app.url, verbose=False)
        warm = cover(client, song(scratch / "warm.wav", 5.0, 99), "real-b")  # both workers started, real-b loaded
        cover(client, song(scratch / "warm.wav", 5.0, 98), "real-a")
        rows: List[Dict[str, Any]] = []
        for index in range(args.songs):
            path = song(scratch / ("song%d.wav" % index), args.song_s, index)
            first, second = ("real-a", "real-b") if index % 2 == 0 else ("real-b", "real-a")
            rows.append({"song": index, "first": cover(client, path, first), "second": cover(client, path, second)})
    finally:
        app.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print("cover bench: %.0f s songs at %d Hz, so-vits-svc real-size random + HTDemucs 26.9 M random, CPU" % (args.song_s, RATE))
    print("warm-up cover (5 s): %.1f s" % warm["s"])
    for row in rows:
        for which in ("first", "second"):
            made = row[which]
            stages = ", ".join("%s %.1f" % (k, v) for k, v in sorted(made["timings"].items()) if k.endswith("_s") and v >= 0.05)
            print("song %d %-6s: %6.1f s (stems reused: %s; %s)" % (row["song"], which, made["s"], made["reused"], stages))
        print("song %d first / second: %.2fx" % (row["song"], row["first"]["s"] / row["second"]["s"]))
    ratios = [row["first"]["s"] / row["second"]["s"] for row in rows]
    print("median first / second: %.2fx (target >= 3x)" % statistics.median(ratios))


if __name__ == "__main__":
    main()
