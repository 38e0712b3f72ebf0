"""so-vits-svc 4.0 / 4.1 voice conversion, through so-vits-svc-fork's own inference code; and 3.0 (its 32 kHz
and 48 kHz models) through the same model, its checkpoints mapped at load (``runtimes/adapters/sovits3.py``).

A character is a folder: exactly one ``G_*.pth`` generator checkpoint and its ``config.json`` (4.1
when ``data.contentvec_final_proj`` is present), optionally one ``kmeans*.pt`` cluster model, and
optionally ``speaker.json`` naming its speaker of a multi-speaker model (the established app's layout:
the model's files linked into many such folders). Folders whose files are the same model share one
loaded copy in the worker. The content encoder (ContentVec, a ``transformers`` HuBERT folder) is a
shared asset under ``<data>/assets/contentvec``, loaded once per worker; the optional NSF-HiFiGAN
enhancer's weights are another (``assets/nsf_hifigan``, loaded on first use). Everything loads
offline; checkpoints with ``weights_only=True``. A 3.0 character (its config: 32 or 48 kHz at hop 320) uses
hubert-soft (``assets/hubert-soft-0d54a1f4.pt``, loaded at the first 3.0 character) for content instead.
"""

from __future__ import annotations

import ast
import glob
import json
import logging
import os
import warnings
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from runtimes.adapter import Adapter, CharacterInfo, GenerateRequest, GenerateResult, ModelRef
from runtimes.adapters.checkpoint_meta import UnreadableCheckpointError, UnsafeCheckpointError, read_plain_values
from runtimes.adapters.common import asset_path, load_failure, matching, missing_asset, overlap_add
from runtimes.adapters.nsf_enhancer import ENHANCER_ASSET, ENHANCER_WEIGHTS_FILE, NsfHifiganEnhancer
from runtimes.adapters.sovits3 import HUBERT_SOFT, HUBERT_SOFT_SOURCE, SovitsV3, is_v3_config, load_hubert_soft, v3_problem, v3_unavailable
from runtimes.errors import BadRequestError
from runtimes.manifest import Asset, Detect, Manifest, Option

logger = logging.getLogger(__name__)

SAMPLE_RATE = 44100
CONTENT_ENCODER = "contentvec"
F0_METHODS = ("dio", "harvest", "crepe", "crepe-tiny", "parselmouth")
SPEECH_ENCODERS = ("vec256l9", "vec768l12")
PITCH_PREDICTOR = "f0_decoder."
NO_PITCH_PREDICTION = "the model was trained without pitch prediction"
UPSTREAM_ONLY_FEATURES = (("vol_embedding", "volume embedding"), ("use_transformer_flow", "transformer flow"),
                          ("use_depthwise_conv", "depthwise convolutions"), ("flow_share_parameter", "shared flow parameters"),
                          ("speaker_embedding", "speaker embeddings"))
ENHANCER_SOURCE = "nsf_hifigan_20221211.zip from github.com/openvpi/vocoders releases: its model and config.json, as a folder"

