"""F5-TTS zero-shot text to speech, through the ``f5-tts`` package's own model classes and inference functions (PyPI
1.1.22): speaks any text in the voice of a short reference recording and its transcript, with no trained character.

Its shared assets are upstream's published files under the data folder's ``assets/``: ``f5_tts_v1_base/`` (the F5-TTS v1
Base DiT, ``model_1250000.safetensors`` + ``vocab.txt`` from SWivid/F5-TTS's ``F5TTS_v1_Base/``; an optional
``config.yaml`` in upstream's config format names another DiT size, else the wheel's ``F5TTS_v1_Base.yaml``),
``vocos_mel_24khz/`` (charactr/vocos-mel-24khz: ``config.yaml`` + ``pytorch_model.bin``, read weights-only by
upstream's ``load_vocoder``) and, optionally, ``asr_whisper/`` (any Hugging Face Whisper folder) to transcribe a
reference whose transcript was not typed. Nothing is fetched: upstream's download helpers refuse.

Characters are saved voices (``runtimes.voice_folder``: ``reference.wav`` + ``voice.json``) and the builtin
"reference" (the recording sent with the request). The voice's conditioning (upstream's ``preprocess_ref_audio_text``:
the recording cut to at most 12 s at its pauses, its silent edges trimmed, and its transcript, transcribed when
empty) is kept by the recording's hash (``runtimes.conditioning``), so a voice used again skips it. Text is spoken in
upstream's chunks (``chunk_text`` with ``infer_process``'s chunk length; when streamed, upstream's streaming server's
smaller first chunks), each by ``infer_batch_process``, cross-faded as ``infer_process`` joins them. 24 kHz.
Audio is read and written with soundfile (torchaudio's file IO needs torchcodec, a CUDA build here).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import random
import sys
import tempfile
import time
import wave
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from runtimes.adapter import Adapter, CharacterInfo, GenerateRequest, GenerateResult, ModelRef, join_pieces
from runtimes.adapters.common import asset_path, load_failure, missing_asset
from runtimes.conditioning import Conditioning, ConditioningCache
from runtimes.errors import BadRequestError
from runtimes.manifest import Asset, DurationScale, Manifest, Option, Reference
from runtimes.voice_folder import REFERENCE_FILE, VOICE_FILE, VoiceRecording, content_digest, is_voice_folder, read_info, read_voice

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24000
MODEL_ASSET, VOCOS_ASSET, ASR_ASSET = "f5_tts_v1_base", "vocos_mel_24khz", "asr_whisper"
MODEL_FILES = "model_*.safetensors"
VOCOS_FILES = ("config.yaml", "pytorch_model.bin")
UPSTREAM_CONFIG = "F5TTS_v1_Base"
UPSTREAM_ASR = "openai/whisper-large-v3-turbo"
"""What upstream's ``initialize_asr_pipeline`` asks for by name; the ``asr_whisper`` asset answers it."""
REFERENCE_CHARACTER = "reference"
CLIPPED_LEVEL = 0.999
CLIPPED_SHARE = 0.01
"""A reference with more than 1% of its samples at full scale is clipped: its distortion would be cloned too."""
INFER_PROCESS_SECONDS = 22.0
STREAM_SECONDS = 25.0
"""Upstream's chunk length: bytes of text the reference speaks per second times the seconds left of ``infer_process``'s
22 (its streaming server's 25, whose first chunk it splits again at a half and a quarter of that)."""
PASSIVE_THREADS = "PASSIVE"
"""OpenMP's idle threads sleep between torch's operators instead of spinning (a busy two-core machine)."""
PREPROCESS_VERSION = "f5_tts-1.1.22-preprocess"
"""Hashed into the conditioning key: what computed it (upstream's reference processing)."""

