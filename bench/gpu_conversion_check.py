"""One real conversion per architecture on the GPU (so-vits-svc, RVC), through the supervisor:

    PYTHONPATH=. python3 -m bench.gpu_conversion_check --python sovits=ENV/bin/python --python rvc=ENV/bin/python

Each ``--python`` is an environment built from ``envs/<arch>`` with its CUDA layer (``python3
launcher.py`` on the GPU machine builds them under ``data/envs``; the lent check machine has no
package registry, so they are built beforehand where one is). Real-size random weights (the
builders' ``--real-size``). Prints per architecture: the device the supervisor chose, half
precision or not, worker start + first load, warm real-time factor of a 10 s input, peak GPU memory
of the worker (NVML per process), a character switch inside the warm worker, and for so-vits-svc the
warm real-time factor with the NSF-HiFiGAN enhancer. On a machine
without a GPU it runs on the CPU and says so. Writes ``$OUT/gpu_conversion_check.txt`` when ``OUT``
is set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Dict, List

from app.settings import PROJECT_ROOT
from bench.conversion_bench import real_models, request, run
from runtimes.environments import load_spec
from runtimes.registry import read_manifest
from runtimes.supervisor import Supervisor, SupervisorSettings


def check(name: str, python: Path, lines: List[str]) -> None:
    spec = load_spec(PROJECT_ROOT / "envs" / name)
    models = real_models(spec, python)
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=Path(tempfile.mkdtemp()), assets_dir=models / "assets",
                                  keep_alive_s=-1)
    supervisor = Supervisor(settings, {name: spec}, lambda s, p: python)  # memory: NVML where a driver answers
    supervisor.manifest = read_manifest(spec)  # type: ignore[attr-defined]
    try:
        first = run(supervisor, request(spec, models, "real-a", 10.0))
        warm = [run(supervisor, request(spec, models, "real-a", 10.0)).timings_s["total_s"] for _ in range(3)]
        switch = run(supervisor, request(spec, models, "real-b", 3.0)).timings_s.get("load_s", 0.0)
        enhanced = ""
        if name == "sovits":  # the NSF-HiFiGAN enhancer runs in float32 on the same device
            job = request(spec, models, "real-a", 10.0)
            job.options["nsf_hifigan_enhance"] = True
            run(supervisor, job)
            enhanced = ", with the enhancer warm RTF 10 s %.3f" % (run(supervisor, job).timings_s["total_s"] / 10.0)
        [row] = supervisor.status()
        details = {c["id"]: c["details"] for c in row["loaded"]}["real-a"]
        t = first.timings_s
        lines.append("%s: device %s, half precision %s, start + import %.1f s, first load %.2f s, warm RTF 10 s %.3f, "
                     "peak %s MB, character switch (load) %.2f s, output %d Hz%s" % (
                         name, row["device"], details.get("half", "?"), t.get("spawn_s", 0) + t.get("prepare_s", 0),
                         t.get("load_s", 0), statistics.median(warm) / 10.0, row["measured_peak_mb"], switch, first.sample_rate,
                         enhanced))
    except Exception as exc:  # one architecture failing still reports the other
        lines.append("%s: FAILED %s: %s" % (name, type(exc).__name__, exc))
    finally:
        supervisor.shutdown()
        print(lines[-1], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", action="append", default=[], help="ARCH=PATH of the env's python (repeatable)")
    args = parser.parse_args()
    pythons: Dict[str, Path] = dict((arch, Path(path)) for arch, path in (item.split("=", 1) for item in args.python))
    lines: List[str] = []
    for name, python in pythons.items():
        check(name, python, lines)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_conversion_check.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