MANIFEST = Manifest(
    architecture="sovits",
    display_name="so-vits-svc 3.0/4.0/4.1 (voice conversion)",
    version="1",
    capabilities=("convert",),
    needs_text=False,
    needs_audio=True,
    input_sample_rate=SAMPLE_RATE,
    options=(
        Option("pitch_shift_semitones", "Pitch shift (semitones)", "int", 0, -36, 36, 1),
        Option("auto_predict_f0", "Predict voice pitch (for speech, not singing)", "bool", False),
        Option("f0_method", "Pitch (f0) method", "choice", "dio", choices=F0_METHODS),
        Option("reduce_hoarseness", "Reduce hoarseness (f0 mean pooling)", "bool", False,
               help="smooths the pitch curve over voiced frames, as so-vits-svc 4.0's f0 mean pooling"),
        Option("noise_scale", "Noise scale", "float", 0.4, 0.0, 5.0, 0.01, help="0 is allowed: the least variation"),
        Option("slice_length_s", "Slice length (s; 0 = split at pauses only)", "float", 0.0, 0.0, 20.0, 0.5,
               help="long speech without pauses is converted in slices of this length"),
        Option("cross_fade_s", "Cross-fade between slices (s)", "float", 0.0, 0.0, 20.0, 0.05, help="only with slicing"),
        Option("cluster_ratio", "Character likeness (cluster ratio)", "float", 0.0, 0.0, 1.0, 0.01,
               help="needs the character's kmeans*.pt cluster model"),
        Option("speaker", "Speaker (multi-speaker models; empty = the first)", "text", ""),
        Option("silence_threshold_db", "Pause threshold (dB)", "float", -40.0, -100.0, 0.0, 1.0,
               help="quieter than this counts as a pause between phrases"),
        Option("nsf_hifigan_enhance", "Apply the NSF-HiFiGAN enhancer", "bool", False,
               help="sings the result again with openvpi's NSF-HiFiGAN vocoder: clearer for models trained on little data, "
                    "can dull well-trained ones (needs assets/nsf_hifigan)"),
        Option("enhancer_adaptive_key", "Enhancer adaptive key (semitones)", "int", 0, -12, 12, 1,
               help="for voices above the enhancer's range: it hears the take this many semitones lower"),
    ),
    assets=(Asset(CONTENT_ENCODER, "content encoder (ContentVec)",
                  "Hugging Face lengyue233/content-vec-best (config.json + weights) as a folder", hay_say_dependency=True),
            Asset(ENHANCER_ASSET, "NSF-HiFiGAN enhancer (openvpi vocoder)", ENHANCER_SOURCE,
                  "nsf_hifigan_enhance,enhancer_adaptive_key"),
            Asset(HUBERT_SOFT, "content encoder of so-vits-svc 3.0 characters (hubert-soft)", HUBERT_SOFT_SOURCE,
                  hay_say_dependency=True, hay_say_names=("so_vits_svc_3",))),
    detect=Detect("G_*.pth", ("config.json",)),
    hay_say_names=("so_vits_svc_4", "so_vits_svc_3"),
)


def read_config(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BadRequestError("config.json cannot be read: %s" % exc) from None
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict) or not isinstance(config.get("model"), dict):
        raise BadRequestError("config.json is not a so-vits-svc config (no data/model sections)")
    return config


def version_of(config: Dict[str, Any]) -> str:
    """so-vits-svc-fork marks its 768-wide models with data.contentvec_final_proj; upstream 4.1 names
    its content encoder in model.speech_encoder; 3.0's are 32 or 48 kHz at hop 320."""
    if is_v3_config(config):
        return "3.0"
    return "4.1" if "contentvec_final_proj" in config["data"] or "speech_encoder" in config["model"] else "4.0"


def uses_final_projection(config: Dict[str, Any]) -> bool:
    """Whether the model takes ContentVec's 256-wide final projection of layer 9 (4.0, vec256l9) rather
    than its 768-wide last layer (vec768l12)."""
    if "contentvec_final_proj" in config["data"]:
        return bool(config["data"]["contentvec_final_proj"])
    return bool(config["model"].get("speech_encoder", "vec256l9") != "vec768l12")


