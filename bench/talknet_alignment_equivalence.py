"""Controllable TalkNet's reference alignment: upstream's CTC duration extractor (SortAnon/ControllableTalkNet's
core/nemo_functions.py: forward_extractor + backward_extractor, NVIDIA's) beside ours (controllable_talknet/
aligner.py: ctc_durations), on the same log-probabilities and tokens. Numpy only; run with any Python that has it,
given the checkout (nothing of it is in this project):

    .venv/bin/python bench/talknet_alignment_equivalence.py /path/to/ControllableTalkNet

Cases: random log-probabilities (softmax of Gaussian logits) over 59 classes (TalkNet's phoneme vocabulary and its
blank), texts of 1-40 tokens with repeats, 1-4 frames per token and more; and peaked ones (each token's frames made
probable along a random true segmentation), where the alignment should also recover that segmentation. Writes
bench/results/talknet_alignment_equivalence.txt.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any, List

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from runtimes.adapters.controllable_talknet.aligner import ctc_durations, interleaved  # noqa: E402  (after the path)

RESULT = ROOT / "bench" / "results" / "talknet_alignment_equivalence.txt"
CLASSES, BLANK = 59, 58


def upstream_functions(talknet: Path) -> Any:
    spec = importlib.util.spec_from_file_location("upstream_nemo_functions", talknet / "core" / "nemo_functions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)), dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("talknet", type=Path, help="a checkout of SortAnon/ControllableTalkNet")
    parser.add_argument("--cases", type=int, default=300)
    args = parser.parse_args()
    upstream = upstream_functions(args.talknet)
    rng = np.random.default_rng(7)
    same = recovered = peaked_cases = 0
    ours_s = theirs_s = 0.0
    lines: List[str] = []
    for case in range(args.cases):
        n = int(rng.integers(1, 41))
        tokens = [int(t) for t in rng.integers(0, 8 if case % 3 == 0 else BLANK, n)]  # few classes: many repeats
        states = interleaved(tokens, BLANK)
        minimum = n + sum(1 for a, b in itertools.pairwise(tokens) if a == b)
        peaked = case % 2 == 1
        if peaked:  # a true segmentation: every token 1-6 frames, blanks 0-4 (1+ between repeats)
            truth = np.array([rng.integers(1, 7) if i % 2 else rng.integers(0, 5) for i in range(len(states))])
            for i in range(2, len(states) - 1, 2):
                if states[i - 1] == states[i + 1]:
                    truth[i] = max(truth[i], 1)
            frames = int(truth.sum())
            logits = rng.standard_normal((frames, CLASSES))
            edges = np.concatenate([[0], np.cumsum(truth)])
            for i, state in enumerate(states):
                logits[edges[i]: edges[i + 1], state] += 6.0
        else:
            frames = int(minimum + rng.integers(0, 4 * n + 10))
            logits = rng.standard_normal((frames, CLASSES)) * 2.0
        log_probs = log_softmax(logits)
        started = time.perf_counter()
        f, p = upstream.forward_extractor(states, log_probs, BLANK)
        theirs = upstream.backward_extractor(f, p)
        theirs_s += time.perf_counter() - started
        started = time.perf_counter()
        ours = ctc_durations(log_probs, tokens, BLANK)
        ours_s += time.perf_counter() - started
        same += int(np.array_equal(ours, theirs))
        if not np.array_equal(ours, theirs) and len(lines) < 5:
            lines.append("  differs: case %d, %d tokens, %d frames: upstream %s, ours %s" % (
                case, n, frames, theirs.tolist(), ours.tolist()))
        if peaked:
            peaked_cases += 1
            recovered += int(np.array_equal(ours, truth))
    commit = ((args.talknet / ".commit").read_text().strip() if (args.talknet / ".commit").is_file()
              else os.popen("git -C %s rev-parse HEAD 2>/dev/null" % args.talknet).read().strip() or "(commit unknown)")
    out = ["Controllable TalkNet reference alignment: upstream's forward_extractor + backward_extractor vs ours (aligner.ctc_durations)",
           "upstream: %s at %s; numpy %s; %s" % (args.talknet, commit, np.__version__, time.strftime("%Y-%m-%d")), "",
           "%d cases (1-40 tokens, repeats, %d with a true segmentation made probable): identical durations in %d of %d" % (
               args.cases, peaked_cases, same, args.cases),
           "the true segmentation recovered (ours) in %d of %d peaked cases" % (recovered, peaked_cases),
           "time: upstream %.2f s, ours %.2f s in all" % (theirs_s, ours_s), *lines, "",
           "result: %s" % ("PASS (identical in every case)" if same == args.cases else "FAIL")]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
