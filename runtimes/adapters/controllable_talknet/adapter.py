"""Controllable TalkNet text to speech through NeMo 1.8.2's own TalkNet classes (the last NeMo release with them).

A character is the folder of a community model zip: ``TalkNetSpect.nemo`` (text + durations + pitch -> mel),
``TalkNetDurs.nemo`` (text -> durations), optional ``TalkNetPitch.nemo`` (text + durations -> pitch) and
``hifiganmodel``, its own HiFi-GAN vocoder (jik876's ``{'generator': state_dict}``). A ``.nemo`` file is a tar of
``model_config.yaml`` + ``model_weights.ckpt``; NeMo's ``restore_from`` unpickles the weights, so the loader
extracts the tar itself, builds each model from its config with NeMo's class and loads the weights
weights-only. The vocoder is NeMo's HiFi-GAN ``Generator``, its sizes read from the weights' shapes and jik876's
flat resblock names mapped onto NeMo's nested ones (``resblocks.<i*kernels+j>`` -> ``resblocks.<i>.<j>``).

"Sing from a reference": with a reference recording, the output follows its timing and its pitch contour. Timing,
as upstream gets it: NVIDIA's TalkNet aligner (a CTC recogniser over TalkNet's phonemes, the shared asset
``asr_talknet_aligner.nemo``) forces the text's tokens through the recording's frames, each token's frame count its
duration (``aligner.py``); or, where chosen, the predicted durations stretched so the take lasts as long as the
recording. Pitch: read from the recording with YIN, unvoiced where it is quiet (upstream uses TensorFlow's CREPE,
not in this env). Without a reference, the pitch model predicts the pitch (a character without
``TalkNetPitch.nemo`` needs a reference). NeMo's TalkNetSpect normalises the pitch contour per utterance, so the
pitch shift is applied to the take after the vocoder (duration kept). 22050 Hz for every published TalkNet.

Every take is denoised as upstream's ``HiFiGAN.vocode`` does (option ``denoise``, on by default): the spectrum of the
vocoder's own output for a random mel, 35 times over, taken from the take's (``superres.Denoiser``).

Super-resolution (optional, off by default: its weights are a separate download, ``assets/hifisr``): the take at
32 kHz with a second HiFi-GAN's 10.5-16 kHz band added, as the established app always did (see ``superres.py``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tarfile
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from runtimes.adapter import Adapter, CharacterInfo, GenerateRequest, GenerateResult, ModelRef
from runtimes.adapters.common import asset_path, load_failure, missing_asset
from runtimes.errors import BadRequestError
from runtimes.manifest import Asset, Detect, DurationScale, Manifest, Option, Reference

logger = logging.getLogger(__name__)

SPECT, DURS, PITCH, VOCODER = "TalkNetSpect.nemo", "TalkNetDurs.nemo", "TalkNetPitch.nemo", "hifiganmodel"
NEMO_MEMBERS = ("model_config.yaml", "model_weights.ckpt")
DEFAULT_RATE, DEFAULT_HOP = 22050, 256
FOLLOWS = ("timing and pitch", "pitch only", "timing only")
TIMINGS = ("aligned to the text", "stretched")
MIN_VOICED_FRAMES = 3
"""A reference whose pitch is followed needs some voice: fewer voiced YIN frames than this is silence to it."""
F0_MIN_HZ, F0_MAX_HZ = 50.0, 1100.0
"""YIN's search range: low male speech to high singing."""
VOICED_RMS_FRACTION = 0.1
"""A frame is voiced when its loudness is at least this fraction of the recording's loudest frame (YIN itself
answers a pitch everywhere)."""
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
SR_ASSET = "hifisr"
SR_SOURCE = ("the file 'hifisr' the established Controllable TalkNet downloads (Google Drive id 14fOprFAIlCQkVRxsfInhEPG0n-xN4QOa), "
             "saved as assets/hifisr")
