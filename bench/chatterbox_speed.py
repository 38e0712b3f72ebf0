"""Chatterbox (chatterbox-tts 0.1.7, Resemble AI) speed on this machine's CPU, with random weights at the real sizes.

No weights can be downloaded here, so the models are chatterbox's own classes at their default (released) sizes with
random initialisation: T3 (Llama 520M text -> speech tokens), S3Gen (S3 speech tokenizer + conformer/flow-matching
token -> mel decoder + HiFT vocoder) and the VoiceEncoder; the watermarker is perth's real one (its weights ship in the
wheel). Speed does not depend on the weights' values, except that a random T3 does not know when to stop: each line's
token count is capped at a realistic length (25 speech tokens per second of speech, speech at 2.5 words per second) and
random ids that fall on the special/invalid range (>= 6561) are folded into the valid range so S3Gen gets that count.

Run with the scratch venv's python (outside the repository; chatterbox-tts pins torch 2.6, so it goes in without its
dependencies and torch 2.13 CPU stays):

    PY=python3.11                      # or $(pyenv root)/versions/3.11.*/bin/python
    $PY -m venv /tmp/chatterbox-venv && echo torch==2.13.0 > /tmp/cb-constraints.txt
    P="/tmp/chatterbox-venv/bin/pip install -c /tmp/cb-constraints.txt"
    $P torch==2.13.0                   # the CPU wheel, found through pip's configured find-links
    $P --no-deps chatterbox-tts==0.1.7 s3tokenizer==0.3.0 resemble-perth==1.0.1 conformer==0.3.2 diffusers==0.29.0 \
        torchaudio==2.11.1
    $P "numpy<2" librosa==0.11.0 transformers==5.2.0 safetensors==0.5.3 einops onnx tqdm pyloudnorm omegaconf \
        "setuptools<81" importlib-metadata filelock regex requests Pillow psutil
    # PyPI's torchaudio is linked against CUDA libraries this torch lacks; only its pure-Python parts are used
    rm /tmp/chatterbox-venv/lib/python3.11/site-packages/torchaudio/lib/*.so
    nice -n 19 /tmp/chatterbox-venv/bin/python bench/chatterbox_speed.py [--threads 1] [--words 5 15 30] [--no-vc] \
        [--turbo] [--json out.json]

(setuptools >= 81 drops pkg_resources, and perth then silently leaves ``PerthImplicitWatermarker`` as None.)
Prints one JSON line per stage (wall and process-CPU seconds: with one torch thread on a shared machine the CPU
seconds are the idle one-core time); the numbers from this machine are in bench/results/chatterbox_speed-cpu.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import soundfile as sf
import torch

SPEECH_TOKENS_PER_S = 25.0
"""S3 speech tokens per second of speech (the tokenizer's frame rate)."""
WORDS_PER_S = 2.5
"""Ordinary reading pace (150 words/min): sets each line's token cap."""
REFERENCE_S = 10.0
SENTENCES = {
    5: "The weather turned cold tonight.",
    15: "She opened the old wooden door slowly and found a letter waiting on the dusty kitchen table.",
    30: "When the train finally arrived at the small mountain station, everyone on the platform cheered, "
        "because the storm had blocked the line for three whole days and the village had almost run out of bread.",
}


def rss_mb() -> float:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def voice_like(duration_s: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A speech-shaped test signal: a harmonic voice with a gliding pitch, syllable-rate envelope and breath noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    f0_hz = 140.0 + 30.0 * np.sin(2 * np.pi * 0.3 * t) + 10.0 * np.sin(2 * np.pi * 2.1 * t)
    phase = 2 * np.pi * np.cumsum(f0_hz) / sample_rate
    voice = np.sum([np.sin(k * phase) / k for k in range(1, 20)], axis=0)
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t), 0.0, None) ** 0.5
    signal = 0.25 * voice * envelope + 0.01 * rng.standard_normal(t.size)
    return np.asarray(0.5 * signal / np.max(np.abs(signal)), dtype=np.float32)


