"""What so-vits-svc's NSF-HiFiGAN enhancer costs, through the supervisor on this machine's CPU, with
real-size random weights (OpenVPI's layer sizes: a 56.8 MB file like theirs), in one run:

    .venv/bin/python -m bench.enhancer_bench [--repeats N]

The same 10 s conversion, warm, without the enhancer (the baseline), with it, and with an adaptive key
of +3 semitones; the runs interleave so that drift of the machine falls on all three alike.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any, Dict, List

from app.settings import PROJECT_ROOT
from bench.conversion_bench import real_models, request, run, supervisor
from runtimes.environments import EnvironmentBuilder, load_spec
from tests.conftest import built_envs_dir

VARIANTS: Dict[str, Dict[str, Any]] = {"without the enhancer (baseline)": {}, "with the enhancer": {"nsf_hifigan_enhance": True},
            "with the enhancer, adaptive key +3": {"nsf_hifigan_enhance": True, "enhancer_adaptive_key": 3}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    spec = load_spec(PROJECT_ROOT / "envs" / "sovits")
    python = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp()), "cpu").ensure(spec)
    models = real_models(spec, python)
    warm = supervisor(spec, python, models, keep_alive_s=-1)
    jobs = {name: request(spec, models, "real-a", 10.0) for name in VARIANTS}
    for name, extra in VARIANTS.items():
        jobs[name].options.update(extra)
        run(warm, jobs[name])  # loads the enhancer and warms each path once
    times: Dict[str, List[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name in VARIANTS:
            times[name].append(run(warm, jobs[name]).timings_s["total_s"])
    peak_mb = warm.status()[0]["measured_peak_mb"] or 0
    warm.shutdown()
    baseline = statistics.median(times["without the enhancer (baseline)"])
    print("so-vits-svc 4.1, 10 s input, warm worker, median of %d (peak RSS %.0f MB; input %d Hz)" % (
        args.repeats, peak_mb, jobs[next(iter(VARIANTS))].audio_sample_rate or 0))
    print("| conversion | RTF | vs baseline |")
    print("|---|---|---|")
    for name in VARIANTS:
        median = statistics.median(times[name])
        print("| %s | %.2f | %.2fx |" % (name, median / 10.0, median / baseline))


if __name__ == "__main__":
    main()
