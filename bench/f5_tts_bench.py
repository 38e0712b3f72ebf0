"""F5-TTS on this machine's CPU, in one run:

    .venv/bin/python -m bench.f5_tts_bench [--repeats N] [--sizes tiny,real] [--nfe-step N]

For each size of random weights (``tiny``: the tests' DiT of dim 64, depth 2 and one-layer Vocos; ``real``: upstream's v1 Base
sizes, a 336 M DiT and charactr's Vocos): the worker's start + import and first load; the real-time factor (seconds of
work per second of speech) of a saved voice speaking a text through the supervisor (as the API asks: the whole take) and
of the f5-tts package's own ``preprocess_ref_audio_text`` + ``infer_process`` on the same reference, text, options and
seed in a warm process of the same env (bench/f5_tts_equivalence.py's ``Upstream``), interleaved (one after the other,
so a busy spell on this shared machine slows both) with the ratio of each pair; and a voice's first use (its
conditioning computed: upstream's reference processing, and with no transcript the speech recognizer, here the tests'
tiny Whisper) against its reuse (kept by the recording's hash; tiny size only: the conditioning does not depend on the
DiT). Results are added to bench/results/f5_tts_bench-cpu.txt.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List

from app.settings import PROJECT_ROOT
from bench.f5_tts_equivalence import Upstream, setting_up, upstream_options
from runtimes.supervisor import JobRequest
from tests.contract import voiced_phrases
from tests.f5_tts_fixtures import VOICE_RATE, VOICE_TRANSCRIPT
from tests.voice_files import write_voice

RESULT = PROJECT_ROOT / "bench" / "results" / "f5_tts_bench-cpu.txt"
SENTENCES = ["The quick brown fox jumps over the lazy dog.", "A voice workstation speaks typed text aloud.",
             "Every sentence becomes one piece of the answer.", "The reference recording sets the voice to speak like.",
             "Random weights make noise, but they take the real time.", "Ten sentences make a short paragraph."]
TEXTS = {"2 sentences": " ".join(SENTENCES[:2]), "6 sentences": " ".join(SENTENCES)}


def bench(size: str, repeats: int, nfe: int) -> List[str]:
    python, data, voice, supervisor, manifest = setting_up(size == "real")
    options = manifest.resolve_options({"nfe_step": nfe, "seed": 1})
    texts = TEXTS if size == "tiny" else {"1 sentence": SENTENCES[0]}  # real size: ~40 s a call at 8 steps on two cores
    lines = []

    def job(text: str, folder: Path, **changes: Any) -> JobRequest:
        return JobRequest(architecture="f5_tts", character=folder.name, character_path=str(folder), text=text,
                          options=dict(options, **changes))

    upstream = None
    try:
        first = supervisor.generate(job(SENTENCES[0], voice))
        t = first.timings_s
        start_s, load_s = t.get("spawn_s", 0) + t.get("prepare_s", 0), t.get("load_s", 0)
        upstream = Upstream(python, data / "assets")
        rows = []
        for name, text in texts.items():
            if size == "tiny":  # warm (upstream's own cache too); at real size the worker's first take was this text already
                upstream.infer(voice / "reference.wav", VOICE_TRANSCRIPT, text, 1, upstream_options(options))
                supervisor.generate(job(text, voice))
            ours: List[float] = []
            theirs: List[float] = []
            speech_s = 0.0
            for _ in range(repeats):
                started = time.perf_counter()
                result = supervisor.generate(job(text, voice))
                speech_s = result.audio.size / result.sample_rate
                ours.append((time.perf_counter() - started) / speech_s)
                _, answer = upstream.infer(voice / "reference.wav", VOICE_TRANSCRIPT, text, 1, upstream_options(options))
                theirs.append(answer["work_s"] / answer["audio_s"])
            rows.append("| %s | %.1f s | %d | %.3f | %.3f | %+.0f%% |" % (
                name, speech_s, result.details.get("chunks", 0), statistics.median(ours), statistics.median(theirs),
                100 * (statistics.median(a / b for a, b in zip(ours, theirs, strict=True)) - 1)))
            print(rows[-1], flush=True)
        reuse: Dict[str, Dict[str, List[float]]] = {"typed transcript": {"first": [], "again": []},
                                                    "no transcript (tiny Whisper)": {"first": [], "again": []}}
        conditioning_s: Dict[str, Dict[str, List[float]]] = {kind: {"first": [], "again": []} for kind in reuse}
        for round_ in range(repeats if size == "tiny" else 0):  # the conditioning does not depend on the DiT's size
            for kind, timings in reuse.items():
                transcript = VOICE_TRANSCRIPT if kind.startswith("typed") else ""
                folder = write_voice(data / "characters" / ("fresh-%s-%d" % (kind[:5], round_)),
                                     voiced_phrases(VOICE_RATE, 4.0) * (0.5 + 0.05 * round_), VOICE_RATE, transcript)
                for when in ("first", "again"):
                    started = time.perf_counter()
                    result = supervisor.generate(job(SENTENCES[0], folder))
                    timings[when].append(time.perf_counter() - started)
                    conditioning_s[kind][when].append(float(result.details["conditioning_s"]))
                    assert result.details["conditioning"] == ("computed" if when == "first" else "reused"), result.details
                supervisor.unload("f5_tts", folder.name, str(folder))
        reuse_rows = ["| %s | %.3f s | %.3f s | %.1f ms | %.1f ms |" % (
            kind, statistics.median(t["first"]), statistics.median(t["again"]), 1000 * statistics.median(conditioning_s[kind]["first"]),
            1000 * statistics.median(conditioning_s[kind]["again"])) for kind, t in reuse.items() if t["first"]]
        peak = supervisor.status()[0]["measured_peak_mb"]
    finally:
        if upstream is not None:
            upstream.close()
        supervisor.shutdown()
    load = " ".join("%.1f" % v for v in os.getloadavg())
    what = "tiny random DiT (dim 64, depth 2) + Vocos (dim 32, 1 layer)" if size == "tiny" else \
        "real-size random DiT (v1 Base: dim 1024, depth 22, 336 M) + Vocos (charactr's size)"
    lines.append("F5-TTS (f5-tts 1.1.22, %s), CPU, %s; nfe_step %d, a 4 s saved voice; %d repeats, medians; load average %s"
                 % (what, time.strftime("%Y-%m-%d"), nfe, repeats, load))
    lines.append("worker start + import + model and vocoder load (load_shared): %.1f s; a saved voice's load: %.2f s; peak RSS %s MB"
                 % (start_s, load_s, peak))
    lines.append("| text | speech | chunks | RTF through the worker | RTF upstream infer_process (same call) "
                 "| worker over upstream (paired) |")
    lines.append("|---|---|---|---|---|---|")
    lines += rows
    if reuse_rows:
        lines.append("| voice (one sentence) | job, first use | job, used again | conditioning computed (first) | conditioning reused |")
        lines.append("|---|---|---|---|---|")
    lines += reuse_rows if size == "tiny" else []
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="tiny,real")
    parser.add_argument("--nfe-step", type=int, default=0, help="flow steps (default: 32 tiny, 8 real size)")
    args = parser.parse_args()
    for size in args.sizes.split(","):
        lines = bench(size, args.repeats, args.nfe_step or (32 if size == "tiny" else 8))
        text = "\n".join(lines) + "\n"
        print(text, flush=True)
        previous = RESULT.read_text() if RESULT.exists() else ""
        RESULT.write_text(previous + ("\n" if previous else "") + text)


if __name__ == "__main__":
    main()
