"""XTTS v2 on this machine's CPU with the tiny random model of the tests (tests/builders/build_xtts_character.py: a
1-layer GPT, the decoder and speaker encoder at their fixed real sizes), in one run:

    .venv/bin/python -m bench.xtts_bench [--rounds N]

Real-time factor (seconds of work per second of speech) through the supervisor and worker (a saved voice, its
conditioning already kept, streamed as the app asks) against the package's own calls in a warm process of the same env
(``Xtts.get_gpt_cond_latents``/``get_speaker_embedding`` once, then ``Xtts.inference`` per sentence, as upstream's API
speaks a text), in interleaved rounds (which goes first alternating) with the same seed (the same tokens, so the same
audio: paired ratios); and a voice's first use (its conditioning computed) against its reuse (kept). Results:
bench/results/xtts_bench-cpu.txt.

The random GPT stops after a random number of audio tokens, so absolute lengths say nothing about a real model's; the
decoder, which dominates here, has the real size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from app.settings import PROJECT_ROOT
from runtimes.environments import EnvironmentBuilder, load_spec
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import built_envs_dir, tiny_models
from tests.contract import voiced_phrases
from tests.voice_files import write_voice
from tests.xtts_fixtures import VOICE_RATE, VOICE_S

RESULTS = PROJECT_ROOT / "bench" / "results" / "xtts_bench-cpu.txt"
SENTENCES = ["The quick brown fox jumps over the lazy dog.", "A voice workstation speaks typed text aloud.",
             "Every sentence becomes one piece of the answer.", "The reference recording sets the voice to speak like.",
             "Random weights make noise, but they take the real time.", "The worker keeps the model warm between jobs.",
             "Each piece is streamed to the listener as it is made.", "This is the last sentence of the paragraph."]
TEXT = " ".join(SENTENCES)
SEED = 11

DIRECT = r'''
import json, os, sys, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the worker starts torch (runtimes/adapters/xtts.py)
import numpy as np, pysbd, soundfile, torch, torchaudio.functional
from TTS.tts.configs.xtts_config import XttsConfig
from TTS.tts.models.xtts import Xtts
folder, reference, out = sys.argv[1:4]
config = XttsConfig()
config.load_json(os.path.join(folder, "config.json"))
model = Xtts(config)
model.load_checkpoint(config, checkpoint_dir=folder, eval=True)  # the tiny model.pth holds plain weights: upstream's own loader
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    ask = json.loads(line)
    started = time.perf_counter()
    # upstream's get_conditioning_latents reads the file with torchaudio.load (torchcodec: unusable beside this torch);
    # the same steps on the samples soundfile reads: mono, resampled to 22050 Hz, clipped, then upstream's two calls
    samples, rate = soundfile.read(reference, dtype="float32", always_2d=True)
    audio = torchaudio.functional.resample(torch.from_numpy(samples.T.copy()).mean(0, keepdim=True), rate, 22050).clip_(-1, 1)
    audio = audio[:, : 22050 * ask["max_ref_len"]]
    speaker = model.get_speaker_embedding(audio, 22050)
    latents = model.get_gpt_cond_latents(audio, 22050, length=ask["gpt_cond_len"], chunk_length=min(4, ask["gpt_cond_len"]))
    conditioned = time.perf_counter()
    torch.manual_seed(ask["seed"])
    pieces = pysbd.Segmenter(language="en", clean=True).segment(ask["text"]) if ask["split"] else [ask["text"]]
    wavs = [model.inference(p.strip(), "en", latents, speaker, temperature=0.75, length_penalty=1.0, repetition_penalty=5.0, top_k=50,
                            top_p=0.85, speed=1.0, enable_text_splitting=True)["wav"] for p in pieces if p.strip()]
    wav = np.concatenate(wavs).astype(np.float32)
    np.save(out, wav)
    print(json.dumps({"samples": int(wav.size), "conditioning_s": conditioned - started, "speak_s": time.perf_counter() - conditioned}),
          flush=True)
'''


class Direct:
    """The package's own calls in a warm process of the env."""

    def __init__(self, python: Path, models: Path, reference: Path) -> None:
        self.out = Path(tempfile.mkdtemp(prefix="xtts-direct-")) / "take.npy"
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        self.process = subprocess.Popen([str(python), "-c", DIRECT, str(models / "assets" / "xtts_v2"), str(reference), str(self.out)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tempfile.gettempdir())
        assert self.read().get("ready")

    def read(self) -> Dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                return dict(json.loads(line))
        raise RuntimeError("the direct process ended")

    def speak(self, text: str, seed: int, split: bool = True, gpt_cond_len: int = 30, max_ref_len: int = 30) -> Dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"text": text, "seed": seed, "split": split, "gpt_cond_len": gpt_cond_len,
                                             "max_ref_len": max_ref_len}) + "\n")
        self.process.stdin.flush()
        answer = self.read()
        answer["audio"] = np.load(self.out)
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def setup(scratch: Path) -> Dict[str, Any]:
    """The env (built if needed), the tiny model, a saved voice, a warm supervisor."""
    builder = EnvironmentBuilder(built_envs_dir(), scratch / "logs", "cpu")
    spec = load_spec(PROJECT_ROOT / "envs" / "xtts")
    python = builder.ensure(spec)
    models = tiny_models(builder, spec, python)
    voice = write_voice(scratch / "voice", voiced_phrases(VOICE_RATE, VOICE_S), VOICE_RATE)
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=scratch / "run", assets_dir=models / "assets")
    supervisor = Supervisor(settings, {"xtts": spec}, lambda s, p: python, memory=SystemRamSource())
    return {"python": python, "models": models, "voice": voice, "supervisor": supervisor}


