"""StyleTTS 2 text to speech, through the ``styletts2`` package's own inference code (PyPI 0.1.6).

A character is a folder: one ``*.pth`` checkpoint (``{'net': {bert, predictor, decoder, ...}}``) and one
``*.yml`` config (``config.yml``). Its three auxiliary models are shared assets under the data folder's
``assets/`` (the upstream files, as upstream's ``Utils/`` has them): ``styletts2_asr/`` (config.yml +
epoch_00080.pth), ``styletts2_jdc/`` (bst.t7), ``styletts2_plbert/`` (config.yml + step_1000000.t7). A
character's config names them by paths on its trainer's machine; the loader reads a copy pointing at the
assets, and the package's URL lookups (its pitch extractor and PL-BERT are fetched by URL whatever the config
says) are answered from the assets, so nothing is ever downloaded. Checkpoints load weights-only.

The style (how the voice sounds, 128 acoustic + 128 prosodic values) comes from the established app's
precomputed styles of its multi-speaker models (``styletts2_styles``), a reference recording, or nothing
(single-speaker models, whose diffusion needs none). Text is spoken sentence by sentence, each sentence's
style carried over to the next by the style blend; ``stream`` yields each sentence as it is made. 24 kHz.
"""

from __future__ import annotations

import contextlib
import glob
import io
import logging
import os
import re
import sys
import tempfile
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np

import runtimes.adapters.styletts2_styles as styletts2_styles
from runtimes.adapter import Adapter, CharacterInfo, GenerateRequest, GenerateResult, ModelRef
from runtimes.adapters.common import asset_path, load_failure, missing_asset
from runtimes.errors import BadRequestError
from runtimes.manifest import Asset, Detect, DurationScale, Manifest, Option, Reference

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24000
UPSTREAM = "https://github.com/yl4579/StyleTTS2/raw/main/Utils/"
ASR_ASSET, JDC_ASSET, PLBERT_ASSET = "styletts2_asr", "styletts2_jdc", "styletts2_plbert"
ASSET_FILES = {ASR_ASSET: ("config.yml", "epoch_00080.pth"), JDC_ASSET: ("bst.t7",), PLBERT_ASSET: ("config.yml", "step_1000000.t7")}
ASSET_LABELS = {ASR_ASSET: "text aligner (ASR)", JDC_ASSET: "pitch extractor (JDC)", PLBERT_ASSET: "phoneme BERT (PL-BERT)"}
UPSTREAM_FOLDERS = {ASR_ASSET: "ASR", JDC_ASSET: "JDC", PLBERT_ASSET: "PLBERT"}
NET_PARTS = ("bert", "bert_encoder", "predictor", "decoder", "text_encoder", "predictor_encoder", "style_encoder", "diffusion")
"""What a character's checkpoint holds (``net``); inference uses them all."""
TRAINING_ONLY = ("text_aligner", "pitch_extractor", "mpd", "msd", "wd")
"""Parts upstream's loader builds that inference never calls (the aligner and pitch extractor teach the
model, the discriminators judge it): dropped after loading (56 M of 192 M parameters at the LibriTTS sizes)."""
SEGMENT_CHARS = 420
"""Upstream's longest text for one call (its PL-BERT takes 512 tokens): longer sentences are cut where
upstream's own long-text path cuts (paragraphs, lines, spaces)."""
MIN_REFERENCE_VOICE_S = 1.0
"""The style encoders' shortest input: 80 mel frames of 12.5 ms (four halvings, then a 5-wide convolution)."""
PASSIVE_THREADS = "PASSIVE"
"""OpenMP's idle threads sleep instead of spinning between torch's operators: on this busy two-core machine (load 3-4)
a tiny character's sentence took RTF 2.9-4.7 spinning, 1.1-1.5 passive (interleaved runs)."""
SOURCES = ("automatic", "precomputed style", "reference recording", "none")
TRAITS = ("Amused 1", "Angry 1", "Annoyed 1", "Anxious 1", "Confused 1", "Fear 1", "Happy 1", "Neutral 1", "Pensive 1", "Sad 1",
          "Sad 2", "Sarcastic 1", "Shouting 1", "Smug 1", "Surprised 1", "Tired 1", "Whispering 1")
