"""Seed-VC: our worker (runtimes/adapters/seed_vc.py through the real supervisor) beside the seed-vc package's own
inference (``seed_vc.inference.main``: upstream's whole path from the two files to the converted wave), with the same
weights (the tests' tiny random models, tests/builders/build_seed_vc_character.py), the same recordings, options and
seed, in the seed_vc env:

    .venv/bin/python -m bench.seed_vc_equivalence

Upstream reads the source and the voice's reference.wav with librosa at the model's rate; our worker gets the same
source samples and reads the same reference.wav. Upstream's ``main`` writes its result with ``torchaudio.save`` (which
needs torchcodec, absent here): the direct process takes it from that call instead. Its download helper is answered
from the same assets, and its config's Hugging Face names point at the same folders, as the adapter does. Cases: the
speech model (one chunk; a 40 s source in two chunks and two Whisper windows) and the singing model (auto pitch match
off and on, a semitone shift). Prints and writes the largest sample difference per case to
bench/results/seed_vc_equivalence.txt. ``SEED_VC_DIRECT_LOG=1`` shows the direct process's own output.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from app.settings import PROJECT_ROOT
from runtimes.adapters.seed_vc import MANIFEST, MODELS
from runtimes.environments import EnvironmentBuilder, load_spec
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import built_envs_dir, tiny_models

RESULTS = PROJECT_ROOT / "bench" / "results" / "seed_vc_equivalence.txt"
VOICE = "alice"

DIRECT = r'''
import json, os, sys, time, types, tempfile
import numpy as np, soundfile, torch, yaml
assets = sys.argv[1]
answers = os.fdopen(os.dup(1), "w")
sys.stdout = sys.stderr  # upstream prints (its RTF, its loading): the answers have their own pipe
cache = os.environ.get("HF_HUB_CACHE")
import seed_vc.inference as upstream
os.environ.pop("HF_HUB_CACHE", None) if cache is None else os.environ.__setitem__("HF_HUB_CACHE", cache)
import torchaudio
HELPER = {("funasr/campplus", "campplus_cn_common.bin"): "campplus_cn_common.bin", ("lj1995/VoiceConversionWebUI", "rmvpe.pt"): "rmvpe.pt"}
upstream.load_custom_model_from_hf = lambda repo, name="pytorch_model.bin", config_filename=None: os.path.join(assets, HELPER[(repo, name)])
FOLDERS = {"openai/whisper-small": "whisper-small", "nvidia/bigvgan_v2_22khz_80band_256x": "bigvgan_v2_22khz_80band_256x",
           "nvidia/bigvgan_v2_44khz_128band_512x": "bigvgan_v2_44khz_128band_512x"}
scratch = tempfile.mkdtemp(prefix="seed-vc-direct-")
loaded = {}
load_models = upstream.load_models
def kept_models(args):  # upstream's main loads its models at every call: once here, so a call times the conversion
    if args.f0_condition not in loaded:
        loaded[args.f0_condition] = load_models(args)
    return loaded[args.f0_condition]
upstream.load_models = kept_models
taken = {}
torchaudio.save = lambda path, wave, rate, **kw: taken.update(wave=wave.numpy().reshape(-1), rate=rate)
def args_for(singing, files):
    folder = os.path.join(assets, files["asset"])
    config = yaml.safe_load(open(os.path.join(folder, files["config"])))
    for part in (config["model_params"]["speech_tokenizer"], config["model_params"]["vocoder"]):
        part["name"] = os.path.join(assets, FOLDERS[part["name"]])
    path = os.path.join(scratch, files["config"])
    yaml.safe_dump(config, open(path, "w"))
    return dict(f0_condition=singing, checkpoint=os.path.join(folder, files["checkpoint"]), config=path, fp16=False)
print(json.dumps({"ready": True}), file=answers, flush=True)
for line in sys.stdin:
    job = json.loads(line)
    args = types.SimpleNamespace(source=job["source"], target=job["target"], output=scratch, **args_for(job["singing"], job["files"]),
                                 diffusion_steps=job["diffusion_steps"], length_adjust=job["length_adjust"],
                                 inference_cfg_rate=job["inference_cfg_rate"], auto_f0_adjust=job["auto_f0_adjust"],
                                 semi_tone_shift=job["semitone_shift"])
    if job["singing"] not in loaded:
        kept_models(args)
    torch.manual_seed(job["seed"])
    started = time.perf_counter()
    upstream.main(args)
    took = time.perf_counter() - started
    np.save(job["out"], taken["wave"].astype(np.float32))
    print(json.dumps({"rate": taken["rate"], "seconds": took}), file=answers, flush=True)
'''


class Direct:
    """The seed-vc package's own inference in a warm process of the env (models loaded once)."""

    def __init__(self, python: Path, assets: Path) -> None:
        log = None if os.environ.get("SEED_VC_DIRECT_LOG") else subprocess.DEVNULL
        self.process = subprocess.Popen([str(python), "-c", DIRECT, str(assets)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=log, text=True, cwd=tempfile.mkdtemp(prefix="seed-vc-cwd-"),
                                        env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
        self.read()

    def read(self) -> Dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the direct process ended (exit %s)" % self.process.wait())
        return dict(json.loads(line))

    def convert(self, source: Path, target: Path, options: Dict[str, Any], seed: int, out: Path) -> Tuple[np.ndarray, int, float]:
        files = MODELS[str(options["model"])]
        job = {"source": str(source), "target": str(target), "singing": options["model"] == "singing", "seed": seed, "out": str(out),
               "files": {"asset": files.asset, "checkpoint": files.checkpoint, "config": files.config},
               **{name: options[name] for name in ("diffusion_steps", "length_adjust", "inference_cfg_rate", "auto_f0_adjust",
                                                   "semitone_shift")}}
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        answer = self.read()
        return np.load(out), int(answer["rate"]), float(answer["seconds"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def recording(rate: int, seconds: float, folder: Path, name: str) -> Tuple[Path, np.ndarray]:
    """A voiced phrase pattern written as 16-bit PCM (what upstream reads) and the samples as read back (what ours gets)."""
    import soundfile

    from tests.contract import voiced_phrases

    path = folder / name
    soundfile.write(str(path), voiced_phrases(rate, seconds), rate, subtype="PCM_16")
    samples, _ = soundfile.read(str(path), dtype="float32")
    return path, np.asarray(samples, dtype=np.float32)


def setup() -> Tuple[Path, Path, Supervisor]:
    builder = EnvironmentBuilder(built_envs_dir(), Path(tempfile.mkdtemp(prefix="seed-vc-logs-")), "cpu")
    spec = load_spec(PROJECT_ROOT / "envs" / "seed_vc")
    python = builder.ensure(spec)
    models = tiny_models(builder, spec, python)
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=Path(tempfile.mkdtemp(prefix="seed-vc-run-")),
                                  assets_dir=models / "assets", graceful_stop_s=30.0)
    return python, models, Supervisor(settings, {"seed_vc": spec}, lambda s, p: python, memory=SystemRamSource())


CASES: List[Tuple[str, int, float, Dict[str, Any]]] = [
    ("speech, 3 s", 22050, 3.0, {"diffusion_steps": 10}),
    ("speech, 3 s, length x1.3, cfg 0.3", 22050, 3.0, {"diffusion_steps": 5, "length_adjust": 1.3, "inference_cfg_rate": 0.3}),
    ("speech, 40 s (2 chunks, 2 Whisper windows)", 22050, 40.0, {"diffusion_steps": 3}),
    ("singing, 3 s, no pitch match", 44100, 3.0, {"model": "singing", "auto_f0_adjust": False}),
    ("singing, 3 s, pitch match, +5 semitones", 44100, 3.0, {"model": "singing", "semitone_shift": 5}),
]


def main() -> None:
    python, models, supervisor = setup()
    voice = models / "characters" / VOICE
    direct = Direct(python, models / "assets")
    lines = ["Seed-VC equivalence: our worker vs seed_vc.inference.main (seed-vc 0.4.3), tiny random models, CPU, %s"
             % time.strftime("%Y-%m-%d"), "| case | samples (ours / upstream) | rate | max abs difference | peak |",
             "|---|---|---|---|---|"]
    try:
        with tempfile.TemporaryDirectory(prefix="seed-vc-eq-") as scratch:
            folder = Path(scratch)
            for index, (label, rate, seconds, changes) in enumerate(CASES):
                options = MANIFEST.resolve_options(dict(changes, seed=1234 + index))
                source, samples = recording(rate, seconds, folder, "source-%d.wav" % index)
                out = folder / ("up-%d.npy" % index)
                theirs, their_rate, _ = direct.convert(source, voice / "reference.wav", options, 1234 + index, out)
                ours = supervisor.generate(JobRequest(architecture="seed_vc", character=VOICE, character_path=str(voice), audio=samples,
                                                      audio_sample_rate=rate, options=options))
                same_length = ours.audio.size == theirs.size
                difference = float(np.abs(ours.audio - theirs).max()) if same_length else float("nan")
                line = "| %s | %d / %d | %d / %d | %.3g | %.3f |" % (label, ours.audio.size, theirs.size, ours.sample_rate, their_rate,
                                                                     difference, float(np.abs(theirs).max()))
                print(line, flush=True)
                lines.append(line)
    finally:
        direct.close()
        supervisor.shutdown()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
