"""so-vits-svc's NSF-HiFiGAN enhancer: a converted take is sung again by openvpi's pretrained NSF-HiFiGAN
vocoder from the take's own mel spectrogram and the pitch the model was given, as so-vits-svc 4.1's
``modules/enhancer.py`` does (so-vits-svc-fork dropped it). The vocoder is so-vits-svc-fork's own
NSF-HiFiGAN generator class, which has openvpi's layers and names plus a speaker input that stays zero
here; the mel spectrogram is the fork's. Standard library + numpy at import; torch when built.

The weights are a shared asset, ``<data>/assets/nsf_hifigan/``: ``model`` (``{"generator": state_dict}``)
and ``config.json`` as in openvpi's ``nsf_hifigan_20221211`` release, loaded with ``weights_only=True``.
"""

from __future__ import annotations

import json
import logging
import os
import types
from typing import Any, Dict

import numpy as np

from runtimes.adapters.common import load_failure
from runtimes.errors import BadRequestError

logger = logging.getLogger(__name__)

ENHANCER_ASSET = "nsf_hifigan"
ENHANCER_WEIGHTS_FILE = "model"
MEL_KEYS = ("sampling_rate", "num_mels", "n_fft", "win_size", "hop_size", "fmin", "fmax")
LAYER_KEYS = ("resblock", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel", "resblock_kernel_sizes",
              "resblock_dilation_sizes")
CONFIG_KEYS = MEL_KEYS + LAYER_KEYS


def read_vocoder_config(folder: str) -> Dict[str, Any]:
    path = os.path.join(folder, "config.json")
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BadRequestError("the NSF-HiFiGAN enhancer's config.json cannot be read: %s" % exc) from None
    missing = [key for key in CONFIG_KEYS if not isinstance(config, dict) or key not in config]
    if missing:
        raise BadRequestError("the NSF-HiFiGAN enhancer's config.json is not a vocoder config (no %s)" % ", ".join(missing))
    if int(np.prod(config["upsample_rates"])) != int(config["hop_size"]):
        raise BadRequestError("the NSF-HiFiGAN enhancer's config.json is inconsistent: upsample_rates do not multiply to hop_size")
    return dict(config)


class NsfHifiganEnhancer:
    """Loaded once per worker, on the first job that asks for it."""

    def __init__(self, folder: str, device: str) -> None:
        import torch
        from so_vits_svc_fork.modules.decoders.hifigan._models import NSFHifiGANGenerator

        self.torch = torch
        self.device = device
        config = read_vocoder_config(folder)
        self.sample_rate = int(config["sampling_rate"])
        self.hop_size = int(config["hop_size"])
        # The fork's mel code reads a so-vits-svc hparams shape: the vocoder's values under those names.
        self.mel_params = types.SimpleNamespace(data=types.SimpleNamespace(
            sampling_rate=self.sample_rate, filter_length=int(config["n_fft"]), n_mel_channels=int(config["num_mels"]),
            mel_fmin=config["fmin"], mel_fmax=config["fmax"], hop_length=self.hop_size, win_length=int(config["win_size"])))
        layers = {key: config[key] for key in LAYER_KEYS}
        generator = NSFHifiGANGenerator({**layers, "sampling_rate": self.sample_rate, "inter_channels": int(config["num_mels"]),
                                         "gin_channels": 1})
        path = os.path.join(folder, ENHANCER_WEIGHTS_FILE)
        try:
            weights = torch.load(path, map_location="cpu", weights_only=True)["generator"]
            weights.update({"cond.weight": torch.zeros_like(generator.cond.weight), "cond.bias": torch.zeros_like(generator.cond.bias)})
            generator.load_state_dict(weights)
        except Exception as exc:  # foreign file: one message naming it
            where = "assets/%s/%s" % (ENHANCER_ASSET, ENHANCER_WEIGHTS_FILE)
            raise BadRequestError("the NSF-HiFiGAN enhancer: " + load_failure(where, exc)) from exc
        generator.remove_weight_norm()
        self.generator = generator.to(device).eval()
        self.no_speaker = torch.zeros(1, 1, 1, device=device)

    def enhance(self, audio: np.ndarray, sample_rate: int, f0_hz: np.ndarray, hop_length: int, adaptive_key_semitones: float) -> np.ndarray:
        """``audio`` at ``sample_rate`` sung again by the vocoder; ``f0_hz`` per ``hop_length`` frame (0 unvoiced).
        An adaptive key k > 0 lets the vocoder hear the take k semitones lower (its samples stretched, the
        pitch scaled to match) and plays the result back at the real rate: for voices above its training range.
        Returns the same number of samples at the same rate."""
        import librosa
        from so_vits_svc_fork.modules.mel_processing import mel_spectrogram_torch

        torch = self.torch
        adaptive_rate = 100 * int(np.round(self.sample_rate * 2 ** (adaptive_key_semitones / 12) / 100))
        real_factor = self.sample_rate / adaptive_rate
        stretched = audio if sample_rate == adaptive_rate else librosa.resample(audio, orig_sr=sample_rate, target_sr=adaptive_rate)
        frames = stretched.size // self.hop_size + 1
        frame_times_s = (hop_length / sample_rate) * np.arange(f0_hz.size) / real_factor
        vocoder_times_s = (self.hop_size / self.sample_rate) * np.arange(frames)
        f0_vocoder = np.interp(vocoder_times_s, frame_times_s, f0_hz * real_factor, left=f0_hz[0] * real_factor,
                               right=f0_hz[-1] * real_factor)
        with torch.no_grad():
            mel = mel_spectrogram_torch(torch.from_numpy(np.ascontiguousarray(stretched, dtype=np.float32))[None].to(self.device),
                                        self.mel_params)
            f0 = torch.from_numpy(f0_vocoder[: mel.shape[-1]]).float()[None].to(self.device)
            sung = self.generator(mel, f0, g=self.no_speaker).view(-1).float().cpu().numpy()
        voiced = f0_vocoder[f0_vocoder > 0]
        logger.info("nsf-hifigan enhancer: adaptive key %+g semitones (vocoder hears %d Hz), %d frames, median pitch it hears %.1f Hz",
                    adaptive_key_semitones, adaptive_rate, mel.shape[-1], float(np.median(voiced)) if voiced.size else 0.0)
        # The vocoder's samples follow the stretched take's: at adaptive_rate; back to the take's own rate.
        out = sung if adaptive_rate == sample_rate else librosa.resample(sung, orig_sr=adaptive_rate, target_sr=sample_rate)
        fitted = np.zeros(audio.size, dtype=np.float32)
        fitted[: min(out.size, audio.size)] = out[: audio.size]
        return fitted