def write_tokenizer(path: Path) -> None:
    """A character-level tokenizer.json with EnTokenizer's special tokens, ids inside T3's 704-entry text table."""
    from tokenizers import Tokenizer, models

    specials = ["[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]
    chars = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?;:'\"-()"))
    vocab = {token: i for i, token in enumerate(specials + chars)}
    vocab["[START]"] = 255  # T3Config.start_text_token; [STOP] is 0 = stop_text_token
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.add_special_tokens(["[START]", *specials])
    tokenizer.save(str(path))


class Timed:
    """Wraps a bound method on an instance, recording each call's wall time (and optionally rewriting its result)."""

    def __init__(self, owner: Any, name: str, transform: Callable[[Any], Any] | None = None,
                 kwargs_override: Dict[str, Any] | None = None) -> None:
        self.inner = getattr(owner, name)
        self.transform = transform
        self.kwargs_override = kwargs_override or {}
        self.seconds: List[float] = []
        self.cpu_seconds: List[float] = []
        setattr(owner, name, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.update(self.kwargs_override)
        start, start_cpu = time.perf_counter(), time.process_time()
        result = self.inner(*args, **kwargs)
        self.seconds.append(time.perf_counter() - start)
        self.cpu_seconds.append(time.process_time() - start_cpu)
        return self.transform(result) if self.transform else result

    def last(self) -> float:
        return self.seconds[-1]

    def last_cpu(self) -> float:
        return self.cpu_seconds[-1]


class Clock:
    """Wall and process-CPU seconds since creation: on a shared machine the CPU seconds are the work itself."""

    def __init__(self) -> None:
        self.start, self.start_cpu = time.perf_counter(), time.process_time()

    def read(self) -> Dict[str, float]:
        return {"s": time.perf_counter() - self.start, "cpu_s": time.process_time() - self.start_cpu,
                "loadavg": os.getloadavg()[0]}


def measure_vc(tts: Any, s3_call: Timed, reference: Path, work: Path) -> Dict[str, Any]:
    """ChatterboxVC.generate on 10 s of speech-shaped input: S3 tokenizer + S3Gen + HiFT + watermark, no T3."""
    from chatterbox.models.s3gen import S3GEN_SR
    from chatterbox.vc import ChatterboxVC

    source = work / "source.wav"
    sf.write(source, voice_like(10.0, 16000, seed=1), 16000)
    vc = ChatterboxVC(tts.s3gen, "cpu")
    clock = Clock()
    vc.set_target_voice(str(reference))
    target = clock.read()
    clock = Clock()
    wav = vc.generate(str(source))
    total = clock.read()
    audio_s = wav.shape[-1] / S3GEN_SR
    result = {"input_s": 10.0, "set_target_voice_s": target["s"], "set_target_voice_cpu_s": target["cpu_s"],
              "s3gen_hift_s": s3_call.last(), "s3gen_hift_cpu_s": s3_call.last_cpu(), "total_s": total["s"],
              "total_cpu_s": total["cpu_s"], "audio_s": audio_s, "rtf_wall": total["s"] / audio_s,
              "rtf_cpu": total["cpu_s"] / audio_s, "loadavg": total["loadavg"]}
    print(json.dumps({"vc": result}), flush=True)
    return result


def turbo_config(hp: Any) -> Any:
    """ChatterboxTurboTTS.from_local's T3 hyper-parameters (the released Turbo checkpoint's shape)."""
    hp.text_tokens_dict_size = 50276
    hp.llama_config_name = "GPT2_medium"
    hp.speech_tokens_dict_size = 6563
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = 375
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False
    return hp


class CharIds:
    """Stands in for Turbo's GPT-2 tokenizer (not downloadable here): one id per character, as BatchEncoding-like."""

    class Encoded:
        def __init__(self, ids: torch.Tensor) -> None:
            self.input_ids = ids

    def __call__(self, text: str, **_: Any) -> CharIds.Encoded:
        return CharIds.Encoded(torch.tensor([[ord(c) % 50000 for c in text]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: process CPU seconds = idle one-core wall time)")
    parser.add_argument("--turbo", action="store_true",
                        help="ChatterboxTurboTTS instead: GPT-2 medium T3 without CFG, meanflow S3Gen in 2 steps (no VC)")
    parser.add_argument("--words", type=int, nargs="+", default=[5, 15, 30], choices=sorted(SENTENCES))
    parser.add_argument("--no-vc", action="store_true", help="skip the voice-conversion (S3Gen only) measurement")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report: Dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                              "loadavg_start": os.getloadavg()}
    rss_start = rss_mb()

    start = time.perf_counter()
    import perth
    from chatterbox.models.s3gen import S3GEN_SR, S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.models.tokenizers import EnTokenizer
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.tts import ChatterboxTTS
    from chatterbox.tts_turbo import ChatterboxTurboTTS
    report["import_s"] = time.perf_counter() - start
    if perth.PerthImplicitWatermarker is None:
        raise SystemExit("perth.PerthImplicitWatermarker is None: install setuptools<81 (perth needs pkg_resources)")

    work = Path(tempfile.mkdtemp(prefix="chatterbox-speed-"))
    write_tokenizer(work / "tokenizer.json")
    start = time.perf_counter()
    if args.turbo:
        args.no_vc = True
        t3 = T3(turbo_config(T3Config())).eval()
        del t3.tfmr.wte  # as ChatterboxTurboTTS.from_local: speech embeddings go in as inputs_embeds
        s3gen = S3Gen(meanflow=True).eval()
    else:
        t3, s3gen = T3().eval(), S3Gen().eval()
    ve = VoiceEncoder().eval()
    report["variant"] = "turbo" if args.turbo else "standard"
    report["build_s"] = time.perf_counter() - start
    report["params_m"] = {name: sum(p.numel() for p in module.parameters()) / 1e6
                          for name, module in (("t3", t3), ("s3gen", s3gen), ("ve", ve))}
    report["params_m"]["s3gen_flow"] = sum(p.numel() for p in s3gen.flow.parameters()) / 1e6
    report["params_m"]["s3gen_hift"] = sum(p.numel() for p in s3gen.mel2wav.parameters()) / 1e6
    report["params_m"]["s3gen_tokenizer"] = sum(p.numel() for p in s3gen.tokenizer.parameters()) / 1e6
    start = time.perf_counter()
    tts: Any
    if args.turbo:
        tts = ChatterboxTurboTTS(t3, s3gen, ve, CharIds(), "cpu")
    else:
        tts = ChatterboxTTS(t3, s3gen, ve, EnTokenizer(str(work / "tokenizer.json")), "cpu")
    report["watermarker_load_s"] = time.perf_counter() - start
    report["rss_models_mb"] = rss_mb() - rss_start

    reference = work / "reference.wav"
    sf.write(reference, voice_like(REFERENCE_S, S3GEN_SR), S3GEN_SR)
    clock = Clock()
    tts.prepare_conditionals(str(reference))
    report["conditioning"] = clock.read()
    print(json.dumps({"conditioning": report["conditioning"]}), flush=True)

    def fold(tokens: torch.Tensor) -> torch.Tensor:
        # random T3 emits special/invalid ids (>= 6561) about a fifth of the time; a trained one does not
        return torch.where(tokens >= 6561, tokens % 6561, tokens)

    generated: List[int] = []

    def count_tokens(tokens: torch.Tensor) -> torch.Tensor:
        generated.append(int(tokens.shape[-1]))
        return fold(tokens)

    t3_method, cap_kwarg = ("inference_turbo", "max_gen_len") if args.turbo else ("inference", "max_new_tokens")
    t3_call = Timed(tts.t3, t3_method, transform=count_tokens)
    s3_call = Timed(tts.s3gen, "inference")
    mark_call = Timed(tts.watermarker, "apply_watermark")

    # warm-up of T3's first call (HF generation set-up, allocator); S3Gen's first call is part of the first line
    t3_call.kwargs_override = {cap_kwarg: 2}
    clock = Clock()
    if args.turbo:
        tts.t3.inference_turbo(t3_cond=tts.conds.t3, text_tokens=torch.tensor([[10, 20, 30]]))
    else:
        tts.t3.inference(t3_cond=tts.conds.t3, text_tokens=torch.tensor([[255, 10, 20, 0], [255, 10, 20, 0]]))
    report["t3_warmup_2_tokens"] = clock.read()

    report["tts"] = []
    for words in args.words:
        if words == max(SENTENCES) and not args.no_vc:
            report["vc"] = measure_vc(tts, s3_call, reference, work)
        text = SENTENCES[words]
        cap = int(round(len(text.split()) / WORDS_PER_S * SPEECH_TOKENS_PER_S))
        t3_call.kwargs_override = {cap_kwarg: cap}
        clock = Clock()
        wav = tts.generate(text)
        total = clock.read()
        audio_s = wav.shape[-1] / S3GEN_SR
        tokens = generated[-1]
        row = {"words": len(text.split()), "token_cap": cap, "speech_tokens": tokens, "audio_s": audio_s,
               "t3_s": t3_call.last(), "t3_cpu_s": t3_call.last_cpu(), "t3_tokens_per_cpu_s": tokens / t3_call.last_cpu(),
               "s3gen_hift_s": s3_call.last(), "s3gen_hift_cpu_s": s3_call.last_cpu(),
               "watermark_s": mark_call.last(), "watermark_cpu_s": mark_call.last_cpu(),
               "total_s": total["s"], "total_cpu_s": total["cpu_s"], "rtf_wall": total["s"] / audio_s,
               "rtf_cpu": total["cpu_s"] / audio_s, "rss_mb": rss_mb(), "loadavg": total["loadavg"]}
        report["tts"].append(row)
        print(json.dumps(row), flush=True)
    if not args.no_vc and "vc" not in report:
        report["vc"] = measure_vc(tts, s3_call, reference, work)

    report["peak_rss_mb"] = peak_rss_mb()
    report["loadavg_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
