"""so-vits-svc 3.0 characters, run by so-vits-svc-fork's model (the ``sovits`` architecture's env, no other).

3.0's generator is 4.0's with three differences, so its weights map onto the fork's ``SynthesizerTrn``:
its content projection is a 1-wide convolution inside the text encoder (``enc_p_.pre``; 4.0's ``pre`` is 5 wide
and outside it: the 3.0 weight becomes the centre tap of a zero 5-wide kernel), the rest of its text encoder is
``enc_p_.*`` (``enc_p.*``), and it has no voiced/unvoiced embedding (``emb_uv``: zeros, so adding it is adding
nothing) nor pitch predictor (``f0_decoder``: never used). Upstream builds the text encoder with 16 attention
layers and 5-wide FFN kernels and the NSF-HiFiGAN decoder with fixed sizes, whatever ``config.json`` says: the
sizes are read here from the checkpoint's shapes, which every real 3.0 checkpoint has from that code.

Content is hubert-soft's 256-wide units (50 per second, from 16 kHz audio; ``HubertSoft`` below, from bshall's
published structure, loads ``hubert-soft-0d54a1f4.pt`` weights-only), repeated 2x for the 32 kHz models (hop
320: 100 frames/s) or 3x for the 48 kHz ones (150 frames/s); pitch is Praat's autocorrelation (parselmouth) at
10 ms steps, fitted to the frames as upstream does (centre-padded for 32 kHz, interpolated for 48 kHz).
bench/sovits3_equivalence.py runs upstream 3.0 beside this on the same weights and inputs.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Callable, Dict, Tuple

import numpy as np

from runtimes.adapters.common import load_failure
from runtimes.errors import BadRequestError

logger = logging.getLogger(__name__)

HUBERT_SOFT = "hubert-soft-0d54a1f4.pt"
HUBERT_SOFT_SOURCE = "github.com/bshall/hubert releases v0.1: hubert-soft-0d54a1f4.pt (the file)"
UNIT_REPEATS = {32000: 2, 48000: 3}
"""3.0's two models: output rate -> decoder frames per hubert-soft unit (hop 320 at both rates)."""
HOP = 320
UNIT_RATE = 16000
F0_MIN_HZ, F0_MAX_HZ = 50.0, 1100.0
V3_PREFIX = "enc_p_."
V3_DILATIONS = [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
V3_UPSAMPLE_RATES = [10, 8, 2, 2]
"""Upstream 3.0's decoder settings it fixes in code (shapes do not show them)."""


def is_v3_config(config: Dict[str, Any]) -> bool:
    """A 3.0 config: 32 or 48 kHz at hop 320, without 4.x's content-encoder markers (4.0's are 44.1 kHz, hop 512)."""
    data, model = config["data"], config["model"]
    return (data.get("sampling_rate") in UNIT_REPEATS and data.get("hop_length") == HOP and "contentvec_final_proj" not in data
            and "speech_encoder" not in model)


def v3_problem(weights: Any) -> str:
    """Why a checkpoint's weights (``{'model': {name: tensor}}``'s inner dict, read without torch) are not a 3.0
    generator ("" when they are)."""
    if not isinstance(weights, dict):
        return "it holds no 'model' weights"
    if V3_PREFIX + "pre.weight" not in weights:
        return "it is not a so-vits-svc 3.0 generator (no %spre.weight), though config.json is a 3.0 one" % V3_PREFIX
    return ""


def fork_weights(weights: Dict[str, Any], torch: Any) -> Dict[str, Any]:
    """3.0's state dict renamed and reshaped into so-vits-svc-fork's ``SynthesizerTrn``'s (see the module doc)."""
    mapped: Dict[str, Any] = {}
    for name, value in weights.items():
        if name == V3_PREFIX + "pre.weight":
            wide = torch.zeros(value.shape[0], value.shape[1], 5, dtype=value.dtype)
            wide[:, :, 2] = value[:, :, 0]
            mapped["pre.weight"] = wide
        elif name == V3_PREFIX + "pre.bias":
            mapped["pre.bias"] = value
        elif name.startswith(V3_PREFIX):
            mapped["enc_p." + name[len(V3_PREFIX):]] = value
        else:
            mapped[name] = value
    hidden = weights[V3_PREFIX + "pre.weight"].shape[0]
    mapped["emb_uv.weight"] = torch.zeros(2, hidden, dtype=weights[V3_PREFIX + "pre.weight"].dtype)
    return mapped


def _count(weights: Dict[str, Any], pattern: str) -> int:
    found = {int(m.group(1)) for m in (re.match(pattern, name) for name in weights) if m}
    return max(found) + 1 if found else 0


def fork_hparams(config: Dict[str, Any], weights: Dict[str, Any]) -> Dict[str, Any]:
    """The fork's ``SynthesizerTrn`` arguments for a 3.0 checkpoint: what upstream's code fixes, read from the
    weights' shapes, and the rest (heads, dropout, speakers) from config.json as upstream reads it."""
    model, data = config["model"], config["data"]
    pre = weights[V3_PREFIX + "pre.weight"]
    ffn = weights[V3_PREFIX + "enc_.ffn_layers.0.conv_1.weight"]
    upsample_kernels = [int(weights["dec.ups.%d.weight_v" % i].shape[2]) for i in range(_count(weights, r"dec\.ups\.(\d+)\."))]
    stages = max(1, len(upsample_kernels))
    resblocks = _count(weights, r"dec\.resblocks\.(\d+)\.") // stages
    return dict(
        spec_channels=int(weights["enc_q.pre.weight"].shape[1]),
        segment_size=int(config.get("train", {}).get("segment_size", 17920)) // HOP,
        inter_channels=int(weights[V3_PREFIX + "proj.weight"].shape[0]) // 2,
        hidden_channels=int(pre.shape[0]),
        filter_channels=int(ffn.shape[0]),
        n_heads=int(model.get("n_heads", 2)),
        n_layers=_count(weights, r"enc_p_\.enc_\.attn_layers\.(\d+)\."),
        kernel_size=int(ffn.shape[2]),
        p_dropout=float(model.get("p_dropout", 0.1)),
        resblock="1",
        resblock_kernel_sizes=[int(weights["dec.resblocks.%d.convs1.0.weight_v" % j].shape[2]) for j in range(resblocks)],
        resblock_dilation_sizes=V3_DILATIONS[:resblocks],
        upsample_rates=V3_UPSAMPLE_RATES[:stages],
        upsample_initial_channel=int(weights["dec.conv_pre.weight_v"].shape[0]),
        upsample_kernel_sizes=upsample_kernels,
        gin_channels=int(weights["emb_g.weight"].shape[1]),
        ssl_dim=int(pre.shape[1]),
        n_speakers=int(weights["emb_g.weight"].shape[0]),
        sampling_rate=int(data["sampling_rate"]),
    )


def fit_f0(f0: np.ndarray, frames: int, rate: int) -> np.ndarray:
    """Praat's 100 per second pitch fitted to ``frames`` decoder frames as upstream 3.0 does: the 32 kHz model's
    cut or centre-padded with zeros to 2 per unit, the 48 kHz model's (padded to 2 per unit, never cut) then
    interpolated to 3 per unit across voiced frames."""
    units = frames // UNIT_REPEATS[rate]
    target = units * 2
    if rate == 32000 and f0.size > target:
        f0 = f0[:target]
    pad = (target - f0.size + 1) // 2
    if pad > 0 or target - f0.size - pad > 0:
        f0 = np.pad(f0, [[pad, target - f0.size - pad]], mode="constant")
    if rate == 48000:
        f0 = resize_f0(f0, frames)
    return f0


def resize_f0(f0: np.ndarray, frames: int) -> np.ndarray:
    """Linear interpolation to ``frames`` over voiced frames (unvoiced ones become NaN, then 0), as upstream's
    ``resize2d_f0``."""
    source = np.array(f0, dtype=np.float64)
    source[source < 0.001] = np.nan
    target = np.interp(np.arange(0, len(source) * frames, len(source)) / frames, np.arange(0, len(source)), source)
    return np.nan_to_num(target)


def praat_f0(wav16: np.ndarray) -> np.ndarray:
    import parselmouth

    pitch = parselmouth.Sound(wav16.astype(np.float64), UNIT_RATE).to_pitch_ac(
        time_step=0.01, voicing_threshold=0.6, pitch_floor=F0_MIN_HZ, pitch_ceiling=F0_MAX_HZ)
    return np.asarray(pitch.selected_array["frequency"], dtype=np.float64)


def load_hubert_soft(path: str, device: str) -> Any:
    """hubert-soft from its weights file (weights-only; a ``module.`` prefix is dropped), in evaluation mode."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unsafe or unreadable pickle: name the file
        raise BadRequestError(load_failure(os.path.basename(path), exc)) from exc
    if isinstance(state, dict) and isinstance(state.get("hubert"), dict):
        state = state["hubert"]
    if not isinstance(state, dict) or not any(str(k).endswith("feature_extractor.conv0.weight") for k in state):
        raise BadRequestError("%s is not a hubert-soft checkpoint (no feature_extractor.conv0.weight)" % os.path.basename(path))
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    model = build_hubert_soft(state)
    return model.to(device).eval()


def build_hubert_soft(state: Dict[str, Any]) -> Any:
    """bshall's HubertSoft (a HuBERT-base: 7 convolutions, a projection, a positional convolution, post-norm
    transformer layers, a 256-wide projection), sized from the weights (64-wide attention heads, as upstream's
    768/12), with the positional convolution's weight norm folded into a plain weight."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    conv_channels = int(state["feature_extractor.conv0.weight"].shape[0])
    hidden = int(state["feature_projection.projection.weight"].shape[0])
    ffn = int(state["encoder.layers.0.linear1.weight"].shape[0])
    layers = _count(state, r"encoder\.layers\.(\d+)\.")
    units = int(state["proj.weight"].shape[0])
    v = state["positional_embedding.conv.weight_v"]
    g = state["positional_embedding.conv.weight_g"]
    groups = hidden // int(v.shape[1])
    kernel = int(v.shape[2])

    class FeatureExtractor(nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.conv0 = nn.Conv1d(1, conv_channels, 10, 5, bias=False)
            self.norm0 = nn.GroupNorm(conv_channels, conv_channels)
            for index, (size, stride) in enumerate([(3, 2)] * 4 + [(2, 2)] * 2, start=1):
                setattr(self, "conv%d" % index, nn.Conv1d(conv_channels, conv_channels, size, stride, bias=False))

        def forward(self, x: Any) -> Any:
            x = F.gelu(self.norm0(self.conv0(x)))
            for index in range(1, 7):
                x = F.gelu(getattr(self, "conv%d" % index)(x))
            return x

    class FeatureProjection(nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(conv_channels)
            self.projection = nn.Linear(conv_channels, hidden)

        def forward(self, x: Any) -> Any:
            return self.projection(self.norm(x))

    class PositionalConvEmbedding(nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(hidden, hidden, kernel_size=kernel, padding=kernel // 2, groups=groups)

        def forward(self, x: Any) -> Any:
            x = self.conv(x.transpose(1, 2))
            return F.gelu(x[:, :, :-1]).transpose(1, 2)

    class HubertSoft(nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.feature_extractor = FeatureExtractor()
            self.feature_projection = FeatureProjection()
            self.positional_embedding = PositionalConvEmbedding()
            self.norm = nn.LayerNorm(hidden)
            self.encoder = nn.Module()
            self.encoder.layers = nn.ModuleList([
                nn.TransformerEncoderLayer(hidden, max(1, hidden // 64), ffn, activation="gelu", batch_first=True)
                for _ in range(layers)])
            self.proj = nn.Linear(hidden, units)

        @torch.inference_mode()  # type: ignore[misc]
        def units(self, wav: Any) -> Any:
            """``wav``: [batch, 1, samples] at 16 kHz -> [batch, frames, units] (one frame per 320 samples)."""
            x = F.pad(wav, ((400 - 320) // 2, (400 - 320) // 2))
            x = self.feature_extractor(x)
            x = self.feature_projection(x.transpose(1, 2))
            x = x + self.positional_embedding(x)
            x = self.norm(x)
            for layer in self.encoder.layers:
                x = layer(x)
            return self.proj(x)

    model = HubertSoft()
    # weight_norm(dim=2): the norm is taken over every dimension but the kernel's
    weight = g * v / v.norm(dim=(0, 1), keepdim=True)
    wanted = {k: val for k, val in state.items() if not k.startswith("positional_embedding.conv.weight_")
              and k not in ("masked_spec_embed", "label_embedding.weight")}
    wanted["positional_embedding.conv.weight"] = weight
    missing, unexpected = model.load_state_dict(wanted, strict=False)
    if missing or unexpected:
        raise BadRequestError("hubert-soft's weights do not fit its structure (missing %s; unexpected %s)"
                              % (", ".join(missing[:3]) or "none", ", ".join(unexpected[:3]) or "none"))
    return model


class SovitsV3:
    """A loaded 3.0 character with the interface the sovits adapter's conversion loop uses (``infer``,
    ``target_sample``, ``hop_size``, ``net_g``, ``spk2id``), so slicing, cross-fades and the enhancer work alike."""

    def __init__(self, checkpoint: str, config_path: str, device: str, half: bool, hubert: Callable[[], Any],
                 pool_f0: Callable[[np.ndarray], np.ndarray]) -> None:
        import torch
        from so_vits_svc_fork.modules.synthesizers import SynthesizerTrn

        with open(config_path, encoding="utf-8") as handle:
            config = json.load(handle)
        self.torch = torch
        self.device = device
        self.target_sample = int(config["data"]["sampling_rate"])
        self.hop_size = HOP
        self.repeats = UNIT_REPEATS[self.target_sample]
        self.spk2id: Dict[str, int] = dict(config.get("spk") or {})
        self.hubert = hubert
        self.pool_f0 = pool_f0
        name = os.path.basename(checkpoint)
        hubert()  # its asset missing is said before the model's weights are read
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)  # the adapter names what went wrong
        weights = saved.get("model") if isinstance(saved, dict) else None
        problem = v3_problem(weights)
        if problem or not isinstance(weights, dict):
            raise BadRequestError("%s: %s" % (name, problem))
        try:
            hparams = fork_hparams(config, weights)
            net_g = SynthesizerTrn(**hparams)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise BadRequestError("%s is not a complete so-vits-svc 3.0 generator (%s)" % (name, exc)) from None
        mapped = fork_weights(weights, torch)
        wanted = net_g.state_dict()
        reshaped = [k for k, v in mapped.items() if k in wanted and tuple(wanted[k].shape) != tuple(v.shape)]
        if reshaped:
            raise BadRequestError("%s does not match a 3.0 generator: %d weights differ in shape (%s)"
                                  % (name, len(reshaped), ", ".join(reshaped[:3])))
        missing, unexpected = net_g.load_state_dict(mapped, strict=False)
        missing = [k for k in missing if not k.startswith("f0_decoder.")]  # 3.0 has no pitch predictor; never used
        if missing or unexpected:
            raise BadRequestError("%s does not match a 3.0 generator: %d weights missing (%s), %d unexpected (%s)"
                                  % (name, len(missing), ", ".join(missing[:3]), len(unexpected), ", ".join(unexpected[:3])))
        net_g.eval()
        for module in net_g.modules():
            remove_weight_norm_if_exists(module, torch)
        self.dtype = torch.float16 if half else torch.float32
        self.net_g = net_g.to(device, dtype=self.dtype)

    def speaker_id(self, speaker: str) -> int:
        if speaker not in self.spk2id:
            raise BadRequestError("unknown speaker %r (this character has: %s)" % (speaker, ", ".join(self.spk2id)))
        return int(self.spk2id[speaker])

    def units_and_f0(self, audio: np.ndarray, transpose: int) -> Tuple[Any, np.ndarray]:
        """hubert-soft units [1, units, 256] and the pitch (Hz) at the decoder's frames, transposed, as upstream."""
        import torchaudio

        torch = self.torch
        wav = torch.from_numpy(np.asarray(audio, dtype=np.float32))[None]
        wav16 = torchaudio.functional.resample(wav, self.target_sample, UNIT_RATE)
        units = self.hubert().units(wav16[None].to(self.device).float())
        f0 = fit_f0(praat_f0(wav16[0].numpy()), int(units.shape[1]) * self.repeats, self.target_sample)
        return units, f0 * 2 ** (transpose / 12)

    def decode(self, units: Any, f0_hz: np.ndarray, speaker_id: int, noise_scale: float) -> Any:
        """The generator on units [1, n, 256] and pitch [n * repeats] (Hz): audio [samples] (float32 tensor)."""
        torch = self.torch
        with torch.no_grad():
            content = torch.repeat_interleave(units, repeats=self.repeats, dim=1).transpose(1, 2).to(self.dtype)
            f0 = torch.as_tensor(np.asarray(f0_hz), dtype=torch.float32, device=self.device)[None]
            uv = (f0 > 0).to(self.dtype)
            sid = torch.LongTensor([speaker_id]).to(self.device).unsqueeze(0)
            audio = self.net_g.infer(content, f0=f0.to(self.dtype), uv=uv, g=sid, noice_scale=noise_scale)
        return audio[0, 0].data.float()

    def infer(self, speaker: str, transpose: int, audio: np.ndarray, cluster_infer_ratio: float = 0.0,
              auto_predict_f0: bool = False, noise_scale: float = 0.4, f0_method: str = "") -> Tuple[Any, int]:
        """so-vits-svc-fork's ``Svc.infer`` signature (the adapter's loop calls it); cluster ratio, pitch
        prediction and the f0 method do not exist in 3.0 (the adapter refuses the first two)."""
        units, f0 = self.units_and_f0(audio, transpose)
        f0 = self.pool_f0(f0)
        voiced = f0[f0 > 0]
        logger.info("so-vits-svc 3.0 model: %d hubert-soft units x%d, pitch median %.2f Hz over %d voiced frames, speaker id %d, "
                    "noise scale %g", units.shape[1], self.repeats, float(np.median(voiced)) if voiced.size else 0.0, voiced.size,
                    self.speaker_id(speaker), noise_scale)
        result = self.decode(units, f0, self.speaker_id(speaker), noise_scale)
        return result, int(result.shape[-1])


def remove_weight_norm_if_exists(module: Any, torch: Any) -> None:
    try:
        torch.nn.utils.remove_weight_norm(module)
    except ValueError:
        pass


def v3_unavailable() -> Dict[str, str]:
    """The sovits options a 3.0 character cannot use, with why (the UI disables them)."""
    return {"auto_predict_f0": "so-vits-svc 3.0 models have no pitch predictor",
            "cluster_ratio": "so-vits-svc 3.0 models have no cluster model",
            "f0_method": "so-vits-svc 3.0 reads the pitch with Praat (parselmouth), as its own inference does"}
