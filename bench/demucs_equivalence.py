"""Demucs: our worker (the supervisor, a real worker, runtimes/adapters/demucs.py) beside demucs's own calls on the same
weights, song, options and seed, in the same run:

    .venv/bin/python -m bench.demucs_equivalence [--seconds 10] [--no-full]

- ``Separator``: ``demucs.api.Separator(model, repo=asset folder).separate_tensor`` (upstream's documented API);
- ``apply_model``: ``demucs.pretrained.get_model(name, repo)`` through ``demucs.apply.apply_model`` on the song
  normalised as upstream's command line does.

Both run in the env by tests/demucs_upstream.py (upstream's code unchanged; torch told to load weights-only). Compared:
the two stems, vocals and accompaniment (upstream's ``--two-stems``: the other sources added), max |difference|
relative to the stems' peak (target < 1e-5: float noise). Models: the tests' tiny random ones
(tests/builders/build_demucs_model.py) and, unless ``--no-full``, an HTDemucs at the class's default sizes (26.9 M
parameters), random weights (segment 7.8 s, as htdemucs). Seconds of separation are printed for each path (ours: the
worker's generate_s, which includes the job's transfer; upstream's: the separation alone). Writes
bench/results/demucs_equivalence-cpu.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from app.settings import PROJECT_ROOT
from runtimes.adapters.demucs import MANIFEST
from runtimes.environments import EnvironmentBuilder, load_spec
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import built_envs_dir
from tests.demucs_fixtures import BUILDER, UPSTREAM, demucs_models_folder, mixed_song

RESULT = PROJECT_ROOT / "bench" / "results" / "demucs_equivalence-cpu.txt"
RATE = 44100
TARGET = 1e-5
CASES: List[Tuple[str, str, Dict[str, Any]]] = [
    ("tiny", "htdemucs", {}),
    ("tiny", "htdemucs", {"shifts": 2, "overlap": 0.5, "segment_s": 1.0, "seed": 7}),
    ("tiny", "htdemucs", {"shifts": 0, "split": True, "overlap": 0.1}),
    ("tiny", "htdemucs_ft", {"shifts": 1, "seed": 3}),
    ("full", "htdemucs", {}),
]


def upstream(python: Path, repo: Path, model: str, song_file: Path, options: Dict[str, Any], mode: str,
             work: Path) -> Tuple[np.ndarray, float]:
    """Upstream's two stems of the song (``mode``: separator or apply_model) and its seconds of separation."""
    resolved = MANIFEST.resolve_options(options)
    request = {"repo": str(repo), "model": model, "song": str(song_file), "rate": RATE, "out": str(work / "stems.npz"), "mode": mode,
               "shifts": resolved["shifts"], "overlap": resolved["overlap"], "split": resolved["split"],
               "segment": resolved["segment_s"] or None, "seed": resolved["seed"]}
    (work / "request.json").write_text(json.dumps(request))
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE")
    subprocess.run([str(python), str(UPSTREAM), str(work / "request.json")], check=True, capture_output=True, timeout=1800, env=env)
    with np.load(work / "stems.npz") as stems:
        sources = {str(s): stems[str(s)] for s in stems["sources"]}
        took_s = float(stems["separate_s"])
    two = np.stack([sources["vocals"], sum(a for s, a in sources.items() if s != "vocals")]).astype(np.float32)
    return two, took_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="the mixed test song's length")
    parser.add_argument("--no-full", action="store_true", help="only the tiny models")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="demucs-equivalence-"))
    builder = EnvironmentBuilder(built_envs_dir(), work / "logs", "cpu")
    spec = load_spec(PROJECT_ROOT / "envs" / "demucs")
    python = builder.ensure(spec)
    folders = {"tiny": demucs_models_folder(builder, spec, python) / "assets"}
    if not args.no_full:
        subprocess.run([str(python), str(BUILDER), str(work / "full"), "--full"], check=True, capture_output=True, timeout=600)
        folders["full"] = work / "full" / "assets"
    song = mixed_song(args.seconds, RATE)
    song_file = work / "song.npy"
    np.save(song_file, song)
    version = subprocess.run([str(python), "-c", "import demucs, torch; print(demucs.__version__, torch.__version__)"],
                             capture_output=True, text=True, check=True).stdout.split()
    lines = ["Demucs: our worker (supervisor + worker + runtimes/adapters/demucs.py) vs demucs's own Separator and apply_model",
             "demucs %s, torch %s, CPU (%s, %d cores, load average %.1f at the start); %s" % (
                 version[0], version[1], platform.machine(), os.cpu_count() or 0, os.getloadavg()[0], time.strftime("%Y-%m-%d")),
             "song: tests/demucs_fixtures.py mixed_song, %.1f s stereo at 44100 Hz (a voice-like phrase over a bass tone and a chord)"
             % args.seconds, ""]
    print("\n".join(lines), flush=True)
    worst = 0.0
    for size, model, options in CASES:
        if size not in folders:
            continue
        settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=work / ("run-" + size), assets_dir=folders[size])
        supervisor = Supervisor(settings, {"demucs": spec}, lambda spec, progress: python, memory=SystemRamSource())
        try:
            supervisor.generate(JobRequest("demucs", model, audio=song[:, :RATE], audio_sample_rate=RATE, options={"shifts": 0}))  # warm
            result = supervisor.generate(JobRequest("demucs", model, audio=song, audio_sample_rate=RATE, options=options))
            supervisor_rows = [row for row in supervisor.status() if row["pid"]]
        finally:
            supervisor.shutdown()
        ours = result.audio
        peak = float(np.abs(ours).max())
        [row] = [row for row in supervisor_rows if row["architecture"] == "demucs"]
        [loaded] = [c for c in row["loaded"] if c["id"] == model]
        head = "%s %s (%d parameters), options %s: %d segment passes, ours %.2f s" % (
            size, model, loaded["details"]["parameters"], json.dumps(options) if options else "defaults", result.details["segments"],
            result.timings_s.get("generate_s", 0.0))
        parts = []
        for mode in ("separator", "apply_model"):
            theirs, took_s = upstream(python, folders[size] / ("demucs_%s" % model), model, song_file, options, mode, work)
            assert theirs.shape == ours.shape == (2, 2, song.shape[1]), (theirs.shape, ours.shape)
            diff = float(np.abs(theirs - ours).max())
            worst = max(worst, diff / peak)
            parts.append("  vs %s (%.2f s): max |diff| vocals %.3g, accompaniment %.3g; %.3g relative to the peak %.3f" % (
                mode, took_s, float(np.abs(theirs[0] - ours[0]).max()), float(np.abs(theirs[1] - ours[1]).max()), diff / peak, peak))
        print(head + "\n" + "\n".join(parts), flush=True)
        lines += [head, *parts]
    verdict = "result: %s (worst difference %.3g relative to the peak; target < %g)" % ("PASS" if worst < TARGET else "FAIL", worst, TARGET)
    print("\n" + verdict)
    lines += ["", verdict, ""]
    RESULT.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