"""Every trait of the shipped precomputed styles (``styletts2_styles.traits()``); each character has "Neutral 1"."""
ABBREVIATIONS = ("mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "mt", "no")
SENTENCE_END = re.compile(r"(?<=[.!?…])([\"'”’)\]]*)\s+|\n\s*\n")

MANIFEST = Manifest(
    architecture="styletts2",
    display_name="StyleTTS 2 (text to speech)",
    version="1",
    capabilities=("tts",),
    needs_text=True,
    needs_audio=False,
    options=(
        Option("style_source", "Style to speak in", "choice", "automatic", choices=SOURCES,
               help="automatic: the reference recording when one is given, else the character's precomputed style, else none. "
                    "Precomputed styles are the established app's, for its multi-speaker models; none is for single-speaker models"),
        Option("style_character", "Precomputed style: character (empty = the first)", "text", "",
               help="who the multi-speaker model speaks as (the character's speakers)"),
        Option("style_trait", "Precomputed style: trait", "choice", "Neutral 1", choices=TRAITS),
        Option("timbre_blend", "Timbre like the style's (0 = as the text suggests)", "float", 0.9, 0.0, 1.0, 0.05,
               help="how much the voice's timbre follows the reference or precomputed style; upstream's 1 - alpha"),
        Option("prosody_blend", "Prosody like the style's (0 = as the text suggests)", "float", 0.9, 0.0, 1.0, 0.05,
               help="how much intonation, stress and pace follow the reference or precomputed style; upstream's 1 - beta"),
        Option("noise", "Style noise (variation)", "float", 0.3, 0.0, 3.0, 0.05,
               help="scales the noise the style diffusion starts from: more gives more varied styles"),
        Option("diffusion_steps", "Diffusion steps", "int", 5, 2, 32, 1,
               help="good from 3; more steps give more diverse styles, slower"),
        Option("embedding_scale", "Embedding scale (expressiveness)", "float", 1.5, 0.0, 5.0, 0.1,
               help="classifier-free guidance: higher follows the text's emotion more, too high loses quality"),
        Option("split_sentences", "Split into sentences", "bool", True,
               help="speaks sentence by sentence (the first is heard while the rest is made); off: the text in as few pieces "
                    "as the model takes (420 characters)"),
        Option("style_blend", "Style blend between sentences", "float", 0.5, 0.0, 1.0, 0.05,
               help="how much of the previous sentence's style carries over to the next (0: each its own)"),
        Option("speed", "Speed (>1 faster)", "float", 1.0, 0.1, 5.0, 0.05, help="scales the predicted phoneme durations"),
    ),
    assets=tuple(
        Asset(name, "StyleTTS 2 %s" % ASSET_LABELS[name],
              "upstream's Utils/%s (%s) from github.com/yl4579/StyleTTS2, as a folder"
              % (UPSTREAM_FOLDERS[name], ", ".join(UPSTREAM + UPSTREAM_FOLDERS[name] + "/" + f for f in ASSET_FILES[name])),
              hay_say_dependency=True)
        for name in (ASR_ASSET, JDC_ASSET, PLBERT_ASSET)
    ),
    duration_scale=DurationScale("speed", inverse=True),
    detect=Detect("*.pth", ("*.yml",)),
    hay_say_names=("styletts_2",),
    reference=Reference(required=False, min_s=1.5, max_s=30.0, label="Reference recording (the voice and manner to speak in; optional)"),
)


def character_files(folder: str) -> Tuple[str, str]:
    """The folder's checkpoint and config; BadRequestError saying what is wrong otherwise."""
    checkpoints = sorted(glob.glob(os.path.join(folder, "*.pth")))
    configs = sorted(glob.glob(os.path.join(folder, "*.yml")) + glob.glob(os.path.join(folder, "*.yaml")))
    if len(checkpoints) != 1:
        found = " (%s); keep one" % ", ".join(os.path.basename(p) for p in checkpoints) if checkpoints else ""
        raise BadRequestError("a StyleTTS 2 character needs one .pth checkpoint, found %d%s" % (len(checkpoints), found))
    if len(configs) != 1:
        found = " (%s); keep one" % ", ".join(os.path.basename(p) for p in configs) if configs else ""
        raise BadRequestError("a StyleTTS 2 character needs one .yml config beside %s, found %d%s"
                              % (os.path.basename(checkpoints[0]), len(configs), found))
    return checkpoints[0], configs[0]


def config_facts(path: str) -> Dict[str, str]:
    """``multispeaker`` and the decoder ``type`` of a config, read line by line (the app has no YAML parser)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequestError("%s cannot be read: %s" % (os.path.basename(path), exc)) from None
    if not re.search(r"^model_params\s*:", text, re.MULTILINE):
        raise BadRequestError("%s is not a StyleTTS 2 config (it has no model_params)" % os.path.basename(path))
    multi = re.search(r"^\s+multispeaker\s*:\s*(\w+)", text, re.MULTILINE)
    decoder = re.search(r"^\s+type\s*:\s*['\"]?(hifigan|istftnet)", text, re.MULTILINE)
    return {"multispeaker": "true" if multi and multi.group(1).lower() == "true" else "false",
            "decoder": decoder.group(1) if decoder else "hifigan"}


def split_sentences(text: str) -> List[str]:
    """Sentences: after . ! ? … (and closing quotes or brackets) before a space, and at blank lines; not after a
    common abbreviation ("Dr. Smith") or an initial."""
    pieces: List[str] = []
    start = 0
    for match in SENTENCE_END.finditer(text):
        end = match.start() + len(match.group(1) or "")  # closing quotes stay with their sentence
        candidate = text[start:end].strip()
        last_word = candidate.rsplit(None, 1)[-1].lower().rstrip(".") if candidate else ""
        paragraph = match.group(0).count("\n") >= 2
        if not paragraph and (last_word in ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha())):
            continue
        if candidate:
            pieces.append(candidate)
        start = match.end()
    rest = text[start:].strip()
    if rest:
        pieces.append(rest)
    return pieces


class _ObservedSampler:
    """Upstream's style diffusion sampler, its starting noise scaled by the job's noise option; it notes what
    upstream's inference handed it (the tests and the log read it there)."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler
        self.noise_scale = 1.0
        self.last: Dict[str, Any] = {}

    def __call__(self, noise: Any, **kwargs: Any) -> Any:
        self.last = {"num_steps": kwargs.get("num_steps"), "embedding_scale": kwargs.get("embedding_scale"),
                     "noise_scale": self.noise_scale}
        return self.sampler(noise * self.noise_scale, **kwargs)


class StyleTTS2Adapter(Adapter):
    manifest = MANIFEST

    def __init__(self) -> None:
        self.torch: Any = None
        self.tts_module: Any = None
        self.device = "cpu"
        self.speed = 1.0
        """The running job's speed (one job at a time per worker); the duration hook reads it."""

    @staticmethod
    def describe(folder: str) -> CharacterInfo:
        try:
            checkpoint, config = character_files(folder)
            facts = config_facts(config)
        except BadRequestError as exc:
            return CharacterInfo(False, exc.message)
        multi = facts["multispeaker"] == "true"
        styles = styletts2_styles.find(folder, checkpoint)
        unavailable: Dict[str, str] = {}
        if styles is None:
            why = "the established app has no precomputed styles for this model"
            unavailable.update({"style_character": why, "style_trait": why, "style_source=precomputed style": why})
        if multi:
            unavailable["style_source=none"] = "a multi-speaker model needs a style: a precomputed one or a reference recording"
        extras = ["multi-speaker" if multi else "single-speaker", "%s decoder" % facts["decoder"]]
        if styles is not None:
            extras.append("precomputed styles")
        return CharacterInfo(True, "", "", styletts2_styles.speakers(styles) if styles else [], extras, unavailable)

    def load_shared(self, device: str) -> None:
        if "torch" not in sys.modules:  # read once, when torch's OpenMP starts
            os.environ.setdefault("OMP_WAIT_POLICY", PASSIVE_THREADS)
        import nltk
        import torch

        self.torch, self.device = torch, device
        for name, files in ASSET_FILES.items():
            if not all(os.path.isfile(asset_path(os.path.join(name, f))) for f in files):
                raise missing_asset("StyleTTS 2", ASSET_LABELS[name], name, "upstream's Utils/%s files (%s)"
                                    % (UPSTREAM_FOLDERS[name], ", ".join(files)))
        if device.startswith("cuda") and ":" in device:
            torch.cuda.set_device(device)  # upstream puts everything on 'cuda': make that this worker's device
        self.report_progress(None, "importing StyleTTS 2")
        download = nltk.download
        nltk.download = lambda *args, **kwargs: True  # upstream fetches NLTK's punkt at import; it is not used (below)
        try:
            import styletts2.tts as tts_module
        finally:
            nltk.download = download
        from nltk.tokenize import word_tokenize

        # Upstream tokenises each phonemised text with word_tokenize, which first splits sentences with NLTK's punkt
        # model (data not on PyPI). Its text is one sentence (ours are split before; gruut's phonemes carry no
        # periods, only | and ‖), so the tokenizer's one-line mode gives the same tokens without punkt.
        tts_module.word_tokenize = lambda text: word_tokenize(text, preserve_line=True)
        tts_module.cached_path = self._local_file
        self.tts_module = tts_module

    def _local_file(self, url: str) -> str:
        """Upstream's ``cached_path``: its auxiliary models' URLs answered from the assets; nothing else is fetched."""
        tts = self.tts_module
        local = {tts.ASR_CONFIG_URL: (ASR_ASSET, "config.yml"), tts.ASR_CHECKPOINT_URL: (ASR_ASSET, "epoch_00080.pth"),
                 tts.F0_CHECKPOINT_URL: (JDC_ASSET, "bst.t7"), tts.BERT_CONFIG_URL: (PLBERT_ASSET, "config.yml"),
                 tts.BERT_CHECKPOINT_URL: (PLBERT_ASSET, "step_1000000.t7")}
        if url not in local:
            raise BadRequestError("StyleTTS 2 asked to download %s; nothing is downloaded here" % url)
        return asset_path(os.path.join(*local[url]))

    def load(self, model: ModelRef) -> Dict[str, Any]:
        import yaml  # type: ignore[import-untyped, unused-ignore]

        if model.path is None:
            raise BadRequestError("StyleTTS 2 has no character %r: its characters are folders, under the data folder's "
                                  "characters/styletts2/" % model.character)
        info = self.describe(model.path)
        if not info.usable:
            raise BadRequestError("%s: %s" % (os.path.basename(model.path), info.problem))
        checkpoint, config_path = character_files(model.path)
        try:
            with open(config_path, encoding="utf-8") as handle:
                config = yaml.safe_load(handle)
        except (OSError, yaml.YAMLError) as exc:
            raise BadRequestError("%s cannot be read: %s" % (os.path.basename(config_path), str(exc).splitlines()[0])) from None
        if not isinstance(config, dict) or not isinstance(config.get("model_params"), dict):
            raise BadRequestError("%s is not a StyleTTS 2 config (it has no model_params)" % os.path.basename(config_path))
        # The config's auxiliary paths are its trainer's: point them at the assets. PL-BERT's folder branch joins
        # str / str (a TypeError), so it takes the branch that names its files, whose URL lookups _local_file answers.
        config.update(ASR_config=asset_path(os.path.join(ASR_ASSET, "config.yml")),
                      ASR_path=asset_path(os.path.join(ASR_ASSET, "epoch_00080.pth")),
                      F0_path=asset_path(os.path.join(JDC_ASSET, "bst.t7")), PLBERT_dir="")
        self.report_progress(None, "loading %s" % os.path.basename(model.path))
        with tempfile.TemporaryDirectory(prefix="styletts2-") as folder:
            local_config = os.path.join(folder, "config.yml")
            with open(local_config, "w", encoding="utf-8") as handle:
                yaml.safe_dump(config, handle)
            tts, net = self._build(checkpoint, local_config)
        self._check_fit(tts, net, os.path.basename(checkpoint), os.path.basename(config_path))
        del net
        for part in TRAINING_ONLY:
            tts.model.pop(part, None)
        tts.sampler = _ObservedSampler(tts.sampler)
        tts.model.predictor.duration_proj.register_forward_hook(self._tempo)
        styles = styletts2_styles.find(model.path, checkpoint)
        return {"tts": tts, "name": os.path.basename(model.path), "info": info, "styles": styles,
                "multispeaker": bool(config["model_params"].get("multispeaker", False)),
                "decoder": str(config["model_params"].get("decoder", {}).get("type", "hifigan"))}

    def _build(self, checkpoint: str, config_path: str) -> Tuple[Any, Dict[str, Any]]:
        """Upstream's ``StyleTTS2(...)`` on this worker's device, every torch.load in it weights-only; the
        checkpoint's ``net`` as loaded (to check it against the model)."""
        torch, tts_module = self.torch, self.tts_module
        load, available = torch.load, torch.cuda.is_available
        loaded: Dict[str, Any] = {}
        loading = [os.path.basename(checkpoint)]

        def weights_only_load(path: Any, *args: Any, **kwargs: Any) -> Any:
            loading[0] = os.path.basename(str(path))
            kwargs["weights_only"] = True
            value = load(path, *args, **kwargs)
            if os.path.abspath(str(path)) == os.path.abspath(checkpoint) and isinstance(value, dict):
                loaded["net"] = value.get("net")
            return value

        torch.load = weights_only_load
        torch.cuda.is_available = lambda: self.device.startswith("cuda")  # upstream picks 'cuda' whenever there is one
        try:
            with contextlib.redirect_stdout(_LogLines()):
                tts = tts_module.StyleTTS2(model_checkpoint_path=checkpoint, config_path=config_path)
        except BadRequestError:
            raise
        except Exception as exc:  # foreign code: translate once, naming the file it was reading
            raise BadRequestError(load_failure(loading[0], exc)) from exc
        finally:
            torch.load, torch.cuda.is_available = load, available
        net = loaded.get("net")
        if not isinstance(net, dict):
            raise BadRequestError("%s is not a StyleTTS 2 checkpoint (no 'net' weights)" % os.path.basename(checkpoint))
        return tts, net

    @staticmethod
    def _check_fit(tts: Any, net: Dict[str, Any], checkpoint: str, config: str) -> None:
        """Upstream loads a part whose names do not fit without complaint (strict=False), keeping random weights:
        refuse a checkpoint that lacks parts, or whose parts lack weights the config's model has."""
        lacking = [part for part in NET_PARTS if part not in net]
        if lacking:
            raise BadRequestError("%s is not a complete StyleTTS 2 checkpoint: it has no %s" % (checkpoint, ", ".join(lacking)))
        for part in NET_PARTS:
            names = set(net[part])
            if not all(name.startswith("module.") for name in names):
                stripped = names
            else:
                stripped = {name[len("module."):] for name in names}
            expected = {name for name in tts.model[part].state_dict() if not name.endswith("position_ids")}
            missing = sorted(expected - stripped)
            if missing:
                raise BadRequestError("%s does not match %s: its %s lacks %d weights (%s)"
                                      % (checkpoint, config, part, len(missing), ", ".join(missing[:3])))

    def _tempo(self, module: Any, args: Any, output: Any) -> Any:
        """Upstream sums the sigmoid of the duration projection's bins into frames per phoneme: hand it bins whose
        sum is that divided by the speed (the model's own tempo, not a stretch afterwards)."""
        if self.speed == 1.0:
            return None
        torch = self.torch
        frames = torch.sigmoid(output).sum(dim=-1, keepdim=True) / self.speed
        per_bin = (frames / output.shape[-1]).clamp(1e-6, 1.0 - 1e-6)
        return torch.logit(per_bin).expand_as(output).contiguous()

    def details(self, character: Dict[str, Any]) -> Dict[str, Any]:
        styles = character["styles"]
        return {"sample_rate": SAMPLE_RATE, "multispeaker": character["multispeaker"], "decoder": character["decoder"],
                "precomputed_styles": styles["name"] if styles else "", "speakers": styletts2_styles.speakers(styles) if styles else []}

    def _style(self, character: Dict[str, Any], request: GenerateRequest) -> Tuple[Any, float, float, str]:
        """The reference style (1 x 256), timbre and prosody alphas for upstream, and what it is, in words."""
        torch = self.torch
        options = request.options
        source = str(options["style_source"])
        has_reference = request.audio is not None and getattr(request.audio, "size", 0) > 0
        if source == "automatic":
            source = ("reference recording" if has_reference else "precomputed style" if character["styles"]
                      else "none" if not character["multispeaker"] else "")
            if not source:
                raise BadRequestError("%s is a multi-speaker model without precomputed styles: give a reference recording of the "
                                      "voice to speak like" % character["name"])
        alpha, beta = 1.0 - float(options["timbre_blend"]), 1.0 - float(options["prosody_blend"])
        if source == "none":
            if character["multispeaker"]:
                raise BadRequestError("%s is a multi-speaker model: it needs a style (a precomputed one or a reference recording)"
                                      % character["name"])
            return torch.zeros(1, 2 * 128, device=self.device), 1.0, 1.0, "none"
        if source == "precomputed style":
            styles = character["styles"]
            if not styles:
                raise BadRequestError("%s has no precomputed styles (the established app had them only for its multi-speaker "
                                      "models): choose a reference recording" % character["name"])
            who = str(options["style_character"]) or styletts2_styles.speakers(styles)[0]
            trait = str(options["style_trait"])
            try:
                vector = styletts2_styles.style(styles, who, trait)
            except ValueError as exc:
                raise BadRequestError(str(exc)) from None
            return torch.tensor([vector], dtype=torch.float32, device=self.device), alpha, beta, "precomputed style %s / %s" % (who, trait)
        if request.audio is None or not has_reference or not request.audio_sample_rate:
            raise BadRequestError("the style source is a reference recording, and none was given")
        return self._reference_style(character, request.audio, int(request.audio_sample_rate)), alpha, beta, "reference recording"

    def _reference_style(self, character: Dict[str, Any], audio: np.ndarray, rate: int) -> Any:
        import librosa
        import soundfile

        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        if rate != SAMPLE_RATE:
            audio = librosa.resample(audio, orig_sr=rate, target_sr=SAMPLE_RATE).astype(np.float32)
        voiced, _ = librosa.effects.trim(audio, top_db=30)  # what upstream's compute_style keeps of it
        if voiced.size < MIN_REFERENCE_VOICE_S * SAMPLE_RATE:
            raise BadRequestError("the reference recording has %.1f s of voice (silence at its ends not counted); StyleTTS 2 needs "
                                  "at least %g s" % (voiced.size / SAMPLE_RATE, MIN_REFERENCE_VOICE_S))
        with tempfile.TemporaryDirectory(prefix="styletts2-ref-") as folder:
            path = os.path.join(folder, "reference.wav")
            soundfile.write(path, audio, SAMPLE_RATE, subtype="FLOAT")
            return character["tts"].compute_style(path)

    def pieces(self, text: str, split: bool) -> List[str]:
        """What upstream is given one call at a time: sentences (or the whole text), each at most 420 characters."""
        pieces: List[str] = []
        for part in split_sentences(text) if split else [text.strip()]:
            pieces += [part] if len(part) <= SEGMENT_CHARS else [p.strip() for p in self.tts_module.segment_text(part) if p.strip()]
        return [piece for piece in pieces if re.search(r"\w", piece)]  # "..." alone has nothing to say

    def stream(self, character: Dict[str, Any], request: GenerateRequest) -> Iterator[GenerateResult]:
        torch = self.torch
        text = request.text.strip()
        if not text:
            raise BadRequestError("StyleTTS 2 needs text to speak")
        options = request.options
        pieces = self.pieces(text, bool(options["split_sentences"]))
        if not pieces:
            raise BadRequestError("StyleTTS 2 found nothing to speak in the text")
        ref_s, alpha, beta, described = self._style(character, request)
        tts = character["tts"]
        call = {"alpha": alpha, "beta": beta, "t": float(options["style_blend"]), "diffusion_steps": int(options["diffusion_steps"]),
                "embedding_scale": float(options["embedding_scale"])}
        tts.sampler.noise_scale = float(options["noise"])
        logger.info("StyleTTS 2 %s: long_inference_segment(%s) for %d piece(s); style: %s; speed %g", character["name"],
                    ", ".join("%s=%r" % item for item in sorted(call.items())), len(pieces), described, float(options["speed"]))
        previous = None
        self.speed = float(options["speed"])
        try:
            for index, piece in enumerate(pieces):
                request.check_cancelled()
                with torch.no_grad():
                    audio, previous = tts.long_inference_segment(piece, previous, ref_s, **call)
                if index == 0:
                    logger.info("StyleTTS 2 sampler got %s", ", ".join("%s=%r" % item for item in sorted(tts.sampler.last.items())))
                request.report_progress((index + 1) / len(pieces), "spoke sentence %d of %d" % (index + 1, len(pieces)))
                yield GenerateResult(audio=np.asarray(audio, dtype=np.float32).reshape(-1), sample_rate=SAMPLE_RATE)
        finally:
            self.speed = 1.0


class _LogLines(io.StringIO):
    """Upstream prints each part it loads; those lines go to the worker's log, not its output."""

    def write(self, text: str) -> int:
        if text.strip():
            logger.info("styletts2: %s", text.strip())
        return len(text)