SR_RATE = 32000
ALIGNER_ASSET = "asr_talknet_aligner.nemo"
ALIGNER_URL = "https://api.ngc.nvidia.com/v2/models/nvidia/nemo/asr_talknet_aligner/versions/1.0.0rc1/files/qn5x5_libri_tts_phonemes.nemo"
"""NVIDIA's TalkNet aligner, as NeMo 1.8.2's ``EncDecCTCModel.list_available_models`` lists it (what upstream's
``from_pretrained("asr_talknet_aligner")`` fetches)."""
ALIGNER_SOURCE = "NVIDIA's asr_talknet_aligner from NGC (%s), saved as assets/%s" % (ALIGNER_URL, ALIGNER_ASSET)
DENOISE_STRENGTH = 35.0
"""Upstream's strength, for the character's vocoder and the super-resolution one alike (superres.Denoiser)."""
FULL_SCALE = 32768.0
"""Upstream denoises the vocoder's output at 16-bit full scale (its bias is not scaled): kept, so that the strength
means what it means there."""
"""The super-resolution vocoder's rate (upstream's config_32k): the output's rate with super-resolution."""

MANIFEST = Manifest(
    architecture="controllable_talknet",
    display_name="Controllable TalkNet (text to speech, sings from a reference)",
    version="1",
    capabilities=("tts",),
    needs_text=True,
    needs_audio=False,
    options=(
        Option("speed", "Speed (>1 faster)", "float", 1.0, 0.25, 4.0, 0.05,
               help="scales the predicted durations (the model's own tempo); with a reference whose timing is followed, the "
                    "reference sets the length"),
        Option("pitch_shift", "Pitch shift (semitones)", "int", 0, -24, 24, 1,
               help="shifts the take's pitch, keeping its length (TalkNet normalises the pitch it is given, so the shift is "
                    "applied to the audio)"),
        Option("reference_follows", "With a reference: follow its", "choice", FOLLOWS[0], choices=FOLLOWS,
               help="timing: the take lasts as long as the recording; pitch: the take's intonation (or melody) is the recording's"),
        Option("reference_timing", "With a reference: its timing", "choice", TIMINGS[0], choices=TIMINGS,
               help="aligned to the text (the established app's way): each sound of the text lasts as long as it does in the "
                    "recording, pauses included (needs assets/%s and a phoneme character); stretched: the character's own "
                    "timing, stretched to the recording's length" % ALIGNER_ASSET),
        Option("denoise", "Denoise the vocoder's output", "bool", True,
               help="the established app's denoiser on every take: the vocoder's own output for a random mel, as a noise "
                    "spectrum, taken %g times from the take's (its hiss and buzz)" % DENOISE_STRENGTH),
        Option("super_resolution", "Super-resolution (32 kHz output)", "bool", False,
               help="a second HiFi-GAN, trained at 32 kHz, adds the 10.5-16 kHz band the 22 kHz take lacks (the established app "
                    "always applied it); needs assets/%s" % SR_ASSET),
    ),
    assets=(Asset(SR_ASSET, "Controllable TalkNet's super-resolution HiFi-GAN (32 kHz)", SR_SOURCE, "super_resolution"),
            Asset(ALIGNER_ASSET, "Controllable TalkNet's reference aligner (NVIDIA's asr_talknet_aligner, a CTC recogniser of "
                  "TalkNet's phonemes)", ALIGNER_SOURCE, "reference_timing=%s" % TIMINGS[0], hay_say_dependency=True)),
    duration_scale=DurationScale("speed", inverse=True),
    detect=Detect(SPECT, (DURS, VOCODER)),
    hay_say_names=("controllable_talknet",),
    reference=Reference(required=False, min_s=0.5, max_s=60.0,
                        label="Reference recording (its pitch and timing are followed: speak or sing it; optional)"),
)


