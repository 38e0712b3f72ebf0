"""StyleTTS 2 text to speech on this machine's CPU, with real-size random weights (the LibriTTS config's sizes: PL-BERT
12 x 768, a 3-layer style diffusion, the HiFi-GAN decoder: 136 M parameters at inference), in one run:

    .venv/bin/python -m bench.styletts2_bench [--repeats N] [--no-build] [--character tiny-multi|tiny-single]

Env build time (a fresh build into a scratch folder, the uv cache warm as on a second machine of the same kind) and
size; worker start + import + shared-asset check, and the character's first load; real-time factor (seconds of work
per second of speech) for a 2-sentence and a 10-sentence English text through the supervisor, warm, streamed as the
app asks; the worker's peak RSS; and, in a warm process of the same env, the direct upstream calls: the same sentences
through ``StyleTTS2.long_inference_segment`` with the style carried (what the worker calls), each run right after the
worker's (paired: a busy spell on this shared machine slows both), and upstream's own ``StyleTTS2.inference`` on the
whole text (its 420-character chunks), once. The random duration predictor is biased to ~3
frames (75 ms) a phoneme (a spoken pace), so the audio has a realistic length. ``tiny-multi`` (default) is a multi-speaker
model with the HiFi-GAN decoder speaking in a precomputed style, as the established app's catalogue models;
``tiny-single`` has the iSTFTNet decoder. Results are written to bench/results/styletts2_bench.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

from app.settings import PROJECT_ROOT
from runtimes.environments import EnvironmentBuilder, load_spec
from runtimes.memory import SystemRamSource
from runtimes.registry import read_manifest
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import built_envs_dir

SENTENCES = ["The quick brown fox jumps over the lazy dog.", "A voice workstation speaks typed text aloud.",
             "Every sentence becomes one piece of the answer.", "The reference recording sets the voice to speak like.",
             "Random weights make noise, but they take the real time.", "Ten sentences make a short paragraph.",
             "The worker keeps the models warm between jobs.", "Each piece is streamed to the listener as it is made.",
             "A cancel stops the job between two pieces.", "This is the last sentence of the paragraph."]
TEXTS = {"2 sentences": " ".join(SENTENCES[:2]), "10 sentences": " ".join(SENTENCES)}
RESULTS = PROJECT_ROOT / "bench" / "results" / "styletts2_bench.txt"
CHECKPOINTS = {"tiny-multi": "epoch_2nd_40_1c872.pth", "tiny-single": "model.pth"}

DIRECT = r'''
import json, os, sys, tempfile, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the worker starts torch (runtimes/adapters/styletts2.py)
project, models, character, checkpoint = sys.argv[1:5]
sys.path.insert(0, project)
import nltk
nltk.download = lambda *args, **kwargs: True  # upstream fetches punkt at import (not needed: one-line tokenising below)
import torch, yaml
import styletts2.tts as tts
from nltk.tokenize import word_tokenize
from runtimes.adapters import styletts2_styles
from runtimes.adapters.styletts2 import split_sentences
assets = os.path.join(models, "assets")
files = {tts.F0_CHECKPOINT_URL: "styletts2_jdc/bst.t7", tts.BERT_CONFIG_URL: "styletts2_plbert/config.yml",
         tts.BERT_CHECKPOINT_URL: "styletts2_plbert/step_1000000.t7"}
tts.cached_path = lambda url: os.path.join(assets, files[url])
tts.word_tokenize = lambda text: word_tokenize(text, preserve_line=True)
folder = os.path.join(models, "characters", character)
config = yaml.safe_load(open(os.path.join(folder, "config.yml")))
asr = os.path.join(assets, "styletts2_asr")
config.update(ASR_config=os.path.join(asr, "config.yml"), ASR_path=os.path.join(asr, "epoch_00080.pth"),
              F0_path=os.path.join(assets, "styletts2_jdc", "bst.t7"), PLBERT_dir="")
local = os.path.join(tempfile.mkdtemp(), "config.yml")
yaml.safe_dump(config, open(local, "w"))
engine = tts.StyleTTS2(model_checkpoint_path=os.path.join(folder, checkpoint), config_path=local)
model = styletts2_styles.find(folder, checkpoint)
ref_s = torch.tensor([styletts2_styles.style(model, "Twilight Sparkle", "Neutral 1")]) if model else torch.zeros(1, 256)
alpha, beta = (0.1, 0.1) if model else (1.0, 1.0)

def sentences(text):
    previous, seconds = None, 0.0
    for sentence in split_sentences(text):
        audio, previous = engine.long_inference_segment(sentence, previous, ref_s, alpha=alpha, beta=beta, t=0.5, diffusion_steps=5,
                                                        embedding_scale=1.5)
        seconds += audio.size / 24000
    return seconds

def whole(text):
    return engine.inference(text, ref_s=ref_s, alpha=alpha, beta=beta, diffusion_steps=5, embedding_scale=1.5).size / 24000

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:  # one call a line, timed here: {"mode": "sentences"|"inference", "text": ...}
    asked = json.loads(line)
    started = time.perf_counter()
    with torch.no_grad():
        seconds = (sentences if asked["mode"] == "sentences" else whole)(asked["text"])
    print(json.dumps({"work_s": time.perf_counter() - started, "audio_s": seconds}), flush=True)
'''


def size_gb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / (1 << 30)


def real_models(python: Path) -> Path:
    script = PROJECT_ROOT / "tests" / "builders" / "build_styletts2_character.py"
    digest = hashlib.sha256(script.read_bytes()).hexdigest()[:12]
    folder = built_envs_dir().parent / "bench-models" / ("styletts2-real-" + digest)
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([str(python), str(script), str(folder), "--real-size"], check=True, capture_output=True, cwd=script.parent)
        (folder / ".complete").write_text("")
    return folder


class Direct:
    """Upstream in a warm process of the same env, asked one call at a time (so its runs interleave with the worker's)."""

    def __init__(self, python: Path, models: Path, character: str) -> None:
        self.process = subprocess.Popen([str(python), "-c", DIRECT, str(PROJECT_ROOT), str(models), character, CHECKPOINTS[character]],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tempfile.gettempdir(),
                                        env=dict(os.environ, HF_HUB_OFFLINE="1"))
        self.read()

    def read(self) -> Dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                return dict(json.loads(line))
        raise SystemExit("the direct upstream process ended (exit %s)" % self.process.wait())

    def rtf(self, mode: str, text: str) -> Tuple[float, float]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"mode": mode, "text": text}) + "\n")
        self.process.stdin.flush()
        answer = self.read()
        return answer["work_s"] / answer["audio_s"], answer["audio_s"]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def bench(repeats: int, build: bool, character: str) -> Dict[str, Any]:
    spec = load_spec(PROJECT_ROOT / "envs" / "styletts2")
    row: Dict[str, Any] = {"env_build_s": None}
    if build:  # a fresh build of the same spec beside the cached one
        scratch = Path(tempfile.mkdtemp(prefix="styletts2-env-"))
        started = time.perf_counter()
        EnvironmentBuilder(scratch, scratch / "logs", "cpu").ensure(spec)
        row["env_build_s"] = time.perf_counter() - started
        shutil.rmtree(scratch, ignore_errors=True)
    builder = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp()), "cpu")
    python = builder.ensure(spec)
    row["env_gb"] = size_gb(builder.env_dir(spec).resolve())
    models = real_models(python)
    manifest = read_manifest(spec)
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=Path(tempfile.mkdtemp()), assets_dir=models / "assets",
                                  keep_alive_s=-1)
    supervisor = Supervisor(settings, {spec.name: spec}, lambda s, p: python, memory=SystemRamSource())
    style = {"style_character": "Twilight Sparkle"} if character == "tiny-multi" else {}

    def job(text: str) -> JobRequest:
        return JobRequest(architecture=spec.name, character=character, character_path=str(models / "characters" / character), text=text,
                          options=manifest.resolve_options(style))

    def through_worker(text: str) -> Tuple[float, float, float]:
        """RTF, seconds of speech and seconds to the first piece, streamed as the app asks."""
        pieces_at: List[float] = []

        def arrived(audio: Any, rate: int, at: List[float] = pieces_at) -> None:
            at.append(time.perf_counter())

        started = time.perf_counter()
        result = supervisor.generate(job(text), on_chunk=arrived)
        seconds = result.audio.size / result.sample_rate
        return (time.perf_counter() - started) / seconds, seconds, pieces_at[0] - started

    direct = None
    try:
        first = supervisor.generate(job(SENTENCES[0]))
        t = first.timings_s
        row.update(start_import_s=t.get("spawn_s", 0) + t.get("prepare_s", 0), first_load_s=t.get("load_s", 0))
        direct = Direct(python, models, character)
        for name, text in TEXTS.items():
            through_worker(text), direct.rtf("sentences", text)  # warm
            ours: List[float] = []
            theirs: List[float] = []
            firsts: List[float] = []
            for _ in range(repeats):  # paired: the two ways one after the other, so a busy spell slows both
                rtf, seconds, first_s = through_worker(text)
                ours.append(rtf)
                firsts.append(first_s)
                theirs.append(direct.rtf("sentences", text)[0])
                row["audio_s " + name] = seconds
            row["rtf " + name] = statistics.median(ours)
            row["direct rtf " + name] = statistics.median(theirs)
            row["paired " + name] = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
            row["first_piece_s " + name] = statistics.median(firsts)
            row["inference rtf " + name] = direct.rtf("inference", text)[0]
        row["peak_rss_mb"] = supervisor.status()[0]["measured_peak_mb"]
    finally:
        supervisor.shutdown()
        if direct is not None:
            direct.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-build", action="store_true", help="skip the fresh env build (its time is then not measured)")
    parser.add_argument("--character", choices=sorted(CHECKPOINTS), default="tiny-multi")
    args = parser.parse_args()
    r = bench(args.repeats, not args.no_build, args.character)
    built = "not measured" if r["env_build_s"] is None else "%.0f s" % r["env_build_s"]
    multi = args.character == "tiny-multi"
    decoder = "HiFi-GAN decoder, multi-speaker, a precomputed style" if multi else "iSTFTNet decoder, single-speaker"
    lines = [
        "StyleTTS 2 (styletts2 0.1.6, LibriTTS sizes, random weights, %s), CPU, %s; %d repeats, medians; load average %s" % (
            decoder, time.strftime("%Y-%m-%d"), args.repeats, " ".join("%.1f" % v for v in os.getloadavg())),
        "env: %.1f GB, fresh build %s" % (r["env_gb"], built),
        "worker start + import: %.1f s; first character load: %.1f s; peak RSS %.0f MB" % (
            r["start_import_s"], r["first_load_s"], r["peak_rss_mb"] or 0),
        "| text | speech | first piece | RTF through the worker | RTF direct (same sentences) | worker over direct (paired) "
        "| RTF upstream inference() (1 run) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in TEXTS:
        lines.append("| %s | %.1f s | %.1f s | %.2f | %.2f | %+.0f%% | %.2f |" % (
            name, r["audio_s " + name], r["first_piece_s " + name], r["rtf " + name], r["direct rtf " + name],
            100 * (r["paired " + name] - 1), r["inference rtf " + name]))
    text = "\n".join(lines) + "\n"
    print(text, end="")
    with RESULTS.open("a", encoding="utf-8") as handle:
        handle.write(text + "\n")


if __name__ == "__main__":
    main()