def checkpoint_misfit(warned: List[str]) -> Tuple[str, bool]:
    """What so-vits-svc-fork's loader only warned about: weights of the model that the checkpoint lacks or
    has in another shape (the fork keeps random ones for them), in words ("" when it fits); and whether
    the checkpoint has a pitch predictor (early 4.0 models and 4.1 ones trained without it have none)."""
    missing: List[str] = []
    reshaped: List[str] = []
    for message in warned:
        if message.startswith("Keys not found in checkpoint state dict:"):
            missing += ast.literal_eval(message.split(":", 1)[1])
        elif message.startswith("Shape mismatch:"):
            reshaped += [item.split(":")[0] for item in ast.literal_eval(message.split(":", 1)[1])]
    predictor = not any(name.startswith(PITCH_PREDICTOR) for name in missing)
    missing = [name for name in missing if not name.startswith(PITCH_PREDICTOR)]  # converts; only prediction is off
    problems = ["%d weights differ in shape (%s)" % (len(reshaped), ", ".join(reshaped[:3]))] if reshaped else []
    problems += ["%d weights are missing (%s)" % (len(missing), ", ".join(missing[:3]))] if missing else []
    return "; ".join(problems), predictor


def has_pitch_predictor(checkpoint: str) -> bool:
    """Read from the checkpoint's plain values, without torch (True when they cannot be read: loading says more)."""
    try:
        weights = read_plain_values(checkpoint).get("model")
    except (UnsafeCheckpointError, UnreadableCheckpointError, AttributeError):
        return True
    return not isinstance(weights, dict) or any(name.startswith(PITCH_PREDICTOR) for name in weights)


def v3_checkpoint_problem(checkpoint: str) -> str:
    """Why a checkpoint beside a 3.0 config.json is not a 3.0 generator, read without torch ("" when it is, or
    when its values cannot be read here: loading says more)."""
    try:
        weights = read_plain_values(checkpoint).get("model")
    except (UnsafeCheckpointError, UnreadableCheckpointError, AttributeError):
        return ""
    return v3_problem(weights)


def unsupported_feature(config: Dict[str, Any]) -> str:
    """Why so-vits-svc-fork cannot run a model, from its config ("" when it can): upstream 4.1 trains
    variants whose layers the fork's SynthesizerTrn does not have (it would keep random weights for them)."""
    model = config["model"]
    encoder = model.get("speech_encoder", "vec256l9")
    if encoder not in SPEECH_ENCODERS:
        return "its speech encoder %r is not one so-vits-svc-fork runs (ContentVec vec256l9 or vec768l12)" % encoder
    vocoder = model.get("vocoder_name", "nsf-hifigan")
    if vocoder != "nsf-hifigan":
        return "its vocoder %r is not one so-vits-svc-fork runs (nsf-hifigan)" % vocoder
    used = [label for flag, label in UPSTREAM_ONLY_FEATURES if model.get(flag)]
    return "it uses %s (so-vits-svc 4.1 options), which so-vits-svc-fork cannot run" % " and ".join(used) if used else ""


def chosen_speaker(folder: str) -> str:
    """The speaker a ``speaker.json`` names (``{"speaker": "name"}`` or a JSON string), or ""."""
    path = os.path.join(folder, "speaker.json")
    if not os.path.exists(path):
        return ""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BadRequestError("speaker.json cannot be read: %s" % exc) from None
    name = data.get("speaker") if isinstance(data, dict) else data
    if not isinstance(name, str) or not name:
        raise BadRequestError('speaker.json must name a speaker: {"speaker": "<name>"}')
    return name


def speakers_of(config: Dict[str, Any]) -> List[str]:
    speakers = config.get("spk") or {}
    return [name for name, _ in sorted(speakers.items(), key=lambda item: item[1])] if isinstance(speakers, dict) else []


