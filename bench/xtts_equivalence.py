"""Our XTTS worker against the package's own calls with the same weights, recording, text and seed:

    .venv/bin/python -m bench.xtts_equivalence

The tiny random model of the tests (tests/builders/build_xtts_character.py) as the shared asset; a saved voice spoken
through the supervisor and worker, and the same recording through ``Xtts.get_speaker_embedding`` +
``Xtts.get_gpt_cond_latents`` and ``Xtts.inference`` (per sentence, as upstream's API splits a text, or the whole text) in
a process of the same env (bench/xtts_bench.py's ``Direct``). Prints, per case, both lengths and the largest sample
difference; results appended to bench/results/xtts_equivalence-cpu.txt.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from app.settings import PROJECT_ROOT
from bench.xtts_bench import Direct, job, setup
from runtimes.supervisor import Supervisor

RESULTS = PROJECT_ROOT / "bench" / "results" / "xtts_equivalence-cpu.txt"
CASES: List[Dict[str, Any]] = [
    {"name": "one sentence", "text": "Hello there, how are you today?", "seed": 1, "split": True, "options": {}},
    {"name": "three sentences, one by one", "text": "The sun is out. We walk home. It is late.", "seed": 2, "split": True, "options": {}},
    {"name": "three sentences in one call", "text": "The sun is out. We walk home. It is late.", "seed": 3, "split": False,
     "options": {"split_sentences": False}},
    {"name": "6 s of the recording for the GPT, 10 s for the timbre", "text": "Hello there.", "seed": 4, "split": True,
     "gpt_cond_len": 6, "max_ref_len": 10, "options": {"gpt_cond_len": 6, "max_ref_len": 10}},
]


def main() -> None:
    lines = ["XTTS v2 worker vs coqui-tts 0.28.0's own calls (tiny random model, same weights, recording, text and seed), CPU, %s"
             % time.strftime("%Y-%m-%d"), "| case | our samples | upstream's samples | max abs difference |", "|---|---|---|---|"]
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="xtts-equivalence-") as folder:
        parts = setup(Path(folder))
        supervisor: Supervisor = parts["supervisor"]
        voice: Path = parts["voice"]
        direct = Direct(parts["python"], parts["models"], voice / "reference.wav")
        try:
            for case in CASES:
                ours = supervisor.generate(job(voice, case["text"], case["seed"], **case["options"])).audio
                theirs = direct.speak(case["text"], case["seed"], split=case["split"], gpt_cond_len=case.get("gpt_cond_len", 30),
                                      max_ref_len=case.get("max_ref_len", 30))["audio"]
                difference = float(np.abs(ours - theirs).max()) if ours.size == theirs.size else float("inf")
                worst = max(worst, difference)
                lines.append("| %s | %d | %d | %.3g |" % (case["name"], ours.size, theirs.size, difference))
                print(lines[-1], flush=True)
        finally:
            direct.close()
            supervisor.shutdown()
    lines.append("largest difference over all cases: %.3g (float32 samples in [-1, 1])" % worst)
    text = "\n".join(lines)
    print(text)
    previous = RESULTS.read_text() if RESULTS.exists() else ""
    RESULTS.write_text(text + "\n\n" + previous if previous else text + "\n")


if __name__ == "__main__":
    main()
