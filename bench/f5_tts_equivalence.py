"""F5-TTS: our worker's take beside the f5-tts package's own inference (``preprocess_ref_audio_text`` + ``infer_process``, as
its ``F5TTS.infer`` API calls them) with the same weights, reference, text, options and seed:

    .venv/bin/python -m bench.f5_tts_equivalence [--real-size] [--nfe-step N]

Weights: the tests' tiny random DiT + Vocos (default), or upstream's real sizes (random; ``--real-size``). Our side runs
through the supervisor and a worker in the f5_tts env; upstream's in a separate process of the same env, given what a
person gives it: the saved voice's reference.wav (or, for the one-off reference, the request's samples written as 16-bit
WAV, as our adapter writes them). Two changes upstream needs here, both outside its inference: ``torchaudio.load`` reads
with soundfile (torchaudio's file IO needs torchcodec, a CUDA build beside this CPU torch), and ``infer_process``'s
thread pool has one thread (with more, a multi-chunk take's chunks draw their noise in the order the threads happen to
run: upstream's own takes then differ from run to run). Writes bench/results/f5_tts_equivalence.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from app.settings import PROJECT_ROOT
from runtimes.environments import EnvironmentBuilder, load_spec
from runtimes.memory import SystemRamSource
from runtimes.registry import read_manifest
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import built_envs_dir
from tests.contract import voiced_phrases
from tests.f5_tts_fixtures import VOICE_RATE, VOICE_S, VOICE_TRANSCRIPT
from tests.voice_files import write_voice

RESULT = PROJECT_ROOT / "bench" / "results" / "f5_tts_equivalence.txt"
BUILDER = PROJECT_ROOT / "tests" / "builders" / "build_f5_tts_character.py"
ONE_CHUNK = "Hello there, how are you today?"
CHUNKS = " ".join(["The quick brown fox jumps over the lazy dog.", "A voice workstation speaks typed text aloud.",
                   "Every sentence becomes one piece of the answer.", "The reference recording sets the voice to speak like.",
                   "Random weights make noise, but they take the real time.", "Ten sentences make a short paragraph."])
ONE_OFF_RATE = 16000
ONE_OFF_TEXT = "Something said in the recording."

UPSTREAM = r'''
import json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np, soundfile, torch
from importlib.resources import files
from omegaconf import OmegaConf
import f5_tts.infer.utils_infer as infer
from f5_tts.model import DiT
from f5_tts.model.utils import seed_everything
assets = sys.argv[1]
folder = os.path.join(assets, "f5_tts_v1_base")
[checkpoint] = [os.path.join(folder, n) for n in os.listdir(folder) if n.startswith("model_") and n.endswith(".safetensors")]
own = os.path.join(folder, "config.yaml")
config = OmegaConf.load(own if os.path.exists(own) else str(files("f5_tts").joinpath("configs/F5TTS_v1_Base.yaml")))
model = infer.load_model(DiT, OmegaConf.to_container(config.model.arch), checkpoint, vocab_file=os.path.join(folder, "vocab.txt"),
                         device="cpu")
vocoder = infer.load_vocoder("vocos", True, os.path.join(assets, "vocos_mel_24khz"), device="cpu")
def load(path):  # torchaudio.load's answer, read with soundfile (its own file IO needs torchcodec: a CUDA build here)
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(audio.T)), rate
infer.torchaudio.load = load
infer.ThreadPoolExecutor = lambda *args, **kwargs: ThreadPoolExecutor(max_workers=1)  # chunks in order (see the docstring)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    case = json.loads(line)
    started = time.perf_counter()
    seed_everything(case["seed"])  # as F5TTS.infer
    ref_file, ref_text = infer.preprocess_ref_audio_text(case["ref"], case["ref_text"], show_info=lambda *a: None)
    wave, rate, _ = infer.infer_process(ref_file, ref_text, case["text"], model, vocoder, show_info=lambda *a: None, progress=None,
                                        device="cpu", **case["options"])
    if case.get("remove_silence"):  # as F5TTS.export_wav
        out = case["out"] + ".wav"
        soundfile.write(out, wave, rate)
        infer.remove_silence_for_generated_wav(out)
        wave = soundfile.read(out, dtype="float32")[0]
    np.save(case["out"], np.asarray(wave, dtype=np.float64))
    print(json.dumps({"work_s": time.perf_counter() - started, "audio_s": len(wave) / rate, "rate": rate}), flush=True)
'''


def models_for(python: Path, real_size: bool) -> Path:
    """The tiny (or real-size) random assets, built once per builder version into data/bench-models/."""
    digest = hashlib.sha256(BUILDER.read_bytes() + (b"real" if real_size else b"tiny")).hexdigest()[:12]
    folder = built_envs_dir().parent / "bench-models" / ("f5_tts-%s-%s" % ("real" if real_size else "tiny", digest))
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([str(python), str(BUILDER), str(folder)] + (["--real-size"] if real_size else []), check=True,
                       capture_output=True, cwd=BUILDER.parent, timeout=900)
        (folder / ".complete").write_text("")
    return folder


class Upstream:
    """The package's own inference in a warm process of the same env, one call a line (so its runs can interleave with ours)."""

    def __init__(self, python: Path, assets: Path) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="f5_tts-upstream-"))
        self.process = subprocess.Popen([str(python), "-c", UPSTREAM, str(assets)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, cwd=str(self.scratch),
                                        env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE"))
        self.calls = 0
        self.read()

    def read(self) -> Dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                return dict(json.loads(line))
        raise SystemExit("the upstream process ended (exit %s)" % self.process.wait())

    def infer(self, ref: Path, ref_text: str, text: str, seed: int, options: Dict[str, Any],
              remove_silence: bool = False) -> Tuple[np.ndarray, Dict[str, Any]]:
        assert self.process.stdin is not None
        self.calls += 1
        out = self.scratch / ("take-%d.npy" % self.calls)
        case = {"ref": str(ref), "ref_text": ref_text, "text": text, "seed": seed, "options": options, "out": str(out)[:-4],
                "remove_silence": remove_silence}
        self.process.stdin.write(json.dumps(case) + "\n")
        self.process.stdin.flush()
        answer = self.read()
        return np.load(out), answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)
        shutil.rmtree(self.scratch, ignore_errors=True)


def upstream_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """Our options as infer_process's keywords."""
    names = ("nfe_step", "cfg_strength", "sway_sampling_coef", "speed", "cross_fade_duration", "target_rms")
    return {name: options[name] for name in names}


def setting_up(real_size: bool) -> Tuple[Path, Path, Path, Supervisor, Any]:
    """The env's Python, the data folder (assets + a saved voice), the voice, a supervisor and the manifest."""
    spec = load_spec(PROJECT_ROOT / "envs" / "f5_tts")
    python = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp()), "cpu").ensure(spec)
    built = models_for(python, real_size)
    data = Path(tempfile.mkdtemp(prefix="f5_tts-data-"))
    (data / "assets").symlink_to(built / "assets")
    voice = write_voice(data / "characters" / "bench-voice", voiced_phrases(VOICE_RATE, VOICE_S), VOICE_RATE, VOICE_TRANSCRIPT)
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=data / "run", assets_dir=data / "assets", keep_alive_s=-1)
    supervisor = Supervisor(settings, {spec.name: spec}, lambda s, p: python, memory=SystemRamSource())
    return python, data, voice, supervisor, read_manifest(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real-size", action="store_true", help="upstream's v1 Base sizes (random weights) instead of the tiny ones")
    parser.add_argument("--nfe-step", type=int, default=0, help="flow steps (default: 32 tiny, 4 real size)")
    args = parser.parse_args()
    nfe = args.nfe_step or (4 if args.real_size else 32)
    python, data, voice, supervisor, manifest = setting_up(args.real_size)
    one_off = voiced_phrases(ONE_OFF_RATE, 5.0) * 0.7
    one_off_file = data / "one-off.wav"
    import soundfile  # the app's env has it (the same 16-bit file our adapter writes for a request's recording)

    soundfile.write(str(one_off_file), np.clip(one_off, -1, 1), ONE_OFF_RATE, subtype="PCM_16")
    cases: List[Dict[str, Any]] = [
        {"name": "saved voice, one chunk", "text": ONE_CHUNK, "seed": 7, "options": {}},
        {"name": "saved voice, %d chunks" % 0, "text": CHUNKS, "seed": 11, "options": {}},
        {"name": "one-off reference (16 kHz request audio)", "text": ONE_CHUNK, "seed": 3, "options": {"reference_text": ONE_OFF_TEXT},
         "audio": one_off},
        {"name": "options: cfg 1.2, sway -0.5, speed 0.8, rms 0.2, fade 0.3, remove_silence", "text": CHUNKS, "seed": 5,
         "options": {"cfg_strength": 1.2, "sway_sampling_coef": -0.5, "speed": 0.8, "target_rms": 0.2, "cross_fade_duration": 0.3,
                     "remove_silence": True}},
    ]
    if args.real_size:
        cases = cases[:1]
    upstream = Upstream(python, data / "assets")
    lines: List[str] = []
    try:
        for case in cases:
            options = manifest.resolve_options(dict({"nfe_step": nfe, "seed": case["seed"]}, **case["options"]))
            audio = case.get("audio")
            request = JobRequest(architecture="f5_tts", character="reference" if audio is not None else voice.name,
                                 character_path=None if audio is not None else str(voice), text=case["text"], audio=audio,
                                 audio_sample_rate=ONE_OFF_RATE if audio is not None else None, options=options)
            started = time.perf_counter()
            ours = supervisor.generate(request)
            ours_s = time.perf_counter() - started
            ref, ref_text = (one_off_file, ONE_OFF_TEXT) if audio is not None else (voice / "reference.wav", VOICE_TRANSCRIPT)
            theirs, answer = upstream.infer(ref, ref_text, case["text"], case["seed"], upstream_options(options),
                                            remove_silence=bool(options["remove_silence"]))
            name = case["name"].replace("0 chunks", "%d chunks" % ours.details.get("chunks", 0))
            same_length = ours.audio.size == theirs.size
            difference = float(np.max(np.abs(ours.audio.astype(np.float64) - theirs))) if same_length else float("nan")
            peak = float(np.max(np.abs(theirs))) if theirs.size else 0.0
            lines.append("| %s | %d / %d | %s | %.3g | %.2g | %.2f / %.2f |" % (
                name, ours.audio.size, theirs.size, "yes" if same_length else "NO", difference, peak, ours_s, answer["work_s"]))
            print(lines[-1], flush=True)
    finally:
        upstream.close()
        supervisor.shutdown()
    load = " ".join("%.1f" % v for v in os.getloadavg())
    header = ("F5-TTS (f5-tts 1.1.22, %s random DiT + Vocos), CPU, %s; nfe_step %d; our worker vs upstream's preprocess_ref_audio_text + "
              "infer_process (its thread pool at one thread); our first case's seconds include the worker's start; load average %s\n"
              "| case | samples ours / upstream | same length | max abs difference | upstream peak | seconds ours / upstream |\n"
              "|---|---|---|---|---|---|\n" % ("real-size (v1 Base: 336 M)" if args.real_size else "tiny (dim 64, depth 2)",
                                               time.strftime("%Y-%m-%d"), nfe, load))
    text = header + "\n".join(lines) + "\n"
    print(text)
    previous = RESULT.read_text() if RESULT.exists() else ""
    RESULT.write_text(previous + ("\n" if previous else "") + text)
    shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
