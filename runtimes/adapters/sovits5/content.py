# mypy: allow-subclassing-any
"""What so-vits-svc 5.0 hears in a recording, as upstream's preprocessing computes it at inference: whisper's
phonetic posteriorgram (PPG: the encoder of openai-whisper's large-v2 with its last quarter of blocks dropped,
fed inputs shorter than 30 s with the positional embedding sliced to their length), hubert-soft units (bshall's
soft speech units; written here, as no package carries its model) and CREPE pitch (torchcrepe, which ships
CREPE's weights). Every frame is 20 ms at 16 kHz; the synthesizer reads each twice (10 ms frames).

Checkpoints load with ``weights_only=True``. Imported by the worker only (torch at module level).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

warnings.filterwarnings("ignore", message=".*weight_norm.* is deprecated", category=FutureWarning)  # upstream's names, kept

CONTENT_RATE = 16000
CONTENT_HOP = 320
WHISPER_CHUNK_S = 15
WHISPER_CHUNK_S_V1 = 25
HUBERT_CHUNK_S = 20


class WhisperPPG:
    """whisper's audio encoder: v2 keeps its first three quarters of blocks (upstream's 24 of large-v2's 32) and
    dithers the log-mel, in 15 s pieces; v1 (whisper medium) keeps every block, no dither, 25 s pieces."""

    def __init__(self, path: str, device: str, half: bool, v1: bool = False) -> None:
        from whisper.model import AudioEncoder

        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(checkpoint, dict) or "dims" not in checkpoint or "model_state_dict" not in checkpoint:
            raise ValueError("not an openai-whisper checkpoint (no dims / model_state_dict)")
        dims: Dict[str, int] = checkpoint["dims"]
        kept = dims["n_audio_layer"] if v1 else dims["n_audio_layer"] - dims["n_audio_layer"] // 4
        self.v1 = v1
        encoder = AudioEncoder(dims["n_mels"], dims["n_audio_ctx"], dims["n_audio_state"], dims["n_audio_head"], kept)
        prefix = "encoder."
        weights = {k[len(prefix):]: v for k, v in checkpoint["model_state_dict"].items()
                   if k.startswith(prefix) and not (k.startswith(prefix + "blocks.") and int(k.split(".")[2]) >= kept)}
        encoder.load_state_dict(weights, strict=True)
        self.n_mels = int(dims["n_mels"])
        self.width = int(dims["n_audio_state"])
        self.half = half
        self.encoder = (encoder.half() if half else encoder).to(device).eval()
        self.device = device

    def encode(self, mel: Tensor) -> Tensor:
        """[n_mels, frames] -> [ceil(frames / 2), width]: openai-whisper's AudioEncoder.forward, its positional
        embedding sliced to the input's length (it asserts a whole 30 s window)."""
        encoder = self.encoder
        x = F.gelu(encoder.conv1(mel.unsqueeze(0)))
        x = F.gelu(encoder.conv2(x)).permute(0, 2, 1)
        if x.shape[1] > encoder.positional_embedding.shape[0]:
            raise ValueError("whisper's encoder takes at most 30 s at a time")
        x = (x + encoder.positional_embedding[:x.shape[1]]).to(x.dtype)
        for block in encoder.blocks:
            x = block(x)
        return encoder.ln_post(x)[0]

    def __call__(self, audio: np.ndarray, generator: Optional[torch.Generator] = None) -> np.ndarray:
        """16 kHz mono -> [samples // 320, width] float32, in pieces as upstream's whisper/inference.py (v2: 15 s, a
        0.1 dither of the log-mel; v1: 25 s, none)."""
        from whisper.audio import log_mel_spectrogram

        pieces: List[np.ndarray] = []
        step = (WHISPER_CHUNK_S_V1 if self.v1 else WHISPER_CHUNK_S) * CONTENT_RATE
        for start in range(0, audio.size, step):
            short = audio[start:start + step]
            frames = short.size // CONTENT_HOP
            mel = log_mel_spectrogram(torch.from_numpy(np.ascontiguousarray(short, dtype=np.float32)), self.n_mels).to(self.device)
            if not self.v1:
                mel = mel + torch.randn(mel.shape, generator=generator).to(self.device) * 0.1
            with torch.no_grad():
                ppg = self.encode(mel.half() if self.half else mel).float().cpu().numpy()
            pieces.append(ppg[:frames])
        return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros((0, self.width), np.float32)