def job(voice: Path, text: str, seed: int, **options: Any) -> JobRequest:
    return JobRequest(architecture="xtts", character=voice.name, character_path=str(voice), text=text, options=dict(seed=seed, **options))


def bench(rounds: int) -> str:
    with tempfile.TemporaryDirectory(prefix="xtts-bench-") as folder:
        parts = setup(Path(folder))
        supervisor: Supervisor = parts["supervisor"]
        voice: Path = parts["voice"]
        try:
            started = time.perf_counter()
            supervisor.generate(job(voice, "Warm up.", SEED))
            cold_s = time.perf_counter() - started
            direct = Direct(parts["python"], parts["models"], voice / "reference.wav")
            ours_rtf: List[float] = []
            inside_rtf: List[float] = []
            direct_rtf: List[float] = []
            ratios: List[float] = []
            seconds = 0.0
            for index in range(rounds):
                seed = SEED + index
                if index % 2:  # which path goes first alternates: a busy spell then falls on each as often
                    theirs = direct.speak(TEXT, seed)
                began = time.perf_counter()
                ours = supervisor.generate(job(voice, TEXT, seed), on_chunk=lambda audio, rate: None)
                ours_s = time.perf_counter() - began
                if not index % 2:
                    theirs = direct.speak(TEXT, seed)
                seconds = ours.audio.size / ours.sample_rate
                if ours.audio.size != theirs["samples"]:
                    raise RuntimeError("round %d: our take has %d samples, upstream's %d (not the same tokens)" % (index, ours.audio.size,
                                                                                                             theirs["samples"]))
                ours_rtf.append(ours_s / seconds)
                inside_rtf.append(ours.timings_s["generate_s"] / seconds)
                direct_rtf.append(theirs["speak_s"] / seconds)
                ratios.append(ours_rtf[-1] / direct_rtf[-1])
            conditioning_direct = statistics.median(direct.speak("Hi.", SEED)["conditioning_s"] for _ in range(3))
            direct.close()
            first_s: List[float] = []
            reused_s: List[float] = []
            for index in range(rounds):  # a new voice each round (a recording not heard before), then the same again
                recording = voiced_phrases(VOICE_RATE, VOICE_S) * (0.5 + 0.05 * index)
                fresh = write_voice(Path(folder) / ("voice-%d" % index), recording, VOICE_RATE)
                began = time.perf_counter()
                first = supervisor.generate(job(fresh, "Hello there.", SEED))
                first_s.append(time.perf_counter() - began)
                began = time.perf_counter()
                again = supervisor.generate(job(fresh, "Hello there.", SEED))
                reused_s.append(time.perf_counter() - began)
                assert (first.details["conditioning"], again.details["conditioning"]) == ("computed", "reused")
        finally:
            supervisor.shutdown()
    load = " ".join("%.1f" % value for value in os.getloadavg())
    lines = [
        "XTTS v2 (coqui-tts 0.28.0, tiny random model: 1-layer GPT, real-size decoder and speaker encoder, 28.4 M parameters), CPU, "
        "%s; %d interleaved rounds, medians; load average %s" % (time.strftime("%Y-%m-%d"), rounds, load),
        "first job (worker start, import, model load, conditioning, speech): %.1f s" % cold_s,
        "| path | RTF (%d sentences, %.1f s of speech in the last round) |" % (len(SENTENCES), seconds),
        "|---|---|",
        "| through the worker (streamed, saved voice, conditioning kept) | %.2f |" % statistics.median(ours_rtf),
        "| the same, the adapter's time in the worker (generate_s) | %.2f |" % statistics.median(inside_rtf),
        "| direct: Xtts.inference per sentence (same seed, same samples) | %.2f |" % statistics.median(direct_rtf),
        "| worker over direct (paired ratio) | %.2fx (rounds: %s) |" % (statistics.median(ratios), ", ".join("%.2f" % r for r in ratios)),
        "voice first use (conditioning computed) vs reuse, one short sentence: %.2f s vs %.2f s (%.2f s saved; upstream's two "
        "conditioning calls direct: %.2f s)" % (statistics.median(first_s), statistics.median(reused_s),
                                                statistics.median(first_s) - statistics.median(reused_s), conditioning_direct),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    text = bench(args.rounds)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = RESULTS.read_text() if RESULTS.exists() else ""
    RESULTS.write_text(text + "\n\n" + previous if previous else text + "\n")


if __name__ == "__main__":
    main()
