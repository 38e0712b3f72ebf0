"""RVC v1 / v2 voice conversion, through infer-rvc-python's own inference code.

A character is a folder: exactly one ``*.pth`` model (v1 or v2, read from the checkpoint) and at
most one ``*.index`` feature index. Shared assets under ``<data>/assets/``: ``hubert`` (a
``transformers`` HuBERT folder, 768 wide, with its final projection for v1 models) and, for the
rmvpe pitch extractor, ``rmvpe.pt``. Loaded once per worker, offline; checkpoints weights-only.
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Any, Dict, Tuple

import numpy as np

from runtimes.adapter import Adapter, CharacterInfo, GenerateRequest, GenerateResult, ModelRef
from runtimes.adapters.checkpoint_meta import (
    TensorShape,
    UnreadableCheckpointError,
    UnsafeCheckpointError,
    is_legacy_torch_file,
    read_plain_values,
)
from runtimes.adapters.common import asset_path, load_failure, matching, missing_asset, overlap_add, slices
from runtimes.errors import BadRequestError
from runtimes.manifest import Asset, Detect, Manifest, Option

logger = logging.getLogger(__name__)

HUBERT = "hubert"
RMVPE = "rmvpe.pt"
INPUT_RATE = 16000  # what the content encoder takes; the model's own rate comes out
F0_METHODS = ("pm", "harvest", "crepe", "rmvpe", "fcpe")
NO_INDEX = {"index_ratio": "this character has no .index file"}
PITCH_OPTIONS = ("pitch_shift_semitones", "f0_method", "filter_radius", "protect_voiceless")
CURVE_METHODS = ("harvest", "fcpe")
"""Pitch methods the adapter runs itself, handing the curve to the package (which lacks fcpe and
refuses harvest on audio in memory)."""

MANIFEST = Manifest(
    architecture="rvc",
    display_name="RVC v1/v2 (voice conversion)",
    version="1",
    capabilities=("convert",),
    needs_text=False,
    needs_audio=True,
    input_sample_rate=INPUT_RATE,
    options=(
        Option("pitch_shift_semitones", "Pitch shift (semitones; about +12 male to female)", "int", 0, -36, 36, 1),
        Option("f0_method", "Pitch (f0) method", "choice", "pm", choices=F0_METHODS,
               help="pm: fast; harvest: steady, slower; crepe: smooth; rmvpe: best for speech and song (needs assets/rmvpe.pt); "
                    "fcpe: fast and robust (weights ship with torchfcpe)"),
        Option("filter_radius", "Pitch smoothing (median filter radius; harvest only, 3 and up smooths)", "int", 3, 0, 20, 1),
        Option("index_ratio", "Character similarity (index ratio)", "float", 0.88, 0.0, 1.0, 0.01,
               help="how much of the character's feature index to use; needs its .index file"),
        Option("volume_envelope_mix", "Volume envelope mix (1 = the model's, 0 = the input's)", "float", 1.0, 0.0, 1.0, 0.01),
        Option("protect_voiceless", "Voiceless consonant protection (0.5 = off)", "float", 0.33, 0.0, 0.5, 0.01),
        Option("slice_length_s", "Slice length (s; long inputs are converted in slices)", "float", 30.0, 5.0, 120.0, 1.0),
        Option("cross_fade_s", "Cross-fade between slices (s)", "float", 0.1, 0.0, 2.0, 0.01),
    ),
    assets=(
        Asset(HUBERT, "content encoder (HuBERT, 768 wide)", "Hugging Face r3gm/hubert_base (config.json + weights) as a folder",
              hay_say_dependency=True),
        Asset(RMVPE, "rmvpe pitch extractor", "rmvpe.pt from Hugging Face lj1995/VoiceConversionWebUI", "f0_method=rmvpe",
              hay_say_dependency=True),
    ),
    detect=Detect("*.pth"),  # [+ an .index]
    hay_say_names=("rvc",),
)


class RvcAdapter(Adapter):
    manifest = MANIFEST

    def __init__(self) -> None:
        self.loader: Any = None
        self.rmvpe: Any = None
        self.fcpe: Any = None

    @staticmethod
    def describe(folder: str) -> CharacterInfo:
        models, names = matching(folder, "*.pth")
        if not models:
            return CharacterInfo(False, "no .pth model")
        if len(models) > 1:
            return CharacterInfo(False, "%d .pth files (%s); keep one" % (len(models), names))
        if os.path.basename(models[0]).startswith("G_") and os.path.exists(os.path.join(folder, "config.json")):
            return CharacterInfo(False, "%s with a config.json looks like a so-vits-svc model" % os.path.basename(models[0]))
        indexes, _ = matching(folder, "*.index")
        if len(indexes) > 1:
            return CharacterInfo(False, "%d .index files; keep one" % len(indexes))
        extras = ("feature index",) if indexes else ()
        name = os.path.basename(models[0])
        try:
            checkpoint = read_plain_values(models[0])
        except UnsafeCheckpointError as exc:
            return CharacterInfo(False, "%s holds pickled Python objects (%s), not only weights; it is refused" % (name, exc))
        except UnreadableCheckpointError as exc:
            if is_legacy_torch_file(models[0]):
                return CharacterInfo(True, "", extras=extras, unavailable={} if extras else NO_INDEX)
            return CharacterInfo(False, "%s is not a readable checkpoint: %s (corrupt or incomplete download?)" % (name, exc))
        return describe_checkpoint(checkpoint, name, extras)

    def load_shared(self, device: str) -> None:
        from infer_rvc_python.main import BaseLoader, load_hu_bert

        folder = asset_path(HUBERT)
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise missing_asset("RVC", "content encoder (HuBERT)", HUBERT,
                                "a 768-wide HuBERT as a Hugging Face folder (e.g. r3gm/hubert_base: config.json and its weights)")
        self.loader = BaseLoader(only_cpu=device == "cpu", hubert_path=folder)
        self.report_progress(None, "loading the content encoder")
        self.loader.hu_bert_model = load_hu_bert(self.loader.config, folder)

    def _rmvpe(self) -> Any:
        if self.rmvpe is None:
            from infer_rvc_python.lib.rmvpe import RMVPE as Rmvpe

            path = asset_path(RMVPE)
            if not os.path.isfile(path):
                raise missing_asset("RVC", "rmvpe pitch extractor", RMVPE, "rmvpe.pt (from lj1995/VoiceConversionWebUI)")
            self.rmvpe = Rmvpe(path, is_half=self.loader.config.is_half, device=self.loader.config.device)
        return self.rmvpe

    def _fcpe(self) -> Any:
        if self.fcpe is None:
            from torchfcpe import spawn_bundled_infer_model

            self.report_progress(None, "loading the fcpe pitch extractor")
            self.fcpe = spawn_bundled_infer_model(device=self.loader.config.device)
        return self.fcpe

    def _pitch_curve(self, method: str, audio: np.ndarray, semitones: int, filter_radius: int) -> np.ndarray:
        if method == "harvest":
            return harvest_curve(audio, semitones, filter_radius)
        return fcpe_curve(self._fcpe(), audio, semitones)

    def load(self, model: ModelRef) -> Dict[str, Any]:
        import faiss
        from infer_rvc_python.main import load_trained_model

        if model.path is None:
            raise BadRequestError("RVC has no character %r: its characters are folders, under the data folder's characters/rvc/"
                                  % model.character)
        info = self.describe(model.path)
        if not info.usable:
            raise BadRequestError("%s: %s" % (os.path.basename(model.path), info.problem))
        checkpoint = glob.glob(os.path.join(model.path, "*.pth"))[0]
        try:
            n_speakers, rate, net_g, pipe, cpt, version = load_trained_model(checkpoint, self.loader.config)
        except Exception as exc:  # foreign code: translate once, naming the file
            raise BadRequestError(load_failure(os.path.basename(checkpoint), exc)) from exc
        # Upstream loads with strict=False: a weight the checkpoint lacks would stay random (noise out).
        missing = [name for name in net_g.state_dict() if name not in cpt["weight"]]
        if missing:
            raise BadRequestError("%s does not match its configuration: %d weights are missing (%s)" % (
                os.path.basename(checkpoint), len(missing), ", ".join(missing[:3])))
        index = big = None
        indexes = glob.glob(os.path.join(model.path, "*.index"))
        if indexes:
            try:
                index = faiss.read_index(indexes[0])
                big = index.reconstruct_n(0, index.ntotal) if index.ntotal else None
            except Exception as exc:  # foreign code: translate once, naming the file
                raise BadRequestError("%s could not be read: %s" % (os.path.basename(indexes[0]), exc)) from exc
        logger.info("RVC %s: %s, %d Hz, pitch %s, index %s", os.path.basename(model.path), version, rate,
                    "yes" if cpt.get("f0", 1) else "no", "yes" if big is not None else "no")
        return {"name": os.path.basename(model.path), "speakers": n_speakers, "rate": int(rate), "net_g": net_g, "pipe": pipe,
                "cpt": cpt, "version": version, "f0": int(cpt.get("f0", 1)), "index": index if big is not None else None, "big": big}

    def details(self, character: Dict[str, Any]) -> Dict[str, Any]:
        return {"version": character["version"], "sample_rate": character["rate"], "pitch": bool(character["f0"]),
                "feature_index": character["index"] is not None, "half": bool(self.loader.config.is_half)}

    def generate(self, character: Dict[str, Any], request: GenerateRequest) -> GenerateResult:
        options = request.options
        if request.audio is None or request.audio_sample_rate is None or request.audio.size == 0:
            raise BadRequestError("RVC needs a recording to convert")
        audio = np.asarray(request.audio, dtype=np.float32)
        if audio.ndim > 1:
            audio = audio.mean(axis=0)
        if request.audio_sample_rate != INPUT_RATE:
            raise BadRequestError("RVC takes %d Hz input (the app resamples to it)" % INPUT_RATE)
        if audio.size < INPUT_RATE // 10:
            raise BadRequestError("the recording is too short to convert (%.3f s; at least 0.1 s)" % (audio.size / INPUT_RATE))
        if float(np.abs(audio).max()) < 1e-4:
            raise BadRequestError("no voice found in the recording: it is silent")
        method = str(options["f0_method"])
        if method == "rmvpe":
            character["pipe"].model_rmvpe = self._rmvpe()
        ratio = float(options["index_ratio"]) if character["index"] is not None else 0.0
        params: Dict[str, Any] = {"pitch_algo": method, "pitch_lvl": int(options["pitch_shift_semitones"]),
                  "respiration_median_filtering": int(options["filter_radius"]),
                  "resample_sr": 0, "envelope_ratio": float(options["volume_envelope_mix"]),
                  "consonant_breath_protection": float(options["protect_voiceless"])}
        logger.info("RVC %s: infer(%s, index_influence=%r)", character["name"],
                    ", ".join("%s=%r" % item for item in sorted(params.items())), ratio)
        rate = character["rate"]
        fade_in = int(float(options["cross_fade_s"]) * INPUT_RATE)
        pieces = list(slices(audio.size, int(float(options["slice_length_s"]) * INPUT_RATE), fade_in))
        out = np.zeros(int(round(audio.size * rate / INPUT_RATE)), dtype=np.float32)
        for number, (start, end) in enumerate(pieces, start=1):
            request.check_cancelled()
            piece_params, pitch_curve = params, None
            if method in CURVE_METHODS:
                pitch_curve = self._pitch_curve(method, audio[start:end], int(params["pitch_lvl"]),
                                                int(params["respiration_median_filtering"]))
                piece_params = dict(params, pitch_algo="pm")
                voiced_hz = pitch_curve[pitch_curve[:, 1] > 0, 1]
                logger.info("RVC %s: %s pitch, %d frames, median %.1f Hz, handed to the pipeline", character["name"], method,
                            len(pitch_curve), float(np.median(voiced_hz)) if voiced_hz.size else 0.0)
            converted, _ = self.loader.infer(
                "job", piece_params, character["speakers"], rate, character["net_g"], character["pipe"], character["cpt"],
                character["version"], character["f0"], ratio, character["index"], character["big"], pitch_curve,
                (audio[start:end], INPUT_RATE), False, "array",
            )
            piece = np.asarray(converted, dtype=np.float32) / 32768.0
            at = int(round(start * rate / INPUT_RATE))
            overlap_add(out, piece, at, int(round(fade_in * rate / INPUT_RATE)) if start > 0 else 0)
            request.report_progress(number / len(pieces), "converted slice %d of %d" % (number, len(pieces)))
        return GenerateResult(audio=np.clip(out, -1.0, 1.0), sample_rate=rate)


STANDARD_EMBEDDERS = ("contentvec", "hubert", "hubert_base")
"""Names Applio gives the content encoder every RVC model shares (the assets' hubert)."""


def describe_checkpoint(checkpoint: Any, name: str, extras: Tuple[str, ...]) -> CharacterInfo:
    """Version, rate and pitch guidance of an RVC checkpoint read as plain values."""
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("weight"), dict) or not isinstance(checkpoint.get("config"), list):
        return CharacterInfo(False, "%s is not an RVC model (no weight and config inside)" % name)
    vocoder = checkpoint.get("vocoder", "HiFi-GAN")  # Applio names its decoder; infer-rvc-python has HiFi-GAN's only
    if isinstance(vocoder, str) and vocoder != "HiFi-GAN":
        return CharacterInfo(False, "%s was trained with Applio's %s vocoder; infer-rvc-python runs HiFi-GAN models only" % (name, vocoder))
    phone = checkpoint["weight"].get("enc_p.emb_phone.weight")
    width = phone.shape[1] if isinstance(phone, TensorShape) and len(phone.shape) == 2 else None
    # the content width decides which encoder output the model takes; the version field can be missing (v1)
    version = {768: "2", 256: "1"}.get(width or 0) or str(checkpoint.get("version", "v1")).lstrip("v")
    rate = checkpoint["config"][-1] if checkpoint["config"] and isinstance(checkpoint["config"][-1], int) else 0
    pitch = bool(checkpoint.get("f0", 1))
    details = list(extras) + (["%d Hz" % rate] if rate else []) + ([] if pitch else ["no pitch guidance"])
    embedder = checkpoint.get("embedder_model")  # Applio records the content encoder it trained on
    if isinstance(embedder, str) and embedder not in STANDARD_EMBEDDERS:
        details.append("trained on %s features, converted with the shared HuBERT: expect a weaker likeness" % embedder)
    unavailable = {} if extras else dict(NO_INDEX)
    if not pitch:
        unavailable.update({name: "the model has no pitch guidance" for name in PITCH_OPTIONS})
    return CharacterInfo(True, "", version=version, extras=tuple(details), unavailable=unavailable)