class FeatureExtractor(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv1d(1, channels, 10, 5, bias=False)
        self.norm0 = nn.GroupNorm(channels, channels)
        self.conv1 = nn.Conv1d(channels, channels, 3, 2, bias=False)
        self.conv2 = nn.Conv1d(channels, channels, 3, 2, bias=False)
        self.conv3 = nn.Conv1d(channels, channels, 3, 2, bias=False)
        self.conv4 = nn.Conv1d(channels, channels, 3, 2, bias=False)
        self.conv5 = nn.Conv1d(channels, channels, 2, 2, bias=False)
        self.conv6 = nn.Conv1d(channels, channels, 2, 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = F.gelu(self.norm0(self.conv0(x)))
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5, self.conv6):
            x = F.gelu(conv(x))
        return x


class FeatureProjection(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.projection = nn.Linear(channels, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(self.norm(x))


class PositionalConvEmbedding(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.conv = nn.utils.weight_norm(nn.Conv1d(hidden, hidden, kernel_size=128, padding=64, groups=16), name="weight", dim=2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x.transpose(1, 2))
        return F.gelu(x[:, :, :-1]).transpose(1, 2)


HEAD_WIDTH = 64
"""HuBERT-base's attention heads are 64 wide (768 / 12); the checkpoint's shapes give everything else."""


class HubertSoft(nn.Module):
    """bshall's HuBERT-Soft (the released ``hubert-soft-0d54a1f4.pt``: 512 conv channels, 768 wide, 12 layers, 256-wide
    units): a HuBERT-base encoder whose last layer is projected to soft units. Only what ``units`` uses is built (the
    checkpoint's label embedding and masking vector are left out); sizes come from the checkpoint's shapes, so tests
    can use a small one."""

    def __init__(self, channels: int = 512, hidden: int = 768, layers: int = 12, ffn: int = 3072, units: int = 256) -> None:
        super().__init__()
        self.feature_extractor = FeatureExtractor(channels)
        self.feature_projection = FeatureProjection(channels, hidden)
        self.positional_embedding = PositionalConvEmbedding(hidden)
        self.norm = nn.LayerNorm(hidden)
        layer = nn.TransformerEncoderLayer(hidden, max(1, hidden // HEAD_WIDTH), ffn, activation="gelu", batch_first=True)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(layers))
        self.proj = nn.Linear(hidden, units)

    def units(self, wav: Tensor) -> Tensor:
        """[1, 1, samples] at 16 kHz -> [1, frames, units], one frame per 20 ms."""
        wav = F.pad(wav, ((400 - 320) // 2, (400 - 320) // 2))
        x = self.feature_projection(self.feature_extractor(wav).transpose(1, 2))
        x = x + self.positional_embedding(x)
        x = self.norm(x)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.proj(x)

    @classmethod
    def from_checkpoint(cls, path: str) -> "HubertSoft":
        weights: Dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(weights, dict) or not all(isinstance(v, Tensor) for v in weights.values()):
            raise ValueError("not a hubert-soft state dict")
        weights = {k[len("module."):] if k.startswith("module.") else k: v for k, v in weights.items()}
        weights = {k: v for k, v in weights.items() if k not in ("label_embedding.weight", "masked_spec_embed")}
        layers = len({k.split(".")[2] for k in weights if k.startswith("encoder.layers.")})
        model = cls(channels=int(weights["feature_extractor.conv0.weight"].shape[0]), hidden=int(weights["proj.weight"].shape[1]),
                    layers=layers, ffn=int(weights["encoder.layers.0.linear1.weight"].shape[0]), units=int(weights["proj.weight"].shape[0]))
        model.load_state_dict(weights, strict=True)
        return model


class HubertUnits:
    def __init__(self, path: str, device: str, half: bool) -> None:
        model = HubertSoft.from_checkpoint(path)
        self.model = (model.half() if half else model).to(device).eval()
        self.device = device
        self.half = half

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """16 kHz mono -> [frames, 256] float32, in 20 s pieces as upstream's hubert/inference.py."""
        pieces: List[np.ndarray] = []
        step = HUBERT_CHUNK_S * CONTENT_RATE
        for start in range(0, audio.size, step):
            feats = torch.from_numpy(np.ascontiguousarray(audio[start:start + step], dtype=np.float32))[None, None].to(self.device)
            with torch.no_grad():
                units = self.model.units(feats.half() if self.half else feats)
            pieces.append(units[0].float().cpu().numpy())
        return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros((0, self.model.proj.out_features), np.float32)


def crepe_pitch(audio: np.ndarray, capacity: str, device: str, generator: Optional[torch.Generator] = None) -> np.ndarray:
    """Upstream's ``compute_f0_sing``: CREPE (viterbi-decoded, 50-1000 Hz) every 20 ms on the 16 kHz recording with
    a 0.001 dither, each frame doubled to 10 ms, a 5-frame mean filter; then whole Hz, as upstream's pitch CSV
    keeps it. Upstream applies no voicing threshold: every frame has a pitch."""
    import torchcrepe

    wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
    wav = wav + torch.randn(wav.shape, generator=generator) * 0.001
    # torchcrepe dithers the decoded pitch with numpy's global generator (scipy.stats): seeded from ours for the call,
    # so a take repeats, and put back after
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        pitch = torchcrepe.predict(wav, CONTENT_RATE, CONTENT_HOP, 50, 1000, capacity, batch_size=512, device=device,
                                   return_periodicity=False)
    finally:
        np.random.set_state(state)
    pitch = torch.repeat_interleave(pitch.cpu(), 2, dim=-1)
    pitch = torchcrepe.filter.mean(pitch, 5)
    whole_hz: np.ndarray = np.trunc(pitch.squeeze(0).numpy()).astype(np.float32)
    return whole_hz


def crepe_pitch_v1(audio: np.ndarray, capacity: str, device: str, generator: Optional[torch.Generator] = None) -> np.ndarray:
    """Upstream v1's ``compute_f0_nn``: CREPE (viterbi, 50-1000 Hz) every 20 ms with its periodicity, each frame doubled,
    a 9-frame median of the periodicity and a 9-frame mean of the pitch, unvoiced (0) where periodicity < 0.1; whole Hz."""
    import torchcrepe

    wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
    state = np.random.get_state()
    np.random.seed(seed)  # torchcrepe's decoding dither (see crepe_pitch)
    try:
        pitch, periodicity = torchcrepe.predict(wav, CONTENT_RATE, CONTENT_HOP, 50, 1000, capacity, batch_size=512, device=device,
                                                return_periodicity=True)
    finally:
        np.random.set_state(state)
    pitch = torch.repeat_interleave(pitch.cpu(), 2, dim=-1)
    periodicity = torchcrepe.filter.median(torch.repeat_interleave(periodicity.cpu(), 2, dim=-1), 9)
    pitch = torchcrepe.filter.mean(pitch, 9)
    pitch[periodicity < 0.1] = 0
    whole_hz: np.ndarray = np.trunc(pitch.squeeze(0).numpy()).astype(np.float32)
    return whole_hz