MANIFEST = Manifest(
    architecture="f5_tts",
    display_name="F5-TTS (any voice from a short recording)",
    version="1",
    capabilities=("tts",),
    needs_text=True,
    needs_audio=False,
    zero_shot=True,
    licence="CC-BY-NC-4.0 (F5-TTS v1 Base weights): non-commercial use only; code MIT",
    options=(
        Option("reference_text", "What the reference recording says", "text", "",
               help="its transcript, word for word (empty: the saved voice's transcript, else transcribed by the speech recognizer "
                    "when assets/asr_whisper is installed). One speaker only: a recording of several voices mixes them"),
        Option("auto_transcribe", "Transcribe a reference without a transcript", "bool", True,
               help="with the speech recognizer (assets/asr_whisper); off: a reference without a typed transcript is refused"),
        Option("nfe_step", "Steps (NFE)", "int", 32, 4, 64, 1, help="flow-matching steps: more is slower and cleaner (upstream: 16 or 32)"),
        Option("cfg_strength", "Guidance strength (CFG)", "float", 2.0, 0.0, 10.0, 0.1,
               help="how strongly the text and voice steer the result; 0: no classifier-free guidance"),
        Option("sway_sampling_coef", "Sway sampling", "float", -1.0, -1.0, 1.0, 0.1,
               help="moves the steps towards the start (negative) where the speech takes shape"),
        Option("speed", "Speed (>1 faster)", "float", 1.0, 0.3, 2.0, 0.05, help="scales the length F5-TTS plans for the text"),
        Option("cross_fade_duration", "Cross-fade between chunks (s)", "float", 0.15, 0.0, 1.0, 0.01,
               help="long texts are spoken in chunks of ~20 s joined with this cross-fade"),
        Option("target_rms", "Reference loudness floor (RMS)", "float", 0.1, 0.01, 0.5, 0.01,
               help="a quieter reference is raised to this loudness for the model, and the speech lowered back"),
        Option("seed", "Seed (-1 = a new one each time)", "int", -1, -1, 2 ** 31 - 1, 1),
        Option("remove_silence", "Remove long silences", "bool", False,
               help="cuts pauses over one second out of the take (upstream's remove_silence; streamed: out of each chunk)"),
    ),
    builtin_characters={REFERENCE_CHARACTER: "Any voice: the reference recording given with the request"},
    assets=(
        Asset(MODEL_ASSET, "F5-TTS v1 Base model (DiT, 1.35 GB)",
              "https://huggingface.co/SWivid/F5-TTS/tree/main/F5TTS_v1_Base (model_1250000.safetensors, vocab.txt), as a folder"),
        Asset(VOCOS_ASSET, "Vocos mel vocoder, 24 kHz (54 MB)",
              "https://huggingface.co/charactr/vocos-mel-24khz (config.yaml, pytorch_model.bin), as a folder"),
        Asset(ASR_ASSET, "Whisper speech recognizer (transcribes a reference; any Hugging Face Whisper folder)",
              "https://huggingface.co/openai/whisper-base (config.json, generation_config.json, model.safetensors, "
              "preprocessor_config.json, tokenizer.json, tokenizer_config.json, ...), as a folder", needed_for="auto_transcribe"),
    ),
    duration_scale=DurationScale("speed", inverse=True),
    reference=Reference(required=False, min_s=2.0, max_s=30.0,
                        label="Reference recording (the voice to speak in: 2-30 s of one speaker; F5-TTS keeps up to 12 s)"),
)


def clipped_share(audio: np.ndarray) -> float:
    samples = np.abs(np.asarray(audio, dtype=np.float32).reshape(-1))
    return float(np.mean(samples >= CLIPPED_LEVEL)) if samples.size else 0.0


def mono(audio: np.ndarray) -> np.ndarray:
    """(samples,) or (samples, channels) as mono float32."""
    audio = np.asarray(audio, dtype=np.float32)
    return audio.mean(axis=1) if audio.ndim == 2 else audio.reshape(-1)


