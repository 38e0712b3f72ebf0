"""XTTS v2 zero-shot text to speech (any voice from a few seconds of recording), through the ``coqui-tts`` package's own
``Xtts`` model and inference (PyPI 0.28.0).

The model is one shared asset, the folder of upstream's coqui/XTTS-v2 repository under the data folder's
``assets/xtts_v2/``: ``config.json``, ``model.pth`` (GPT, HiFi-GAN decoder, speaker encoder), ``vocab.json`` (the
tokenizer), and optionally ``speakers_xtts.pth`` (upstream's studio voices; not offered here). ``dvae.pth`` and
``mel_stats.pth`` are for training only and never read. ``model.pth`` loads weights-only: upstream's own fallback for
the original checkpoint (which pickles its config) would rewrite the file in place, so the adapter loads it itself.

A character is a saved voice (a folder of ``reference.wav`` + ``voice.json``, ``runtimes.voice_folder``) or the one-off
"reference": the recording given with the request (which also wins over a saved voice's). The voice's conditioning
(upstream's ``get_conditioning_latents``: the GPT's conditioning latents and the decoder's speaker embedding) is kept
by the recording's hash (``runtimes.conditioning``), so a voice used again skips it. Text is spoken sentence by sentence
(upstream's API splits with pysbd the same way); ``stream`` yields each sentence as it is made. 24 kHz. No transcript
is needed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from runtimes.adapter import Adapter, CharacterInfo, GenerateRequest, GenerateResult, ModelRef
from runtimes.adapters.common import asset_path, load_failure, missing_asset
from runtimes.conditioning import ConditioningCache
from runtimes.errors import BadRequestError
from runtimes.manifest import Asset, DurationScale, Manifest, Option, Reference
from runtimes.voice_folder import VoiceRecording, content_digest, is_voice_folder, read_voice

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24000
ASSET = "xtts_v2"
REQUIRED_FILES = ("config.json", "model.pth", "vocab.json")
UPSTREAM = "https://huggingface.co/coqui/XTTS-v2"
REFERENCE_CHARACTER = "reference"
LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "hu", "ko", "ja", "hi")
"""XTTS v2's languages (its config's ``languages``); a model whose config lacks the chosen one refuses it by name."""
CLIPPED_LEVEL = 0.999
CLIPPED_SHARE = 0.01
"""A reference with more than 1% of its samples at full scale is clipped: its distortion becomes the voice."""
MAX_TEXT_TOKENS = 400
PASSIVE_THREADS = "PASSIVE"
"""OpenMP's idle threads sleep between torch's operators instead of spinning (a busy two-core machine)."""
LICENCE = "Coqui Public Model License 1.0.0 (XTTS v2 weights): non-commercial use only; coqui-tts code MPL-2.0"

MANIFEST = Manifest(
    architecture="xtts",
    display_name="XTTS v2 (any voice from a recording)",
    version="1",
    capabilities=("tts",),
    needs_text=True,
    needs_audio=False,
    zero_shot=True,
    licence=LICENCE,
    options=(
        Option("language", "Language of the text", "choice", "en", choices=LANGUAGES,
               help="what the text is written in (the voice may be in another: XTTS speaks it in that voice)"),
        Option("temperature", "Temperature (variation)", "float", 0.75, 0.05, 2.0, 0.05,
               help="the GPT's sampling temperature: lower is steadier, higher more varied"),
        Option("top_p", "Top p", "float", 0.85, 0.05, 1.0, 0.05, help="nucleus sampling: lower gives more likely (plainer) speech"),
        Option("top_k", "Top k", "int", 50, 1, 500, 1, help="samples among this many likeliest audio tokens"),
        Option("repetition_penalty", "Repetition penalty", "float", 5.0, 1.0, 20.0, 0.5,
               help="discourages repeated audio tokens (long silences, stuck sounds)"),
        Option("length_penalty", "Length penalty", "float", 1.0, -5.0, 5.0, 0.5,
               help="upstream's beam-search length penalty; XTTS samples one beam, so it changes little"),
        Option("speed", "Speed (>1 faster)", "float", 1.0, 0.5, 2.0, 0.05,
               help="stretches the GPT's latents before the decoder (the model's own tempo)"),
        Option("split_sentences", "Speak sentence by sentence", "bool", True,
               help="each sentence generated on its own (the first heard while the rest is made), as upstream's API does"),
        Option("enable_text_splitting", "Split over-long sentences", "bool", True,
               help="upstream's own splitting of text longer than its language's limit (250 characters in English)"),
        Option("gpt_cond_len", "Seconds of the recording for the voice's manner", "int", 30, 1, 30, 1,
               help="how much of the reference the GPT's conditioning hears (upstream's gpt_cond_len)"),
        Option("max_ref_len", "Seconds of the recording for the timbre", "int", 30, 1, 30, 1,
               help="how much of the reference the speaker embedding hears (upstream's max_ref_len)"),
        Option("seed", "Seed (-1 = random)", "int", -1, -1, 2**31 - 1, 1, help="the same seed, text and voice give the same take"),
        Option("reference_text", "Transcript of the reference (not needed)", "text", "",
               help="XTTS needs no transcript; ignored"),
    ),
    builtin_characters={REFERENCE_CHARACTER: "Any voice: the reference recording given with the request"},
    assets=(Asset(ASSET, "XTTS v2 model (GPT, HiFi-GAN decoder, speaker encoder, tokenizer)",
                  "upstream's %s files config.json, model.pth, vocab.json (and speakers_xtts.pth), as a folder" % UPSTREAM),),
    duration_scale=DurationScale("speed", inverse=True),
    reference=Reference(required=False, min_s=3.0, max_s=30.0,
                        label="Reference recording (3-30 s of one person speaking; the voice to speak in)"),
)


def reference_problem(audio: np.ndarray, rate: int) -> str:
    """Why ``audio`` cannot be a reference, in words; empty when it can (length, silence, clipping)."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    reference = MANIFEST.reference
    assert reference is not None
    problem = reference.problem(audio.size / float(rate), float(np.abs(audio).max()) if audio.size else 0.0)
    if problem:
        return problem
    clipped = float(np.mean(np.abs(audio) >= CLIPPED_LEVEL))
    if clipped > CLIPPED_SHARE:
        return ("the reference recording is clipped (%.1f%% of its samples at full scale): record it again with the level lower"
                % (100.0 * clipped))
    return ""