class SovitsAdapter(Adapter):
    manifest = MANIFEST

    def __init__(self) -> None:
        self.torch: Any = None
        self.content_encoder: Any = None
        self.device = "cpu"
        self.half = False
        """Whether models load in half precision (on a GPU; see ``half_precision_where_safe``)."""
        self.pool_f0 = False
        """Whether the job being converted asked for f0 mean pooling (one job at a time per worker)."""
        self.models: Dict[Tuple[str, ...], Dict[str, Any]] = {}
        """Loaded models by their files' real paths, with the characters using each: loaded once."""
        self.enhancer: Optional[NsfHifiganEnhancer] = None
        self.decoder_f0: Any = None
        self.hubert_soft: Any = None
        """so-vits-svc 3.0's content encoder, loaded with the first 3.0 character that converts."""
        """The pitch the model's decoder got on its last call (the enhancer sings the take on it)."""

    @staticmethod
    def describe(folder: str) -> CharacterInfo:
        checkpoints, names = matching(folder, "G_*.pth")
        others = [p for p in glob.glob(os.path.join(folder, "*.pth")) if p not in checkpoints]
        if not checkpoints:
            hint = " (%s looks like an RVC model)" % os.path.basename(others[0]) if others else ""
            return CharacterInfo(False, "no G_*.pth generator checkpoint%s" % hint)
        if len(checkpoints) > 1:
            return CharacterInfo(False, "%d generator checkpoints (%s); keep one" % (len(checkpoints), names))
        if not os.path.exists(os.path.join(folder, "config.json")):
            return CharacterInfo(False, "no config.json beside %s" % os.path.basename(checkpoints[0]))
        try:
            config = read_config(os.path.join(folder, "config.json"))
        except BadRequestError as exc:
            return CharacterInfo(False, exc.message)
        unsupported = unsupported_feature(config)
        if unsupported:
            return CharacterInfo(False, unsupported)
        clusters, cluster_names = matching(folder, "kmeans*.pt")
        if len(clusters) > 1:
            return CharacterInfo(False, "%d cluster models (%s); keep one" % (len(clusters), cluster_names))
        speakers = speakers_of(config)
        try:
            speaker = chosen_speaker(folder)
        except BadRequestError as exc:
            return CharacterInfo(False, exc.message)
        if speaker and speaker not in speakers:
            return CharacterInfo(False, "speaker.json names %r, which the model does not have (%s)" % (speaker, ", ".join(speakers)))
        v3 = is_v3_config(config)
        if v3:
            problem = v3_checkpoint_problem(checkpoints[0])
            if problem:
                return CharacterInfo(False, "%s: %s" % (os.path.basename(checkpoints[0]), problem))
        extras = ("cluster model",) if clusters and not v3 else ()
        unavailable = {} if clusters else {"cluster_ratio": "this character has no kmeans*.pt cluster model"}
        if speaker or len(speakers) < 2:
            unavailable["speaker"] = "speaker.json picks the speaker" if speaker else "the model has one speaker"
        if v3:
            unavailable.update(v3_unavailable())
        elif config["model"].get("use_automatic_f0_prediction") is False or not has_pitch_predictor(checkpoints[0]):
            unavailable["auto_predict_f0"] = NO_PITCH_PREDICTION
        decoder = config["model"].get("type_", "hifi-gan")
        if decoder != "hifi-gan":
            unavailable.update({name: "the model's %s decoder takes no pitch, which the enhancer needs" % decoder
                                for name in ("nsf_hifigan_enhance", "enhancer_adaptive_key")})
        if speaker:  # one speaker of a shared multi-speaker model
            return CharacterInfo(True, "", version_of(config), [speaker], (*extras, "speaker of a shared model"), unavailable)
        return CharacterInfo(True, "", version_of(config), speakers, extras, unavailable)

    def load_shared(self, device: str) -> None:
        import torch
        from so_vits_svc_fork import utils

        self.torch = torch
        self.device = device
        self.half = device != "cpu"
        allow_numpy_arrays(torch)
        folder = asset_path(CONTENT_ENCODER)
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise missing_asset("so-vits-svc", "content encoder", CONTENT_ENCODER,
                                "ContentVec (the Hugging Face folder lengyue233/content-vec-best: config.json and its weights)")
        self.report_progress(None, "loading the content encoder")
        model = utils.HubertModelWithFinalProj.from_pretrained(folder, local_files_only=True)
        for module in model.modules():
            utils.remove_weight_norm_if_exists(module)
        self.content_encoder = model.to(device).eval()
        # Svc asks for the encoder by its hub name for every character: hand it the one loaded here.
        utils.get_hubert_model = lambda *args, **kwargs: self.content_encoder
        self._pool_pitch_on_request()

    def _pool_pitch_on_request(self) -> None:
        """so-vits-svc-fork dropped 4.0's f0 mean pooling; its inference reads the pitch through
        ``so_vits_svc_fork.f0.compute_f0``, so the pooling wraps that, on for the jobs that ask."""
        from so_vits_svc_fork import f0 as f0_module

        compute = f0_module.compute_f0

        def compute_then_pool(*args: Any, **kwargs: Any) -> Any:
            f0 = compute(*args, **kwargs)
            if not self.pool_f0:
                return f0
            pooled = mean_pool_f0(np.asarray(f0))
            logger.info("so-vits-svc: f0 mean pooling on %d frames, roughness %.2f -> %.2f Hz", pooled.size,
                        roughness_hz(np.asarray(f0)), roughness_hz(pooled))
            return pooled

        f0_module.compute_f0 = compute_then_pool

    def load(self, model: ModelRef) -> Dict[str, Any]:
        from so_vits_svc_fork.inference.core import Svc

        if model.path is None:
            raise BadRequestError("so-vits-svc has no character %r: its characters are folders, under the data folder's "
                                  "characters/sovits/" % model.character)
        info = self.describe(model.path)
        if not info.usable:
            raise BadRequestError("%s: %s" % (os.path.basename(model.path), info.problem))
        checkpoint = glob.glob(os.path.join(model.path, "G_*.pth"))[0]
        clusters = glob.glob(os.path.join(model.path, "kmeans*.pt"))
        config_path = os.path.join(model.path, "config.json")
        files = tuple(os.path.realpath(p) for p in [checkpoint, config_path, *clusters])
        shared = files in self.models
        if not shared:
            config = read_config(config_path)
            if info.version == "3.0":
                svc, predicts_pitch = self._load_v3(checkpoint, config_path), False
            else:
                try:
                    with warnings.catch_warnings(record=True) as said:
                        warnings.simplefilter("always")
                        svc = Svc(net_g_path=checkpoint, config_path=config_path, device=self.device,
                                  cluster_model_path=clusters[0] if clusters else None, half=self.half)
                except Exception as exc:  # foreign code: translate once, naming the file
                    raise BadRequestError(load_failure(os.path.basename(checkpoint), exc)) from exc
                misfit, predicts_pitch = checkpoint_misfit([str(w.message) for w in said])
                if misfit:
                    raise BadRequestError("%s does not match its config.json: %s" % (os.path.basename(checkpoint), misfit))
                svc.contentvec_final_proj = uses_final_projection(config)  # the fork reads only its own marker
            if self.half:
                half_precision_where_safe(svc)
            self.models[files] = {"svc": svc, "users": set(), "predicts_pitch": predicts_pitch}
            svc.net_g.dec.register_forward_pre_hook(self._keep_decoder_f0, with_kwargs=True)
        entry = self.models[files]
        entry["users"].add(model.key)
        return {"svc": entry["svc"], "info": info, "name": os.path.basename(model.path), "files": files, "key": model.key,
                "shared": shared, "predicts_pitch": entry["predicts_pitch"]}

    def _load_v3(self, checkpoint: str, config_path: str) -> SovitsV3:
        try:
            return SovitsV3(checkpoint, config_path, self.device, self.half, self._hubert_soft, self._pool_if_asked)
        except BadRequestError:
            raise
        except Exception as exc:  # foreign code: translate once, naming the file
            raise BadRequestError(load_failure(os.path.basename(checkpoint), exc)) from exc

    def _hubert_soft(self) -> Any:
        """3.0's content encoder, loaded at the first 3.0 conversion (4.x characters never need it)."""
        if self.hubert_soft is None:
            path = asset_path(HUBERT_SOFT)
            if not os.path.isfile(path):
                raise missing_asset("so-vits-svc 3.0", "hubert-soft content encoder", HUBERT_SOFT, HUBERT_SOFT_SOURCE)
            self.report_progress(None, "loading hubert-soft")
            self.hubert_soft = load_hubert_soft(path, self.device)
        return self.hubert_soft

    def _pool_if_asked(self, f0: np.ndarray) -> np.ndarray:
        return mean_pool_f0(f0) if self.pool_f0 else f0

    def _keep_decoder_f0(self, module: Any, args: Any, kwargs: Dict[str, Any]) -> None:
        # The decoder gets the pitch after transposition and prediction: what upstream hands its enhancer.
        self.decoder_f0 = kwargs.get("f0")

    def _enhancer(self) -> NsfHifiganEnhancer:
        if self.enhancer is None:
            folder = asset_path(ENHANCER_ASSET)
            if not os.path.isfile(os.path.join(folder, ENHANCER_WEIGHTS_FILE)):
                raise missing_asset("so-vits-svc", "NSF-HiFiGAN enhancer", ENHANCER_ASSET, ENHANCER_SOURCE)
            self.report_progress(None, "loading the NSF-HiFiGAN enhancer")
            self.enhancer = NsfHifiganEnhancer(folder, self.device)
        return self.enhancer

    def unload(self, character: Dict[str, Any]) -> None:
        entry = self.models.get(character["files"])
        if entry is not None:
            entry["users"].discard(character["key"])
            if not entry["users"]:  # the last character using this model
                del self.models[character["files"]]

    def details(self, character: Dict[str, Any]) -> Dict[str, Any]:
        info: CharacterInfo = character["info"]
        return {"version": info.version, "speakers": list(info.speakers), "sample_rate": int(character["svc"].target_sample),
                "cluster_model": hasattr(character["svc"], "cluster_model"), "shares_a_loaded_model": character["shared"],
                "half": self.half}

    def generate(self, character: Dict[str, Any], request: GenerateRequest) -> GenerateResult:
        import librosa
        from so_vits_svc_fork.inference.core import split_silence

        svc = character["svc"]
        info: CharacterInfo = character["info"]
        options = request.options
        if request.audio is None or request.audio_sample_rate is None or request.audio.size == 0:
            raise BadRequestError("so-vits-svc needs a recording to convert")
        rate = int(svc.target_sample)
        audio = np.asarray(request.audio, dtype=np.float32)
        if audio.ndim > 1:
            audio = audio.mean(axis=0)
        if request.audio_sample_rate != rate:
            audio = librosa.resample(audio, orig_sr=request.audio_sample_rate, target_sr=rate).astype(np.float32)
        if audio.size < rate // 10:
            raise BadRequestError("the recording is too short to convert (%.3f s; at least 0.1 s)" % (audio.size / rate))
        speaker = self._speaker(info, str(options.get("speaker", "")))
        ratio = float(options["cluster_ratio"])
        if ratio > 0 and not hasattr(svc, "cluster_model"):
            raise BadRequestError("character likeness needs a kmeans*.pt cluster model, which %s does not have" % character["name"])
        infer = dict(speaker=speaker, transpose=int(options["pitch_shift_semitones"]), cluster_infer_ratio=ratio,
                     auto_predict_f0=bool(options["auto_predict_f0"]), noise_scale=float(options["noise_scale"]),
                     f0_method=str(options["f0_method"]))
        if infer["auto_predict_f0"] and not character["predicts_pitch"]:
            raise BadRequestError("%s was trained without pitch prediction: turn 'Predict voice pitch' off" % character["name"])
        enhance = bool(options.get("nsf_hifigan_enhance", False))
        if enhance and "nsf_hifigan_enhance" in info.unavailable:
            raise BadRequestError("the NSF-HiFiGAN enhancer cannot be used with %s: %s" % (character["name"],
                                                                                            info.unavailable["nsf_hifigan_enhance"]))
        enhancer = self._enhancer() if enhance else None
        key = float(options.get("enhancer_adaptive_key", 0))
        self.pool_f0 = bool(options["reduce_hoarseness"])
        slice_s = float(options["slice_length_s"])
        chunks = list(split_silence(audio, top_db=-float(options["silence_threshold_db"]), frame_length=2048, hop_length=512,
                                    ref=np.max, max_chunk_length=int((slice_s or 40.0) * rate)))
        spoken = [c for c in chunks if c.is_speech]
        if not spoken or float(np.abs(audio).max()) < 1e-4:
            raise BadRequestError("no voice found in the recording: it is silent (or lower the pause threshold)")
        logger.info("so-vits-svc %s: Svc.infer(%s) on %d slice(s), f0 mean pooling %s, enhancer %s", character["name"],
                    ", ".join("%s=%r" % item for item in sorted(infer.items())), len(spoken), "on" if self.pool_f0 else "off",
                    "on (adaptive key %+g)" % key if enhancer else "off")
        out = np.zeros(audio.size, dtype=np.float32)
        fade = int(float(options["cross_fade_s"]) * rate) if slice_s > 0 else 0
        for index, chunk in enumerate(c for c in chunks if c.is_speech):
            request.check_cancelled()
            converted = self._convert(svc, audio, chunk.start, chunk.end, fade, infer, enhancer, key)
            start = max(0, chunk.start - fade)
            overlap_add(out, converted, start, fade if chunk.start > 0 else 0)
            request.report_progress((index + 1) / len(spoken), "converted slice %d of %d" % (index + 1, len(spoken)))
        return GenerateResult(audio=np.clip(out, -1.0, 1.0), sample_rate=rate)

    def _convert(self, svc: Any, audio: np.ndarray, start: int, end: int, fade: int, infer: Dict[str, Any],
                 enhancer: Optional[NsfHifiganEnhancer], key_semitones: float) -> np.ndarray:
        """Convert audio[start - fade:end], padded with half a second of silence as upstream does."""
        rate = int(svc.target_sample)
        piece = audio[max(0, start - fade):end]
        pad = np.zeros(rate // 2, dtype=np.float32)
        self.decoder_f0 = None
        tensor, _ = svc.infer(audio=np.concatenate([pad, piece, pad]), **infer)
        result = tensor.float().cpu().numpy().astype(np.float32)
        if enhancer is not None:  # upstream enhances inside each infer call, before its padding is cut
            result = self._enhance(enhancer, svc, result, key_semitones)
        cut = (result.size - piece.size) // 2
        return np.asarray(result[cut:cut + piece.size], dtype=np.float32)

    def _enhance(self, enhancer: NsfHifiganEnhancer, svc: Any, take: np.ndarray, key_semitones: float) -> np.ndarray:
        if self.decoder_f0 is None:
            raise BadRequestError("the NSF-HiFiGAN enhancer needs the pitch the model sang, and this model's decoder takes none")
        f0_hz = self.decoder_f0.float().reshape(-1).cpu().numpy().astype(np.float64)
        return enhancer.enhance(take, int(svc.target_sample), f0_hz, int(svc.hop_size), key_semitones)

    @staticmethod
    def _speaker(info: CharacterInfo, wanted: str) -> str:
        if not info.speakers:
            raise BadRequestError("the character's config.json lists no speaker (spk)")
        if not wanted:
            return str(info.speakers[0])
        if wanted not in info.speakers:
            raise BadRequestError("unknown speaker %r (this character has: %s)" % (wanted, ", ".join(info.speakers)))
        return wanted


def half_precision_where_safe(svc: Any) -> None:
    """Make a ``Svc(half=True)`` convert, and convert like float32. so-vits-svc-fork 4.2.30 only moves the
    model's weights to half precision and casts what it feeds them, and three places then meet float32 (on
    the CPU and the GPU alike): its NSF-HiFiGAN source makes the voiced mask float32 (``SineGen._f02uv``),
    so the excitation reaching the half-precision ``l_linear`` is float32 ("mat1 and mat2 must have the
    same dtype"); character likeness hands half-precision content to the cluster model (sklearn refuses
    it) and mixes float32 centres back in; pitch prediction normalises the pitch with a float32 factor.
    So here:

    - the fork prepares content and pitch in float32 (its content encoder is float32 anyway, the cluster
      model gets float32); the content turns half at the model's door, the pitch stays float32;
    - the NSF source runs in float32 (its weights too) on that pitch and hands the decoder its excitation
      in half. It sums each harmonic's phase over every output sample: fed a half-precision pitch (within
      0.05 %), the phase drifts, and a tiny test model's take correlated only 0.90 with float32's;
    - the pitch predictor runs in float32 too: a small net whose output becomes Hz through a power of ten
      (in half, the tiny test model's predicted pitch was up to 0.2 % off float32's; in float32, 0.09 %,
      from the half-precision content it reads).
    Everything else (content and prior encoders, flow, the decoder's convolutions) runs in half."""
    import torch

    half = next(svc.net_g.parameters()).dtype
    if half == torch.float32:
        return
    source = getattr(svc.net_g.dec, "m_source", None)  # the MB-iSTFT decoders have none
    if source is not None:
        source.float()
        source.register_forward_pre_hook(lambda module, args: tuple(a.float() for a in args))
        source.register_forward_hook(lambda module, args, out: tuple(o.to(half) for o in out))
    predictor = getattr(svc.net_g, "f0_decoder", None)
    if predictor is not None:
        predictor.float()
        predictor.register_forward_pre_hook(lambda module, args, kwargs: (tuple(to_dtype(a, torch.float32) for a in args),
                                                                          {k: to_dtype(v, torch.float32) for k, v in kwargs.items()}),
                                            with_kwargs=True)
    svc.dtype = torch.float32  # only get_unit_f0 reads it: what it hands the model
    infer = svc.net_g.infer

    def infer_in_half(c: Any, f0: Any, uv: Any, **kwargs: Any) -> Any:
        return infer(c.to(half), f0, uv.to(half), **kwargs)

    svc.net_g.infer = infer_in_half


def to_dtype(value: Any, dtype: Any) -> Any:
    """A floating-point tensor in ``dtype``; anything else as it is."""
    return value.to(dtype) if getattr(value, "is_floating_point", lambda: False)() else value


def allow_numpy_arrays(torch: Any) -> None:
    """Cluster models (``kmeans*.pt``) keep their centers as numpy arrays: let the weights-only loader
    rebuild plain arrays (data, no code), as torch's documentation suggests for them."""
    dtypes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    torch.serialization.add_safe_globals([np._core.multiarray._reconstruct, np.ndarray, np.dtype, *dtypes])


def mean_pool_f0(f0: np.ndarray, kernel: int = 3) -> np.ndarray:
    """Each voiced frame's pitch becomes the mean of the voiced frames around it (unvoiced frames stay 0
    and do not pull the mean down): so-vits-svc 4.0's masked mean pooling."""
    voiced = f0 > 0
    window = np.ones(kernel)
    sums = np.convolve(np.where(voiced, f0, 0.0), window, mode="same")
    counts = np.convolve(voiced.astype(np.float64), window, mode="same")
    return np.where(voiced, sums / np.maximum(counts, 1.0), 0.0).astype(f0.dtype)


def roughness_hz(f0: np.ndarray) -> float:
    """Mean frame-to-frame pitch change between voiced neighbours: what pooling lowers."""
    both = (f0[1:] > 0) & (f0[:-1] > 0)
    return float(np.abs(np.diff(f0))[both].mean()) if both.any() else 0.0