def nemo_problem(path: str) -> str:
    """Why ``path`` is not a readable ``.nemo`` file (a tar holding the config and weights); empty when it is."""
    name = os.path.basename(path)
    try:
        with tarfile.open(path, "r:*") as archive:
            names = {os.path.basename(member.name) for member in archive.getmembers() if member.isfile()}
    except (OSError, tarfile.TarError, EOFError) as exc:
        logger.debug("%s: %s", name, exc)
        return "%s is not a readable .nemo file (not a tar archive: corrupt or incomplete download?)" % name
    lacking = [member for member in NEMO_MEMBERS if member not in names]
    if lacking:
        return "%s is not a TalkNet .nemo file: it has no %s" % (name, ", ".join(lacking))
    return ""


def model_folder(folder: str) -> str:
    """Where a character's files are: the folder, or its only subfolder holding them (a zip that kept its own
    folder when unpacked in place)."""
    if os.path.isfile(os.path.join(folder, SPECT)):
        return folder
    try:
        inner = [entry.path for entry in os.scandir(folder) if entry.is_dir() and os.path.isfile(os.path.join(entry.path, SPECT))]
    except OSError:
        return folder
    return inner[0] if len(inner) == 1 else folder


def character_problem(folder: str) -> str:
    """What a character folder lacks, in words; empty when it has TalkNet's files."""
    missing = [name for name in (SPECT, DURS, VOCODER) if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        return ("a Controllable TalkNet character needs %s, %s and %s (its HiFi-GAN) in one folder; missing: %s"
                % (SPECT, DURS, VOCODER, ", ".join(missing)))
    return ""


def extract_nemo(path: str, folder: str) -> Tuple[str, str]:
    """The config and weights of a ``.nemo`` tar, extracted into ``folder`` by their base names only (nothing else
    in the archive is written, no path from it is followed)."""
    found: Dict[str, str] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive.getmembers():
                base = os.path.basename(member.name)
                if member.isfile() and base in NEMO_MEMBERS and base not in found:
                    source = archive.extractfile(member)
                    if source is None:
                        continue
                    target = os.path.join(folder, base)
                    with open(target, "wb") as handle:
                        handle.write(source.read())
                    found[base] = target
    except (OSError, tarfile.TarError, EOFError) as exc:
        logger.debug("%s: %s", path, exc)
        raise BadRequestError("%s is not a readable .nemo file (not a tar archive: corrupt or incomplete download?)"
                              % os.path.basename(path)) from None
    lacking = [member for member in NEMO_MEMBERS if member not in found]
    if lacking:
        raise BadRequestError("%s is not a TalkNet .nemo file: it has no %s" % (os.path.basename(path), ", ".join(lacking)))
    return found["model_config.yaml"], found["model_weights.ckpt"]


def stretch_durations(durations: np.ndarray, frames: int) -> np.ndarray:
    """Whole frame counts per token, in proportion to ``durations``, summing to exactly ``frames`` (cumulative rounding,
    so no token's share drifts); all-zero durations are spread evenly."""
    durations = np.clip(np.asarray(durations, dtype=np.float64), 0.0, None)
    total = durations.sum()
    if total <= 0:
        durations, total = np.ones_like(durations), float(durations.size)
    edges = np.round(np.cumsum(durations) * (frames / total)).astype(np.int64)
    return np.diff(np.concatenate([[0], edges])).astype(np.int64)


def split_sentences(text: str) -> List[str]:
    return [piece.strip() for piece in SENTENCE_END.split(text) if re.search(r"\w", piece)]


def flat_to_nested(state: Dict[str, Any], kernels: int) -> Dict[str, Any]:
    """jik876's HiFi-GAN names (``resblocks.<n>.``) as NeMo's Generator has them (``resblocks.<n//k>.<n%k>.``)."""
    nested: Dict[str, Any] = {}
    for name, value in state.items():
        match = re.match(r"resblocks\.(\d+)\.(convs.*)$", name)
        if match and not re.match(r"resblocks\.\d+\.\d+\.", name):
            index = int(match.group(1))
            name = "resblocks.%d.%d.%s" % (index // kernels, index % kernels, match.group(2))
        nested[name] = value
    return nested


def nested_to_flat(state: Dict[str, Any]) -> Dict[str, Any]:
    """NeMo's own HiFi-GAN names (``resblocks.<i>.<j>.``) as jik876's (``resblocks.<i*kernels+j>.``); others unchanged."""
    nested = {name: re.match(r"resblocks\.(\d+)\.(\d+)\.(.*)$", name) for name in state}
    kernels = 1 + max((int(m.group(2)) for m in nested.values() if m), default=-1)
    if not kernels:
        return state
    flat: Dict[str, Any] = {}
    for name, value in state.items():
        m = nested[name]
        flat["resblocks.%d.%s" % (int(m.group(1)) * kernels + int(m.group(2)), m.group(3)) if m else name] = value
    return flat


def vocoder_shape(state: Dict[str, Any]) -> Dict[str, Any]:
    """The HiFi-GAN Generator's constructor arguments, read from its weights' shapes (v1/v2 use ResBlock1 with
    dilations 1, 3, 5; v3 ResBlock2 with 1, 3)."""
    def weight(name: str) -> Any:
        return state[name + ".weight_v"] if name + ".weight_v" in state else state[name + ".weight"]

    ups = sorted({int(m.group(1)) for m in (re.match(r"ups\.(\d+)\.", k) for k in state) if m})
    blocks = sorted({int(m.group(1)) for m in (re.match(r"resblocks\.(\d+)\.", k) for k in state) if m})
    if not ups or not blocks or len(blocks) % len(ups):
        raise ValueError("not a HiFi-GAN generator (no upsampling or residual blocks)")
    kernels = len(blocks) // len(ups)
    upsample_kernels = [int(weight("ups.%d" % i).shape[-1]) for i in ups]
    resblock = 1 if any(k.startswith("resblocks.0.convs1.") for k in state) else 2
    dilations = [[1, 3, 5] if resblock == 1 else [1, 3]] * kernels
    prefix = "convs1.0" if resblock == 1 else "convs.0"
    return {"resblock": resblock, "upsample_rates": [k // 2 for k in upsample_kernels], "upsample_kernel_sizes": upsample_kernels,
            "upsample_initial_channel": int(weight("conv_pre").shape[0]), "initial_input_size": int(weight("conv_pre").shape[1]),
            "resblock_kernel_sizes": [int(weight("resblocks.%d.%s" % (j, prefix)).shape[-1]) for j in range(kernels)],
            "resblock_dilation_sizes": dilations}


class TalkNetAdapter(Adapter):
    manifest = MANIFEST

    def __init__(self) -> None:
        self.torch: Any = None
        self.device = "cpu"
        self.superres: Any = None
        self.aligner: Any = None
        """The reference aligner (``aligner.Aligner``), loaded at the first job that aligns a reference."""
        """The super-resolution vocoder, loaded at the first job that asks for it (``superres.SuperResolution``)."""

    @staticmethod
    def describe(folder: str) -> CharacterInfo:
        folder = model_folder(folder)
        problem = character_problem(folder)
        for name in (SPECT, DURS, PITCH):
            path = os.path.join(folder, name)
            if not problem and os.path.isfile(path):
                problem = nemo_problem(path)
        if problem:
            return CharacterInfo(False, problem)
        has_pitch = os.path.isfile(os.path.join(folder, PITCH))
        name = os.path.basename(folder)
        extras = ["pitch model" if has_pitch else "no pitch model (a reference recording is needed)"]
        unavailable = {} if has_pitch else {"reference_follows=timing only": "%s has no pitch model (%s): its pitch must come from "
                                                                          "the reference" % (name, PITCH)}
        return CharacterInfo(True, "", "", [], extras, unavailable)

    def load_shared(self, device: str) -> None:
        from runtimes.adapters.controllable_talknet import shims

        self.report_progress(None, "importing NeMo 1.8.2 (TalkNet)")
        shims.apply_before_import()
        import torch
        from nemo.collections.tts.models import talknet  # noqa: F401  (the import the shims are for)

        shims.apply_after_import()
        self.torch, self.device = torch, device

    def load(self, model: ModelRef) -> Dict[str, Any]:
        if model.path is None:
            raise BadRequestError("Controllable TalkNet has no character %r: its characters are folders, under the data folder's "
                                  "characters/controllable_talknet/" % model.character)
        info = self.describe(model.path)
        if not info.usable:
            raise BadRequestError("%s: %s" % (os.path.basename(model.path), info.problem))
        from nemo.collections.tts.models.talknet import TalkNetDursModel, TalkNetPitchModel, TalkNetSpectModel

        name = os.path.basename(model.path)
        files = model_folder(model.path)
        self.report_progress(None, "loading %s" % name)
        spect = self._nemo(os.path.join(files, SPECT), TalkNetSpectModel)
        durs = self._nemo(os.path.join(files, DURS), TalkNetDursModel)
        pitch_path = os.path.join(files, PITCH)
        pitch = self._nemo(pitch_path, TalkNetPitchModel) if os.path.isfile(pitch_path) else None
        vocoder, denoiser = self._vocoder(os.path.join(files, VOCODER))
        preprocessor = spect.cfg.get("preprocessor", {}) or {}
        rate = int(preprocessor.get("sample_rate", DEFAULT_RATE))
        hop = int(preprocessor.get("n_window_stride", DEFAULT_HOP))
        return {"name": name, "spect": spect, "durs": durs, "pitch": pitch, "vocoder": vocoder, "denoiser": denoiser, "rate": rate,
                "hop": hop}

    def _nemo(self, path: str, cls: Any) -> Any:
        """NeMo's ``cls`` built from the ``.nemo`` file's config, its weights loaded weights-only (strict)."""
        from omegaconf import OmegaConf

        torch = self.torch
        file_name = os.path.basename(path)
        with tempfile.TemporaryDirectory(prefix="talknet-") as folder:
            config_path, weights_path = extract_nemo(path, folder)
            try:
                config = OmegaConf.load(config_path)
            except Exception as exc:  # foreign parser: its errors are many kinds
                raise BadRequestError("%s: its model_config.yaml cannot be read: %s" % (file_name, str(exc).splitlines()[0])) from None
            target = str(config.get("target", "") or "")
            if target and not target.endswith("." + cls.__name__):
                raise BadRequestError("%s holds a %s, not a %s" % (file_name, target.rsplit(".", 1)[-1], cls.__name__))
            try:
                state = torch.load(weights_path, map_location="cpu", weights_only=True)
            except Exception as exc:  # the weights-only unpickler's refusals and torch's reader errors
                raise BadRequestError(load_failure(file_name, exc)) from None
            if not isinstance(state, dict):
                raise BadRequestError("%s is not a TalkNet .nemo file (its weights are not a state dict)" % file_name)
        cls._set_model_restore_state(is_being_restored=True)  # what restore_from does: no training data is set up
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                instance = cls(cfg=config)
            instance.load_state_dict(state, strict=True)
        except BadRequestError:
            raise
        except Exception as exc:  # foreign code: translate once, naming the file
            raise BadRequestError(load_failure(file_name, exc)) from exc
        finally:
            cls._set_model_restore_state(is_being_restored=False)
        return instance.eval().to(self.device)

    def _vocoder(self, path: str) -> Tuple[Any, Any]:
        """The character's HiFi-GAN (weight norm removed, as upstream runs it) and its denoiser (``superres.Denoiser``:
        the bias from the random mel upstream draws after building the vocoder with torch seeded)."""
        from runtimes.adapters.controllable_talknet.superres import Denoiser, seeded_generator

        torch = self.torch
        file_name = os.path.basename(path)
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise BadRequestError(load_failure(file_name, exc)) from None
        state = checkpoint.get("generator") if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise BadRequestError("%s is not a HiFi-GAN checkpoint (it has no 'generator' weights)" % file_name)
        try:
            state = nested_to_flat(state)  # a vocoder NeMo saved has its nested names
            shape = vocoder_shape(state)
            generator, noise_mel = seeded_generator(shape)
            generator.load_state_dict(flat_to_nested(state, len(shape["resblock_kernel_sizes"])), strict=True)
            with contextlib.redirect_stdout(io.StringIO()):  # NeMo prints as it removes weight norm
                generator.remove_weight_norm()
            generator = generator.eval().to(self.device)
            denoiser = Denoiser(generator, noise_mel, self.device)
        except Exception as exc:
            raise BadRequestError(load_failure(file_name, exc)) from exc
        return generator, denoiser

    def _superres(self) -> Any:
        if self.superres is None:
            from runtimes.adapters.controllable_talknet.superres import SuperResolution

            path = asset_path(SR_ASSET)
            if not os.path.isfile(path):
                raise missing_asset("Controllable TalkNet", "super-resolution HiFi-GAN", SR_ASSET, SR_SOURCE.split(", saved as")[0])
            self.report_progress(None, "loading the super-resolution HiFi-GAN")
            self.superres = SuperResolution(path, self.device)
        return self.superres

    def _aligner(self) -> Any:
        if self.aligner is None:
            from nemo.collections.asr.models import EncDecCTCModel

            from runtimes.adapters.controllable_talknet.aligner import Aligner

            path = asset_path(ALIGNER_ASSET)
            if not os.path.isfile(path):
                raise missing_asset("Controllable TalkNet", "reference aligner (for reference timing 'aligned to the text'; "
                                    "or choose 'stretched')", ALIGNER_ASSET, "NVIDIA's asr_talknet_aligner (%s)" % ALIGNER_URL)
            self.report_progress(None, "loading the reference aligner")
            self.aligner = Aligner(self._nemo(path, EncDecCTCModel), self.device)
        return self.aligner

    def details(self, character: Dict[str, Any]) -> Dict[str, Any]:
        return {"sample_rate": character["rate"], "pitch_model": character["pitch"] is not None,
                "vocabulary": str(character["spect"].cfg.train_ds.dataset.vocab.get("notation", "chars"))}

    def _tokens(self, character: Dict[str, Any], text: str) -> Tuple[List[int], Any]:
        """The text as the spect model's vocabulary encodes it: the ids, and the model's input (1 x tokens), blanks
        interleaved when it was trained with them (as NeMo's ``generate_spectrogram`` does)."""
        from nemo.collections.asr.data.audio_to_text import AudioToCharWithDursF0Dataset

        torch, spect = self.torch, character["spect"]
        encoded = spect.vocab.encode(text)
        if not encoded:
            raise BadRequestError("Controllable TalkNet found nothing it can say in %r" % text[:60])
        tokens = torch.tensor(encoded, dtype=torch.long, device=self.device)
        if spect.blanking:
            blanks = torch.full((len(encoded) + 1,), spect.vocab.blank, dtype=torch.long, device=self.device)
            tokens = AudioToCharWithDursF0Dataset.interleave(x=blanks, y=tokens)
        return [int(token) for token in encoded], tokens.unsqueeze(0)

    def _reference(self, character: Dict[str, Any], request: GenerateRequest) -> Optional[Tuple[int, np.ndarray, np.ndarray]]:
        """The reference's length in frames and its pitch per frame (0 = unvoiced), at the model's rate and hop; and the
        recording at the model's rate."""
        if request.audio is None or getattr(request.audio, "size", 0) == 0:
            return None
        import librosa

        rate, hop = character["rate"], character["hop"]
        audio = np.asarray(request.audio, dtype=np.float32)
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        if request.audio_sample_rate and int(request.audio_sample_rate) != rate:
            audio = librosa.resample(audio, orig_sr=int(request.audio_sample_rate), target_sr=rate).astype(np.float32)
        frames = int(round(audio.size / hop))
        if frames < 2 or float(np.max(np.abs(audio))) < 1e-4:
            raise BadRequestError("the reference recording is silent or too short to follow")
        f0 = librosa.yin(audio, fmin=F0_MIN_HZ, fmax=F0_MAX_HZ, sr=rate, frame_length=1024, hop_length=hop)
        rms = librosa.feature.rms(y=audio, frame_length=1024, hop_length=hop)[0]
        voiced = rms >= VOICED_RMS_FRACTION * float(rms.max())
        f0 = np.where(voiced[: f0.size], f0[: voiced.size], 0.0)
        positions = np.linspace(0, f0.size - 1, frames)
        return frames, f0[np.round(positions).astype(np.int64)].astype(np.float32), audio

    def stream(self, character: Dict[str, Any], request: GenerateRequest) -> Iterator[GenerateResult]:
        text = request.text.strip()
        if not text:
            raise BadRequestError("Controllable TalkNet needs text to speak")
        options = request.options
        reference = self._reference(character, request)
        follows = str(options["reference_follows"])
        follow_timing = reference is not None and follows in ("timing and pitch", "timing only")
        follow_pitch = reference is not None and follows in ("timing and pitch", "pitch only")
        aligned = follow_timing and str(options.get("reference_timing", TIMINGS[0])) == TIMINGS[0]
        superres = self._superres() if options.get("super_resolution", False) else None
        if aligned:
            problem = self._aligner().vocabulary_problem(character["spect"].vocab.labels, character["spect"].vocab.blank)
            if problem:
                raise BadRequestError("%s cannot follow a reference's timing aligned to the text: %s; choose reference timing "
                                      "'stretched'" % (character["name"], problem))
        if character["pitch"] is None and not follow_pitch:
            raise BadRequestError("%s has no pitch model (%s): give a reference recording whose pitch it follows"
                                  % (character["name"], PITCH))
        if follow_pitch and reference is not None and int(np.count_nonzero(reference[1])) < MIN_VOICED_FRAMES:
            raise BadRequestError("the reference recording has no voice whose pitch could be followed (it is silence or noise)")
        # A reference is followed over the whole text (its timing and melody are one); otherwise sentence by sentence.
        pieces = [text] if reference is not None else split_sentences(text) or [text]
        logger.info("TalkNet %s: %d piece(s), speed %g, pitch shift %d, reference %s, denoise %s, super-resolution %s", character["name"],
                    len(pieces), float(options["speed"]), int(options["pitch_shift"]),
                    "none" if reference is None else "%s (timing %s)" % (follows, TIMINGS[0] if aligned else "stretched"),
                    "on" if options.get("denoise", True) else "off",
                    "on (%d Hz)" % SR_RATE if superres is not None else "off")
        for index, piece in enumerate(pieces):
            request.check_cancelled()
            audio = self._speak(character, piece, float(options["speed"]), reference if follow_timing else None,
                                reference[1] if follow_pitch and reference is not None else None, bool(options.get("denoise", True)),
                                aligned)
            shift = int(options["pitch_shift"])
            if shift:
                import librosa

                audio = librosa.effects.pitch_shift(audio, sr=character["rate"], n_steps=shift).astype(np.float32)
            rate = character["rate"]
            if superres is not None:  # last, as upstream: after the vocoder and any retuning
                audio, rate = superres(audio, rate), SR_RATE
            request.report_progress((index + 1) / len(pieces), "spoke piece %d of %d" % (index + 1, len(pieces)))
            yield GenerateResult(audio=audio, sample_rate=rate)

    def _speak(self, character: Dict[str, Any], text: str, speed: float, timing: Optional[Tuple[int, np.ndarray, np.ndarray]],
               pitch: Optional[np.ndarray], denoise: bool = True, aligned: bool = False) -> np.ndarray:
        """One piece: durations (the durs model's, scaled by speed; or the reference's, aligned to the text or the
        predicted ones stretched to its length), pitch (the pitch model's or the reference's), the spect model's mel,
        the vocoder's audio."""
        torch = self.torch
        ids, tokens = self._tokens(character, text)
        text_len = torch.tensor([tokens.shape[-1]], dtype=torch.long, device=self.device)
        with torch.no_grad():
            predicted = (character["durs"](text=tokens, text_len=text_len).exp() - 1.0).clamp(min=0.0) / speed
            if timing is not None and aligned:
                durs = torch.from_numpy(self._aligned_durations(character, ids, timing)).unsqueeze(0).to(self.device)
            elif timing is not None:
                frames = timing[0]
                durs = torch.from_numpy(stretch_durations(predicted[0].cpu().numpy(), frames)).unsqueeze(0).to(self.device)
            else:
                durs = predicted.round().long()
                if int(durs.sum()) == 0:  # a model that gives every token no time: one frame each, not an empty take
                    durs = torch.ones_like(durs)
            frames = int(durs.sum())
            if pitch is not None:
                f0 = torch.from_numpy(np.interp(np.linspace(0, pitch.size - 1, frames), np.arange(pitch.size), pitch)
                                      * (np.interp(np.linspace(0, pitch.size - 1, frames), np.arange(pitch.size), pitch > 0) > 0.5)
                                      ).float().unsqueeze(0).to(self.device)
            else:
                model = character["pitch"]
                f0_sil, f0_body = model(text=tokens, text_len=text_len, durs=durs)
                f0 = ((f0_sil.sigmoid() <= 0.5) * (f0_body * model.f0_std + model.f0_mean)).float()
            mel = character["spect"](text=tokens, text_len=text_len, durs=durs, f0=f0)
        return self.vocode(character, mel, denoise)

    def _aligned_durations(self, character: Dict[str, Any], ids: List[int], timing: Tuple[int, np.ndarray, np.ndarray]) -> np.ndarray:
        """Frames per model token (blank-interleaved when the model is) from the aligner's pass over the recording;
        summing to the recording's frames at the model's hop."""
        import librosa

        from runtimes.adapters.controllable_talknet.aligner import ctc_durations, fold_blanks

        aligner = self.aligner
        frames, _, audio = timing
        if aligner.rate_hz != character["rate"]:
            audio = librosa.resample(audio, orig_sr=character["rate"], target_sr=aligner.rate_hz).astype(np.float32)
        unknown = aligner.unknown(ids)
        if unknown:
            raise BadRequestError("the reference aligner has no class for token(s) %s of this text; choose reference timing 'stretched'"
                                  % ", ".join(str(i) for i in unknown))
        durations = ctc_durations(aligner.log_probs(audio), ids, aligner.blank)
        if not character["spect"].blanking:
            durations = fold_blanks(durations)
        if abs(int(durations.sum()) - frames) > 1:  # an aligner at another frame rate: its timing onto the model's frames
            durations = stretch_durations(durations, frames)
        logger.info("TalkNet %s: durations aligned to the reference (%d frames, %d tokens): %s", character["name"], int(durations.sum()),
                    len(ids), " ".join(str(int(d)) for d in durations))
        return durations

    def vocode(self, character: Dict[str, Any], mel: Any, denoise: bool) -> np.ndarray:
        """The character's vocoder on ``mel`` (1 x bands x frames), denoised as upstream's ``HiFiGAN.vocode`` does (at 16-bit
        full scale, strength 35) unless ``denoise`` is off; floats in [-1, 1]."""
        with self.torch.no_grad():
            audio = character["vocoder"](x=mel).reshape(1, -1).float()
            if denoise:
                audio = character["denoiser"](audio * FULL_SCALE, DENOISE_STRENGTH) / FULL_SCALE
        return np.asarray(np.clip(audio.reshape(-1).cpu().numpy(), -1.0, 1.0), dtype=np.float32)