class XttsAdapter(Adapter):
    manifest = MANIFEST

    def __init__(self) -> None:
        self.torch: Any = None
        self.model: Any = None
        self.upstream: Any = None
        """coqui-tts's ``TTS.tts.models.xtts`` module."""
        self.device = "cpu"
        self.languages: List[str] = []
        self.fingerprint = ""
        """The asset's identity (config, vocabulary, weights' size and time): hashed into each conditioning's key."""
        self.conditioning = ConditioningCache("xtts")
        self.segmenters: Dict[str, Any] = {}

    @staticmethod
    def describe(folder: str) -> CharacterInfo:
        if not is_voice_folder(folder):
            return CharacterInfo(False, "%s is not a saved voice: it needs reference.wav and voice.json" % os.path.basename(folder))
        try:
            voice = read_voice(folder)
        except BadRequestError as exc:
            return CharacterInfo(False, exc.message)
        seconds = voice.audio.size / float(voice.sample_rate)
        extras = ["%.1f s recording" % seconds, "transcript" if voice.transcript else "no transcript (XTTS needs none)"]
        problem = reference_problem(voice.audio, voice.sample_rate)
        return CharacterInfo(not problem, problem, "", (), extras)

    def load_shared(self, device: str) -> None:
        if "torch" not in sys.modules:  # read once, when torch's OpenMP starts
            os.environ.setdefault("OMP_WAIT_POLICY", PASSIVE_THREADS)
        folder = asset_path(ASSET)
        if not all(os.path.isfile(os.path.join(folder, name)) for name in REQUIRED_FILES):
            raise missing_asset("XTTS", "model", ASSET, "upstream's %s files (%s)" % (UPSTREAM, ", ".join(REQUIRED_FILES)))
        self.report_progress(None, "importing XTTS (coqui-tts)")
        import torch
        from TTS.tts.configs.xtts_config import XttsConfig
        from TTS.tts.models import xtts as upstream

        self.torch, self.upstream, self.device = torch, upstream, device
        upstream.load_audio = self._load_audio  # upstream reads references with torchaudio.load (torchcodec: not usable here)
        config = XttsConfig()
        try:
            config.load_json(os.path.join(folder, "config.json"))
        except Exception as exc:  # foreign code: a config it cannot read, in words
            raise BadRequestError("%s/config.json is not an XTTS config: %s" % (ASSET, str(exc).splitlines()[0][:300])) from None
        self.report_progress(None, "loading XTTS v2")
        model = upstream.Xtts(config)
        model._load_checkpoint = self._weights_only  # an instance attribute: upstream's load_checkpoint calls it
        try:
            model.load_checkpoint(config, checkpoint_dir=folder, eval=True)
        except BadRequestError:
            raise
        except Exception as exc:  # foreign code: translate once, naming the file
            raise BadRequestError("XTTS: " + load_failure("%s/model.pth" % ASSET, exc)) from exc
        self.model = model.to(device)
        self.languages = [str(language) for language in config.languages]
        digest = hashlib.sha256()
        for name in ("config.json", "vocab.json"):
            with open(os.path.join(folder, name), "rb") as handle:
                digest.update(handle.read())
        weights = os.stat(os.path.join(folder, "model.pth"))
        digest.update(("|%d|%d" % (weights.st_size, weights.st_mtime_ns)).encode())
        self.fingerprint = digest.hexdigest()

    def _weights_only(self, path: Any) -> Dict[str, Any]:
        """``model.pth``'s state dict, loaded weights-only and never rewritten. The original XTTS v2 checkpoint pickles its
        config (upstream's XttsConfig and its parts): those plain config classes are allowed, through upstream's own list."""
        torch = self.torch
        try:
            checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            if "XttsConfig" not in str(exc) and "XttsArgs" not in str(exc) and "XttsAudioConfig" not in str(exc):
                raise
            with self.upstream._legacy_safe_globals():
                checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
            raise BadRequestError("%s/model.pth is not an XTTS checkpoint (it has no 'model' weights)" % ASSET)
        return dict(checkpoint["model"])

    def _load_audio(self, path: str, sampling_rate: int) -> Any:
        """Upstream's ``load_audio`` with soundfile reading the file: mono, resampled by torchaudio, clipped to [-1, 1]."""
        import soundfile
        import torchaudio.functional

        torch = self.torch
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        audio = torch.from_numpy(np.ascontiguousarray(samples.T)).mean(dim=0, keepdim=True)
        if rate != sampling_rate:
            audio = torchaudio.functional.resample(audio, rate, sampling_rate)
        return audio.clip_(-1, 1)

    def load(self, model: ModelRef) -> Dict[str, Any]:
        if model.path is None:
            if model.character != REFERENCE_CHARACTER:
                raise BadRequestError("XTTS has no character %r: its characters are saved voices (folders under the data folder's "
                                      "characters/xtts/) and %r, the recording given with the request"
                                      % (model.character, REFERENCE_CHARACTER))
            return {"name": REFERENCE_CHARACTER, "voice": None}
        voice = read_voice(model.path)
        problem = reference_problem(voice.audio, voice.sample_rate)
        if problem:
            raise BadRequestError("voice %s: %s" % (os.path.basename(model.path), problem))
        return {"name": str(voice.info.get("name") or os.path.basename(model.path)), "voice": voice}

    def details(self, character: Dict[str, Any]) -> Dict[str, Any]:
        voice: Optional[VoiceRecording] = character["voice"]
        found: Dict[str, Any] = {"sample_rate": SAMPLE_RATE, "languages": list(self.languages)}
        if voice is not None:
            found.update(voice=character["name"], reference_s=round(voice.audio.size / float(voice.sample_rate), 2),
                         made_by=str(voice.info.get("made_by") or ""))
        return found

    def _reference(self, character: Dict[str, Any], request: GenerateRequest) -> Tuple[np.ndarray, int]:
        """The recording to speak like: the request's when given (it wins), else the saved voice's."""
        if request.audio is not None and request.audio.size:
            if not request.audio_sample_rate:
                raise BadRequestError("the reference recording came without its sample rate")
            audio, rate = np.asarray(request.audio, dtype=np.float32).reshape(-1), int(request.audio_sample_rate)
        elif character["voice"] is not None:
            voice: VoiceRecording = character["voice"]
            audio, rate = voice.audio, voice.sample_rate
        else:
            raise BadRequestError("XTTS speaks in the voice of a reference recording: give one with the request, or choose a saved voice")
        problem = reference_problem(audio, rate)
        if problem:
            raise BadRequestError(problem)
        return audio, rate

    def _conditioning(self, audio: np.ndarray, rate: int, request: GenerateRequest) -> Tuple[Any, Any]:
        """The voice's GPT conditioning latents and speaker embedding (tensors on this worker's device), kept by the
        recording's hash, the asset's identity and the options that change them."""
        torch, options = self.torch, request.options
        cond_len, max_ref_len = int(options["gpt_cond_len"]), int(options["max_ref_len"])
        chunk_len = min(int(self.model.config.gpt_cond_chunk_len), cond_len)
        key = hashlib.sha256(("%s|%s|%d|%d|%d" % (content_digest(audio, rate), self.fingerprint, cond_len, chunk_len, max_ref_len))
                             .encode()).hexdigest()

        def compute() -> Dict[str, np.ndarray]:
            import soundfile

            request.report_progress(0.0, "listening to the reference recording")
            with tempfile.TemporaryDirectory(prefix="xtts-ref-") as folder:
                path = os.path.join(folder, "reference.wav")
                soundfile.write(path, audio, rate, subtype="FLOAT")
                latents, speaker = self.model.get_conditioning_latents(
                    audio_path=path, max_ref_length=max_ref_len, gpt_cond_len=cond_len, gpt_cond_chunk_len=chunk_len,
                    sound_norm_refs=bool(self.model.config.sound_norm_refs))
            return {"gpt_cond_latent": latents.detach().cpu().numpy(), "speaker_embedding": speaker.detach().cpu().numpy()}

        kept = self.conditioning.get(key, compute, request.details)
        return (torch.from_numpy(kept["gpt_cond_latent"]).to(self.device),
                torch.from_numpy(kept["speaker_embedding"]).to(self.device))

    def sentences(self, text: str, language: str) -> List[str]:
        """The text's sentences, split as upstream's API splits them (pysbd in the language, English where it has none)."""
        import pysbd

        base = language.split("-")[0]
        if base not in self.segmenters:
            self.segmenters[base] = pysbd.Segmenter(language=base if base in pysbd.languages.LANGUAGE_CODES else "en", clean=True)
        return [piece.strip() for piece in self.segmenters[base].segment(text) if piece.strip()]

    def stream(self, character: Dict[str, Any], request: GenerateRequest) -> Iterator[GenerateResult]:
        options = request.options
        language = str(options["language"])
        if language not in self.languages:
            raise BadRequestError("this XTTS model does not speak %r; it speaks: %s" % (language, ", ".join(self.languages)))
        audio, rate = self._reference(character, request)
        latents, speaker = self._conditioning(audio, rate, request)
        text = request.text.strip()
        pieces = self.sentences(text, language) if options["split_sentences"] else [text]
        if not pieces:
            raise BadRequestError("the text has nothing to speak")
        seed = int(options["seed"])
        if seed >= 0:
            self.torch.manual_seed(seed)
        for index, piece in enumerate(pieces):
            request.check_cancelled()
            request.report_progress(index / len(pieces), "sentence %d of %d" % (index + 1, len(pieces)))
            yield GenerateResult(self._speak(piece, language, latents, speaker, options), SAMPLE_RATE)
        request.report_progress(1.0, "done")

    def _speak(self, text: str, language: str, latents: Any, speaker: Any, options: Dict[str, Any]) -> np.ndarray:
        try:
            out = self.model.inference(
                text, language, latents, speaker, temperature=float(options["temperature"]),
                length_penalty=float(options["length_penalty"]), repetition_penalty=float(options["repetition_penalty"]),
                top_k=int(options["top_k"]), top_p=float(options["top_p"]), speed=float(options["speed"]),
                enable_text_splitting=bool(options["enable_text_splitting"]))
        except AssertionError as exc:  # upstream asserts its text limit
            if "400 tokens" in str(exc):
                raise BadRequestError("a sentence is too long for XTTS (over %d tokens): turn on 'Split over-long sentences' or "
                                      "shorten it: %r" % (MAX_TEXT_TOKENS, text[:60])) from None
            raise
        wav = np.asarray(out["wav"], dtype=np.float32).reshape(-1)
        if not wav.size:
            raise RuntimeError("XTTS made no audio for %r" % text[:60])
        return wav