def harvest_curve(audio: np.ndarray, semitones: int, filter_radius: int) -> np.ndarray:
    """WORLD's harvest pitch of ``audio`` (16 kHz) as rows of (seconds, Hz), transposed and smoothed the
    way RVC's own harvest path does; the package then uses it in place of its own estimate."""
    import pyworld
    from scipy import signal

    samples = np.asarray(audio, dtype=np.float64)
    f0, times = pyworld.harvest(samples, fs=INPUT_RATE, f0_ceil=1100, f0_floor=50, frame_period=10)
    f0 = pyworld.stonemask(samples, f0, times, INPUT_RATE)
    if filter_radius > 2:
        f0 = signal.medfilt(f0, 3)
    f0 = f0 * 2 ** (semitones / 12)
    return np.stack([times, f0], axis=1).astype(np.float32)


def fcpe_curve(model: Any, audio: np.ndarray, semitones: int) -> np.ndarray:
    """fcpe's pitch of ``audio`` (16 kHz) as rows of (seconds, Hz), one per fcpe frame, transposed."""
    import torch

    with torch.inference_mode():
        samples = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None, :, None]
        f0 = model.infer(samples, sr=INPUT_RATE, decoder_mode="local_argmax",
                         threshold=0.006, f0_min=50, f0_max=1100, interp_uv=False)
    hz = f0.squeeze().float().cpu().numpy().reshape(-1) * 2 ** (semitones / 12)
    times = np.arange(hz.size, dtype=np.float32) * (model.get_hop_size_ms() / 1000)
    return np.stack([times, hz], axis=1).astype(np.float32)