def folder_fingerprint(folder: str) -> str:
    """Names, sizes and change times of a folder's files: what changes when another model is put there."""
    digest = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
        if os.path.isfile(path):
            stat = os.stat(path)
            digest.update(("%s|%d|%d;" % (os.path.relpath(path, folder), stat.st_size, stat.st_mtime_ns)).encode())
    return digest.hexdigest()


class CrossFader:
    """Joins upstream's chunks as ``infer_process`` does (the last ``fade`` samples of one and the first of the next
    overlap, one fading out linearly as the other fades in), piece by piece: each chunk's tail is held back until the
    next arrives, so the pieces joined are ``infer_process``'s whole take."""

    def __init__(self, fade_samples: int) -> None:
        self.fade_samples = fade_samples
        self.tail = np.zeros(0, dtype=np.float64)

    def add(self, spoken: np.ndarray) -> np.ndarray:
        spoken = np.asarray(spoken, dtype=np.float64).reshape(-1)
        overlap = min(self.fade_samples, self.tail.size, spoken.size)
        if overlap:
            faded = self.tail[-overlap:] * np.linspace(1.0, 0.0, overlap) + spoken[:overlap] * np.linspace(0.0, 1.0, overlap)
            joined = np.concatenate([self.tail[:-overlap], faded, spoken[overlap:]])
        else:
            joined = np.concatenate([self.tail, spoken])
        keep = min(self.fade_samples, joined.size)  # the next chunk fades into the take's last samples
        self.tail = joined[joined.size - keep:]
        return joined[:joined.size - keep].astype(np.float32)

    def finish(self) -> np.ndarray:
        tail, self.tail = self.tail, np.zeros(0, dtype=np.float64)
        return tail.astype(np.float32)


class F5TTSAdapter(Adapter):
    manifest = MANIFEST

    def __init__(self) -> None:
        self.torch: Any = None
        self.infer: Any = None
        """``f5_tts.infer.utils_infer``: upstream's inference functions."""
        self.model: Any = None
        self.vocoder: Any = None
        self.device = "cpu"
        self.seed_everything: Callable[[int], None] = lambda seed: None
        self.mel_spec_type = "vocos"
        self.conditioning = ConditioningCache(MANIFEST.architecture)
        self.asr_ready = False

    # --- a voice folder, read in the app ------------------------------------------------------------------------

    @staticmethod
    def describe(folder: str) -> CharacterInfo:
        if not is_voice_folder(folder):
            return CharacterInfo(False, "not a saved voice: it needs %s and %s (save one in the Voices panel)"
                                 % (REFERENCE_FILE, VOICE_FILE))
        try:
            info = read_info(folder)
            with wave.open(os.path.join(folder, REFERENCE_FILE), "rb") as handle:
                seconds = handle.getnframes() / float(handle.getframerate() or 1)
        except BadRequestError as exc:
            return CharacterInfo(False, exc.message)
        except (OSError, wave.Error, EOFError) as exc:
            return CharacterInfo(False, "%s cannot be read as a WAV file: %s" % (REFERENCE_FILE, exc))
        reference = MANIFEST.reference
        assert reference is not None
        problem = reference.problem(seconds, 1.0)
        if problem:
            return CharacterInfo(False, problem)
        transcript = str(info.get("transcript") or "").strip()
        extras = ["%.1f s recording" % seconds,
                  "transcript" if transcript else "no transcript (transcribed by the speech recognizer, or type it)"]
        return CharacterInfo(True, "", "", (), extras)

    # --- loading ---------------------------------------------------------------------------------------------------

    def load_shared(self, device: str) -> None:
        if "torch" not in sys.modules:  # read once, when torch's OpenMP starts
            os.environ.setdefault("OMP_WAIT_POLICY", PASSIVE_THREADS)
        import torch

        self.torch, self.device = torch, device
        checkpoint, config_path = self._model_files()
        vocos_folder = asset_path(VOCOS_ASSET)
        if not all(os.path.isfile(os.path.join(vocos_folder, name)) for name in VOCOS_FILES):
            raise missing_asset("F5-TTS", "Vocos vocoder", VOCOS_ASSET, "charactr/vocos-mel-24khz's %s" % " and ".join(VOCOS_FILES))
        self.report_progress(None, "importing F5-TTS")
        with contextlib.redirect_stdout(sys.stderr):  # upstream prints as it goes: the worker's log
            import f5_tts.infer.utils_infer as infer
            from f5_tts.model.utils import seed_everything
            from hydra.utils import get_class
            from omegaconf import OmegaConf
        self.infer, self.seed_everything = infer, seed_everything
        infer.hf_hub_download = self._no_download
        infer.pipeline = self._local_asr_pipeline
        transcribe = infer.transcribe
        # upstream hands the recognizer a file path, which transformers decodes with the ffmpeg program: hand it the samples
        infer.transcribe = lambda ref_audio, language=None: transcribe(self._samples_of(ref_audio), language)
        if device.startswith("cuda") and ":" in device:
            torch.cuda.set_device(device)
        config = OmegaConf.load(config_path)
        vocab = os.path.join(os.path.dirname(checkpoint), "vocab.txt")
        self.report_progress(None, "loading the F5-TTS model and the Vocos vocoder")
        loading = os.path.basename(checkpoint)
        try:
            model_class = get_class("f5_tts.model.%s" % config.model.backbone)
            with contextlib.redirect_stdout(sys.stderr):
                self.model = infer.load_model(model_class, OmegaConf.to_container(config.model.arch, resolve=True), checkpoint,
                                              mel_spec_type=str(config.model.mel_spec.mel_spec_type),
                                              vocab_file=vocab if os.path.isfile(vocab) else "", device=device)
                loading = "%s/%s" % (VOCOS_ASSET, VOCOS_FILES[1])
                self.vocoder = infer.load_vocoder("vocos", is_local=True, local_path=vocos_folder, device=device)
        except BadRequestError:
            raise
        except Exception as exc:  # foreign code: translate once, naming the file it was reading
            raise BadRequestError(load_failure(loading, exc)) from exc
        self.mel_spec_type = str(config.model.mel_spec.mel_spec_type)

    @staticmethod
    def _model_files() -> Tuple[str, str]:
        """The DiT's checkpoint and the config that sizes it (the asset's own ``config.yaml``, else upstream's v1 Base)."""
        folder = asset_path(MODEL_ASSET)
        checkpoints = sorted(glob.glob(os.path.join(folder, MODEL_FILES)))
        if not checkpoints:
            raise missing_asset("F5-TTS", "v1 Base model", MODEL_ASSET,
                                "SWivid/F5-TTS's F5TTS_v1_Base/model_1250000.safetensors and vocab.txt")
        if len(checkpoints) > 1:
            raise BadRequestError("assets/%s holds %d checkpoints (%s); keep one" % (
                MODEL_ASSET, len(checkpoints), ", ".join(os.path.basename(p) for p in checkpoints)))
        own = os.path.join(folder, "config.yaml")
        if os.path.isfile(own):
            return checkpoints[0], own
        from importlib.resources import files

        return checkpoints[0], str(files("f5_tts").joinpath("configs/%s.yaml" % UPSTREAM_CONFIG))

    @staticmethod
    def _no_download(repo_id: str = "", filename: str = "", **kwargs: Any) -> str:
        raise BadRequestError("F5-TTS asked to download %s from %s; nothing is downloaded here: put it in the data folder's assets/"
                              % (filename, repo_id))

    def _local_asr_pipeline(self, task: str, model: str = "", **kwargs: Any) -> Any:
        """Upstream's ``pipeline(...)`` for its recognizer, answered with the ``asr_whisper`` asset."""
        from transformers import pipeline

        if model != UPSTREAM_ASR:
            raise BadRequestError("F5-TTS asked for the model %s; nothing is downloaded here" % model)
        folder = asset_path(ASR_ASSET)
        if "torch_dtype" in kwargs:  # upstream's name for it; transformers 5 calls it dtype
            kwargs["dtype"] = kwargs.pop("torch_dtype")
        return pipeline(task, model=folder, **kwargs)

    @staticmethod
    def _samples_of(path: Any) -> Any:
        import soundfile

        if not isinstance(path, str):
            return path
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
        return {"raw": audio.mean(axis=1), "sampling_rate": int(rate)}

    def load(self, model: ModelRef) -> Dict[str, Any]:
        if model.path is None:
            if model.character != REFERENCE_CHARACTER:
                raise BadRequestError("F5-TTS has no character %r: speak as %r with a reference recording, or as a saved voice"
                                      % (model.character, REFERENCE_CHARACTER))
            return {"name": REFERENCE_CHARACTER, "voice": None}
        if not is_voice_folder(model.path):
            raise BadRequestError("%s is not a saved voice: it needs %s and %s"
                                  % (os.path.basename(model.path), REFERENCE_FILE, VOICE_FILE))
        voice = read_voice(model.path)
        self._check_reference(voice.audio, voice.sample_rate, "the saved voice %s" % os.path.basename(model.path))
        return {"name": os.path.basename(model.path), "voice": voice, "file": os.path.join(model.path, REFERENCE_FILE)}

    def details(self, character: Dict[str, Any]) -> Dict[str, Any]:
        voice: Optional[VoiceRecording] = character["voice"]
        found: Dict[str, Any] = {"sample_rate": SAMPLE_RATE, "licence": MANIFEST.licence}
        if voice is not None:
            found.update(reference_s=round(voice.audio.size / voice.sample_rate, 2), transcript=voice.transcript,
                         voice_name=str(voice.info.get("name") or character["name"]))
        return found

    # --- the reference and its conditioning -----------------------------------------------------------------------

    @staticmethod
    def _check_reference(audio: np.ndarray, rate: int, what: str) -> None:
        reference = MANIFEST.reference
        assert reference is not None
        problem = reference.problem(audio.size / float(rate), float(np.abs(audio).max()) if audio.size else 0.0)
        if problem:
            raise BadRequestError("%s: %s" % (what, problem))
        share = clipped_share(audio)
        if share > CLIPPED_SHARE:
            raise BadRequestError("%s is clipped: %.1f%% of its samples are at full scale, and F5-TTS would copy the distortion; "
                                  "record it again less loudly" % (what, 100 * share))

    def _reference(self, character: Dict[str, Any], request: GenerateRequest) -> Tuple[np.ndarray, int, str, str, str]:
        """The recording to speak like, its rate, its transcript (may be empty), where the transcript came from, and the
        recording's file ("" for the request's recording)."""
        typed = str(request.options["reference_text"]).strip()
        if request.audio is not None and request.audio.size and request.audio_sample_rate:
            audio, rate = mono(request.audio), int(request.audio_sample_rate)
            self._check_reference(audio, rate, "the reference recording")
            return audio, rate, typed, "typed" if typed else "", ""
        voice: Optional[VoiceRecording] = character["voice"]
        if voice is None:
            raise BadRequestError("F5-TTS speaks in the voice of a reference recording: record or upload one (with what it says), "
                                  "or choose a saved voice")
        if typed:
            return voice.audio, voice.sample_rate, typed, "typed", character["file"]
        return voice.audio, voice.sample_rate, voice.transcript, "saved voice" if voice.transcript else "", character["file"]

    def _conditioning(self, audio: np.ndarray, rate: int, transcript: str, source: str, file: str,
                      request: GenerateRequest) -> Conditioning:
        transcribing = not transcript
        if transcribing:
            if not request.options["auto_transcribe"]:
                raise BadRequestError("the reference recording has no transcript: type what the recording says")
            if not os.path.isfile(os.path.join(asset_path(ASR_ASSET), "config.json")):
                raise BadRequestError("the reference recording has no transcript and no speech recognizer is installed "
                                      "(assets/%s): type what the recording says" % ASR_ASSET)
        key = hashlib.sha256(("%s|%s|%s" % (content_digest(audio, rate, transcript), PREPROCESS_VERSION,
                                            folder_fingerprint(asset_path(ASR_ASSET)) if transcribing else "")).encode()).hexdigest()
        return self.conditioning.get(key, lambda: self._preprocess(audio, rate, transcript, source, file), request.details)

    def _preprocess(self, audio: np.ndarray, rate: int, transcript: str, source: str, file: str) -> Conditioning:
        """Upstream's ``preprocess_ref_audio_text`` on the recording (a saved voice's own WAV file; the request's written as a
        16-bit WAV file, what a person uploads): at most 12 s cut at its pauses, silent edges trimmed, the transcript ending
        in a full stop (transcribed when empty)."""
        import soundfile

        infer = self.infer
        if not transcript and not self.asr_ready:
            self.report_progress(None, "loading the speech recognizer")
            with contextlib.redirect_stdout(sys.stderr):
                infer.initialize_asr_pipeline(device=self.device)
            self.asr_ready = True
        with tempfile.TemporaryDirectory(prefix="f5_tts-ref-") as folder:
            path = file or os.path.join(folder, "reference.wav")
            if not file:
                soundfile.write(path, np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16")
            infer._ref_audio_cache.clear()  # upstream's own caches by file hash point at temporary files: ours replaces them
            infer._ref_text_cache.clear()
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    processed_path, text = infer.preprocess_ref_audio_text(path, transcript, show_info=logger.info)
                processed, processed_rate = soundfile.read(processed_path, dtype="float32", always_2d=True)
            finally:
                for made in infer._ref_audio_cache.values():
                    with contextlib.suppress(OSError):
                        os.unlink(made)
                infer._ref_audio_cache.clear()
                infer._ref_text_cache.clear()
        if not text.strip(" ."):
            raise BadRequestError("the speech recognizer heard no words in the reference recording: type what the recording says")
        voiced = processed.T  # (channels, samples), as torchaudio.load gives it to upstream
        if voiced.shape[-1] < 0.5 * processed_rate:
            raise BadRequestError("the reference recording has %.1f s of voice once its silences are cut; F5-TTS needs more"
                                  % (voiced.shape[-1] / processed_rate))
        return {"audio": np.ascontiguousarray(voiced, dtype=np.float32), "sample_rate": np.array(processed_rate),
                "transcript": np.array(text), "transcript_from": np.array(source or "speech recognizer")}

    # --- speaking --------------------------------------------------------------------------------------------------

    def text_chunks(self, text: str, reference_s: float, transcript: str, speed: float, streaming: bool) -> List[str]:
        """Upstream's chunks: ``infer_process``'s (``chunk_text`` at the reference's bytes per second times the seconds it
        leaves), or, streamed, its streaming server's (the first chunk split again at a half and a quarter of its length)."""
        chunk_text = self.infer.chunk_text
        per_second = len(transcript.encode("utf-8")) / reference_s
        if not streaming:
            return [chunk for chunk in chunk_text(text, max_chars=int(per_second * (INFER_PROCESS_SECONDS - reference_s) * speed)) if chunk]
        longest = per_second * (STREAM_SECONDS - reference_s)
        chunks = chunk_text(text, max_chars=int(longest))
        for share in (2, 4):
            if chunks:
                chunks = chunk_text(chunks[0], max_chars=int(longest / share)) + chunks[1:]
        return [chunk for chunk in chunks if chunk]

    def generate(self, character: Dict[str, Any], request: GenerateRequest) -> GenerateResult:
        """The chunks joined; long silences removed from the whole take, as upstream's API does (``export_wav``)."""
        take = join_pieces(list(self._spoken(character, request, silences_per_chunk=False)))
        if request.options["remove_silence"]:
            take = GenerateResult(audio=self._without_long_silences(take.audio), sample_rate=SAMPLE_RATE)
        return take

    def stream(self, character: Dict[str, Any], request: GenerateRequest) -> Iterator[GenerateResult]:
        """Chunk by chunk as they are made; long silences are removed from each chunk (the take is not whole yet)."""
        return self._spoken(character, request, silences_per_chunk=True)

    def _spoken(self, character: Dict[str, Any], request: GenerateRequest, silences_per_chunk: bool) -> Iterator[GenerateResult]:
        torch, infer = self.torch, self.infer
        text = request.text.strip()
        if not text:
            raise BadRequestError("F5-TTS needs text to speak")
        options = request.options
        audio, rate, transcript, source, file = self._reference(character, request)
        started = time.perf_counter()
        conditioning = self._conditioning(audio, rate, transcript, source, file, request)
        request.details["conditioning_s"] = round(time.perf_counter() - started, 4)
        reference = torch.from_numpy(conditioning["audio"])
        reference_rate = int(conditioning["sample_rate"])
        ref_text = str(conditioning["transcript"])
        speed = float(options["speed"])
        chunks = self.text_chunks(text, reference.shape[-1] / reference_rate, ref_text, speed, request.streaming)
        if not chunks:
            raise BadRequestError("F5-TTS found nothing to speak in the text")
        seed = int(options["seed"])
        if seed < 0:
            seed = random.randint(0, 2 ** 31 - 1)
        request.details.update(transcript=ref_text.strip(), transcript_from=str(conditioning["transcript_from"]), seed=seed,
                               chunks=len(chunks), reference_s=round(reference.shape[-1] / reference_rate, 2))
        call = {"mel_spec_type": self.mel_spec_type, "target_rms": float(options["target_rms"]),
                "cross_fade_duration": float(options["cross_fade_duration"]), "nfe_step": int(options["nfe_step"]),
                "cfg_strength": float(options["cfg_strength"]), "sway_sampling_coef": float(options["sway_sampling_coef"]),
                "speed": speed, "device": self.device}
        logger.info("F5-TTS %s: infer_batch_process(%s) for %d chunk(s); seed %d; transcript from %s", character["name"],
                    ", ".join("%s=%r" % item for item in sorted(call.items())), len(chunks), seed, request.details["transcript_from"])
        self.seed_everything(seed)
        fader = CrossFader(int(float(options["cross_fade_duration"]) * SAMPLE_RATE))
        for index, chunk in enumerate(chunks):
            request.check_cancelled()
            with contextlib.redirect_stdout(sys.stderr):
                spoken, _, _ = next(infer.infer_batch_process((reference, reference_rate), ref_text, [chunk], self.model, self.vocoder,
                                                             progress=None, **call))
            if spoken is None:
                raise BadRequestError("F5-TTS made no audio for %r" % chunk[:60])
            if options["remove_silence"] and silences_per_chunk:
                spoken = self._without_long_silences(spoken)
            piece = fader.add(spoken) if index + 1 < len(chunks) else np.concatenate([fader.add(spoken), fader.finish()])
            request.report_progress((index + 1) / len(chunks), "spoke chunk %d of %d" % (index + 1, len(chunks)))
            if piece.size:
                yield GenerateResult(audio=piece, sample_rate=SAMPLE_RATE)

    def _without_long_silences(self, spoken: np.ndarray) -> np.ndarray:
        """Upstream's ``remove_silence_for_generated_wav`` (it rewrites a WAV file, as its API writes it: 16-bit)."""
        import soundfile

        with tempfile.TemporaryDirectory(prefix="f5_tts-out-") as folder:
            path = os.path.join(folder, "take.wav")
            soundfile.write(path, np.asarray(spoken, dtype=np.float32), SAMPLE_RATE)
            self.infer.remove_silence_for_generated_wav(path)
            kept: np.ndarray = soundfile.read(path, dtype="float32")[0]
            return kept.reshape(-1)

