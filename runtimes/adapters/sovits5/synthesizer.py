# mypy: allow-subclassing-any
"""so-vits-svc 5.0's inference synthesizer (whisper-vits-svc, "SynthesizerInfer"), written here from its published
structure: a prior encoder over whisper PPG + hubert-soft units + coarse pitch (a relative-position transformer),
a speaker-normalised affine coupling flow run in reverse, and a BigVGAN generator with anti-aliased snake
activations driven by an NSF sine excitation. Parameter and buffer names follow upstream's, so its checkpoints'
``model_g`` state dicts load as they are (training-only parts, e.g. ``enc_q``, ``emb_g``, are left out).

Two generations share this code. v2 (upstream since 2023-06-30, the config's ``vits.vec_dim`` present): whisper
large-v2 PPG + hubert-soft units, BigVGAN's anti-aliased snake activations, an 11-harmonic source. v1 (Hay Say's
"so-vits-svc 5.0" characters, upstream's hifigan_release at d4b76cb, no ``vec_dim``): whisper medium PPG alone, the
same flow and speaker adapter, HiFi-GAN's leaky-ReLU residual blocks, a 9-harmonic source, the prior sampled at 0.7.

Imported by the worker only (torch at module level); the adapter module stays standard library + numpy.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils import remove_weight_norm, weight_norm

# The old weight_norm keeps upstream's parameter names (weight_g / weight_v), so checkpoints load as they are.
warnings.filterwarnings("ignore", message=".*weight_norm.* is deprecated", category=FutureWarning)

F0_BINS = 256
F0_MIN_HZ = 50.0
F0_MAX_HZ = 1100.0
F0_MEL_MIN = 1127 * math.log(1 + F0_MIN_HZ / 700)
F0_MEL_MAX = 1127 * math.log(1 + F0_MAX_HZ / 700)


def f0_to_coarse(f0: Tensor) -> Tensor:
    """Pitch in Hz -> one of 255 mel-spaced bins (1 = unvoiced or lowest), as the prior encoder's embedding reads it."""
    mel = 1127 * (1 + f0 / 700).log()
    voiced = mel > 0
    mel = torch.where(voiced, (mel - F0_MEL_MIN) * (F0_BINS - 2) / (F0_MEL_MAX - F0_MEL_MIN) + 1, mel)
    mel = mel.clamp(min=1, max=F0_BINS - 1)
    return (mel + 0.5).long()


def sequence_mask(lengths: Tensor, max_length: int) -> Tensor:
    return torch.arange(max_length, dtype=lengths.dtype, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of a [batch, channels, time] tensor (parameters ``gamma``/``beta``)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.transpose(1, -1), (self.channels,), self.gamma, self.beta, self.eps).transpose(1, -1)


class RelativeAttention(nn.Module):
    """Multi-head self-attention with learned relative-position keys and values (window 4, shared by the heads)."""

    def __init__(self, channels: int, n_heads: int, window_size: int = 4) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.k_channels = channels // n_heads
        self.window_size = window_size
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        scale = self.k_channels ** -0.5
        self.emb_rel_k = nn.Parameter(torch.randn(1, window_size * 2 + 1, self.k_channels) * scale)
        self.emb_rel_v = nn.Parameter(torch.randn(1, window_size * 2 + 1, self.k_channels) * scale)

    def _relative_embeddings(self, table: Tensor, length: int) -> Tensor:
        """The table's rows for offsets -(length-1)..(length-1), zero beyond the window."""
        pad = max(length - (self.window_size + 1), 0)
        start = max((self.window_size + 1) - length, 0)
        if pad > 0:
            table = F.pad(table, (0, 0, pad, pad))
        return table[:, start:start + 2 * length - 1]

    @staticmethod
    def _relative_to_absolute(x: Tensor) -> Tensor:
        """[b, h, l, 2l-1] relative logits -> [b, h, l, l] (the skewing trick)."""
        batch, heads, length, _ = x.size()
        x = F.pad(x, (0, 1)).view(batch, heads, length * 2 * length)
        x = F.pad(x, (0, length - 1))
        return x.view(batch, heads, length + 1, 2 * length - 1)[:, :, :length, length - 1:]

    @staticmethod
    def _absolute_to_relative(x: Tensor) -> Tensor:
        """[b, h, l, l] -> [b, h, l, 2l-1]."""
        batch, heads, length, _ = x.size()
        x = F.pad(x, (0, length - 1)).view(batch, heads, length ** 2 + length * (length - 1))
        x = F.pad(x, (length, 0))
        return x.view(batch, heads, length, 2 * length)[:, :, :, 1:]

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        batch, channels, length = x.size()
        query = self.conv_q(x).view(batch, self.n_heads, self.k_channels, length).transpose(2, 3)
        key = self.conv_k(x).view(batch, self.n_heads, self.k_channels, length).transpose(2, 3)
        value = self.conv_v(x).view(batch, self.n_heads, self.k_channels, length).transpose(2, 3)
        query = query / math.sqrt(self.k_channels)
        scores = torch.matmul(query, key.transpose(-2, -1))
        rel_keys = self._relative_embeddings(self.emb_rel_k, length)
        scores = scores + self._relative_to_absolute(torch.matmul(query, rel_keys.unsqueeze(0).transpose(-2, -1)))
        scores = scores.masked_fill(mask == 0, -1e4)
        weights = F.softmax(scores, dim=-1)
        out = torch.matmul(weights, value)
        rel_values = self._relative_embeddings(self.emb_rel_v, length)
        out = out + torch.matmul(self._absolute_to_relative(weights), rel_values.unsqueeze(0))
        return self.conv_o(out.transpose(2, 3).contiguous().view(batch, channels, length))


class FeedForward(nn.Module):
    def __init__(self, channels: int, filter_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)

    def _same(self, x: Tensor) -> Tensor:
        return F.pad(x, ((self.kernel_size - 1) // 2, self.kernel_size // 2)) if self.kernel_size > 1 else x

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = torch.relu(self.conv_1(self._same(x * mask)))
        return self.conv_2(self._same(x * mask)) * mask


class Encoder(nn.Module):
    def __init__(self, channels: int, filter_channels: int, n_heads: int, n_layers: int, kernel_size: int) -> None:
        super().__init__()
        self.attn_layers = nn.ModuleList(RelativeAttention(channels, n_heads) for _ in range(n_layers))
        self.norm_layers_1 = nn.ModuleList(ChannelLayerNorm(channels) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(FeedForward(channels, filter_channels, kernel_size) for _ in range(n_layers))
        self.norm_layers_2 = nn.ModuleList(ChannelLayerNorm(channels) for _ in range(n_layers))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        attn_mask = mask.unsqueeze(2) * mask.unsqueeze(-1)
        x = x * mask
        for attn, norm_1, ffn, norm_2 in zip(self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2, strict=True):
            x = norm_1(x + attn(x, attn_mask))
            x = norm_2(x + ffn(x, mask))
        return x * mask


class PriorEncoder(nn.Module):
    """Upstream's ``TextEncoder``: PPG (whisper) + units (hubert-soft) + coarse pitch -> the prior's mean and log-scale."""

    def __init__(self, ppg_dim: int, vec_dim: int, out_channels: int, hidden: int, filter_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(ppg_dim, hidden, kernel_size=5, padding=2)
        self.hub = nn.Conv1d(vec_dim, hidden, kernel_size=5, padding=2) if vec_dim else None  # v1 reads no units
        self.pit = nn.Embedding(F0_BINS, hidden)
        self.enc = Encoder(hidden, filter_channels, n_heads=2, n_layers=6, kernel_size=3)
        self.proj = nn.Conv1d(hidden, out_channels * 2, 1)

    def forward(self, ppg: Tensor, lengths: Tensor, vec: Optional[Tensor], coarse_f0: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        ppg = ppg.transpose(1, -1)
        mask = sequence_mask(lengths, ppg.size(2)).unsqueeze(1).to(ppg.dtype)
        x = self.pre(ppg) * mask
        if self.hub is not None:
            if vec is None:
                raise ValueError("a v2 model needs hubert-soft units")
            x = x + self.hub(vec.transpose(1, -1)) * mask
        x = x + self.pit(coarse_f0).transpose(1, 2)
        x = self.enc(x * mask, mask)
        mean, log_scale = torch.split(self.proj(x) * mask, self.out_channels, dim=1)
        return mean, log_scale, mask


class WaveNet(nn.Module):
    """Gated dilated convolutions with weight norm (upstream's ``WN``, without a global condition)."""

    def __init__(self, hidden: int, kernel_size: int, dilation_rate: int, n_layers: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = dilation_rate ** i
            self.in_layers.append(weight_norm(nn.Conv1d(hidden, 2 * hidden, kernel_size, dilation=dilation,
                                                        padding=(kernel_size * dilation - dilation) // 2)))
            self.res_skip_layers.append(weight_norm(nn.Conv1d(hidden, 2 * hidden if i < n_layers - 1 else hidden, 1)))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        output = torch.zeros_like(x)
        last = len(self.in_layers) - 1
        for i, (in_layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers, strict=True)):
            h = in_layer(x)
            acts = res_skip(torch.tanh(h[:, :self.hidden]) * torch.sigmoid(h[:, self.hidden:]))
            if i < last:
                x = (x + acts[:, :self.hidden]) * mask
                output = output + acts[:, self.hidden:]
            else:
                output = output + acts
        return output * mask


class CouplingLayer(nn.Module):
    """A mean-only affine coupling whose halves are normalised by the speaker (SNAC), reversed for inference."""

    def __init__(self, channels: int, hidden: int, kernel_size: int, dilation_rate: int, n_layers: int, spk_dim: int) -> None:
        super().__init__()
        self.half = channels // 2
        self.pre = nn.Conv1d(self.half, hidden, 1)
        self.enc = WaveNet(hidden, kernel_size, dilation_rate, n_layers)
        self.post = nn.Conv1d(hidden, self.half, 1)
        self.snac = nn.Conv1d(spk_dim, 2 * self.half, 1)

    def reverse(self, x: Tensor, mask: Tensor, spk: Tensor) -> Tensor:
        speaker_m, speaker_v = self.snac(spk.unsqueeze(-1)).chunk(2, dim=1)
        x0, x1 = torch.split(x, [self.half] * 2, 1)
        x0_norm = (x0 - speaker_m) * torch.exp(-speaker_v) * mask
        mean = self.post(self.enc(self.pre(x0_norm) * mask, mask)) * mask
        x1 = (x1 - mean) * mask
        x1 = (speaker_m + x1 * torch.exp(speaker_v)) * mask
        return torch.cat([x0, x1], 1)


class Flip(nn.Module):
    def reverse(self, x: Tensor, mask: Tensor, spk: Tensor) -> Tensor:
        return torch.flip(x, [1])


class Flow(nn.Module):
    def __init__(self, channels: int, hidden: int, spk_dim: int, n_flows: int = 4) -> None:
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(CouplingLayer(channels, hidden, 5, 1, 4, spk_dim))
            self.flows.append(Flip())

    def reverse(self, x: Tensor, mask: Tensor, spk: Tensor) -> Tensor:
        for flow in reversed(self.flows):
            x = flow.reverse(x, mask, spk)
        return x


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> Tensor:
    """A Kaiser-windowed sinc low-pass, normalised to sum 1, shaped [1, 1, kernel_size] (alias-free resampling)."""
    even = kernel_size % 2 == 0
    half_size = kernel_size // 2
    attenuation = 2.285 * (half_size - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    time = (torch.arange(-half_size, half_size) + 0.5) if even else (torch.arange(kernel_size) - half_size)
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (taps / taps.sum()).view(1, 1, kernel_size)


class UpSample1d(nn.Module):
    def __init__(self, ratio: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        self.ratio = ratio
        self.pad = kernel_size // ratio - 1
        self.pad_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.pad_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.filter.expand(channels, -1, -1), stride=self.ratio, groups=channels)
        return x[..., self.pad_left:-self.pad_right]


class LowPassFilter1d(nn.Module):
    def __init__(self, cutoff: float, half_width: float, stride: int, kernel_size: int) -> None:
        super().__init__()
        even = kernel_size % 2 == 0
        self.pad_left = kernel_size // 2 - int(even)
        self.pad_right = kernel_size // 2
        self.stride = stride
        self.register_buffer("filter", kaiser_sinc_filter(cutoff, half_width, kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(channels, -1, -1), stride=self.stride, groups=channels)


class DownSample1d(nn.Module):
    def __init__(self, ratio: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, ratio, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.lowpass(x)


class SnakeBeta(nn.Module):
    """x + 1/beta * sin^2(alpha * x), alpha and beta kept as logarithms."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        alpha = torch.exp(self.alpha.unsqueeze(0).unsqueeze(-1))
        beta = torch.exp(self.beta.unsqueeze(0).unsqueeze(-1))
        return x + (1.0 / (beta + 1e-9)) * torch.pow(torch.sin(x * alpha), 2)


class SnakeAlias(nn.Module):
    """The snake activation at twice the rate, between alias-free up- and down-sampling."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.act = SnakeBeta(channels)
        self.upsample = UpSample1d(2, 12)
        self.downsample = DownSample1d(2, 12)

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(self.act(self.upsample(x)))


def padding_for(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class AMPBlock(nn.Module):
    """Residual dilated convolutions: with anti-aliased snake activations (v2, BigVGAN) or leaky ReLUs (v1, HiFi-GAN)."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int], snake: bool = True) -> None:
        super().__init__()
        self.snake = snake
        self.convs1 = nn.ModuleList(weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d,
                                                          padding=padding_for(kernel_size, d))) for d in dilations)
        self.convs2 = nn.ModuleList(weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=1,
                                                          padding=padding_for(kernel_size))) for _ in dilations)
        if snake:
            self.activations = nn.ModuleList(SnakeAlias(channels) for _ in range(2 * len(dilations)))

    def forward(self, x: Tensor) -> Tensor:
        if not self.snake:
            for conv1, conv2 in zip(self.convs1, self.convs2, strict=True):
                x = conv2(F.leaky_relu(conv1(F.leaky_relu(x, 0.1)), 0.1)) + x
            return x
        for conv1, conv2, act1, act2 in zip(self.convs1, self.convs2, self.activations[::2], self.activations[1::2], strict=True):
            x = conv2(act2(conv1(act1(x)))) + x
        return x


class SpeakerAdapter(nn.Module):
    """Normalises each frame over its channels, then scales and shifts it by the singer embedding."""

    def __init__(self, speaker_dim: int, adapter_dim: int, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.W_scale = nn.Linear(speaker_dim, adapter_dim)
        self.W_bias = nn.Linear(speaker_dim, adapter_dim)

    def forward(self, x: Tensor, speaker: Tensor) -> Tensor:
        x = x.transpose(1, -1)
        mean = x.mean(dim=-1, keepdim=True)
        std = (((x - mean) ** 2).mean(dim=-1, keepdim=True) + self.epsilon).sqrt()
        y = (x - mean) / std * self.W_scale(speaker).unsqueeze(1) + self.W_bias(speaker).unsqueeze(1)
        return y.transpose(1, -1)


MERGE_WEIGHTS = (0.2942, -0.2243, 0.0033, -0.0056, -0.0020, -0.0046, 0.0221, -0.0083, -0.0241, -0.0036, -0.0581)
MERGE_BIAS = 0.0008
MERGE_WEIGHTS_V1 = (-0.1044, -0.4892, -0.4733, 0.4337, -0.2321, -0.1889, 0.1315, -0.1002, 0.0590)
MERGE_BIAS_V1 = -0.2908
"""Fixed (trained, then frozen) weights that merge the fundamental and its overtones; checkpoints carry them too."""


class SineSource(nn.Module):
    """The NSF excitation: the pitch's fundamental and 10 overtones (v1: 8) as sines (noise where unvoiced), merged by fixed
    weights (buffers ``merge_w``/``merge_b``) and a tanh. Random draws in upstream's order: initial phases of the
    overtones (``torch.rand``), then the additive noise (``torch.randn``)."""

    def __init__(self, sampling_rate: int, sine_amp: float = 0.1, noise_std: float = 0.003, v1: bool = False) -> None:
        super().__init__()
        self.sampling_rate = sampling_rate
        self.sine_amp = sine_amp
        self.noise_std = noise_std
        self.harmonics = len(MERGE_WEIGHTS_V1 if v1 else MERGE_WEIGHTS) - 1
        self.register_buffer("merge_w", torch.tensor([MERGE_WEIGHTS_V1 if v1 else MERGE_WEIGHTS], dtype=torch.float32))
        self.register_buffer("merge_b", torch.tensor([MERGE_BIAS_V1 if v1 else MERGE_BIAS], dtype=torch.float32))

    def forward(self, f0: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """f0: [batch, samples, 1] in Hz (0 = unvoiced) -> excitation [batch, samples, 1]."""
        harmonics = f0 * torch.arange(1, self.harmonics + 2, device=f0.device, dtype=f0.dtype)
        phase_step = (harmonics / self.sampling_rate) % 1
        initial = torch.rand(f0.shape[0], self.harmonics + 1, generator=generator).to(f0.device)  # drawn on the CPU: one stream anywhere
        initial[:, 0] = 0
        phase_step[:, 0, :] = phase_step[:, 0, :] + initial
        # Wrap the running phase at each whole turn, so that the cumulative sum stays small (float32 precision).
        wrapped = torch.cumsum(phase_step, 1) % 1
        turns = torch.zeros_like(phase_step)
        turns[:, 1:, :] = ((wrapped[:, 1:, :] - wrapped[:, :-1, :]) < 0) * -1.0
        sines = torch.sin(torch.cumsum(phase_step + turns, dim=1) * 2 * np.pi) * self.sine_amp
        voiced = (f0 > 0).to(f0.dtype)
        noise_amp = voiced * self.noise_std + (1 - voiced) * self.sine_amp / 3
        noise = noise_amp * torch.randn(sines.shape, dtype=sines.dtype, generator=generator).to(f0.device)
        merged = F.linear(sines * voiced + noise, self.merge_w) + self.merge_b
        return torch.tanh(merged)


class Generator(nn.Module):
    """BigVGAN with NSF: speaker adapter, a pre-convolution, transposed-convolution upsampling (each stage adding the
    excitation through a strided convolution) and anti-aliased AMP residual blocks."""

    def __init__(self, hp: Dict[str, Any]) -> None:
        super().__init__()
        gen, vits, data = hp["gen"], hp["vits"], hp["data"]
        self.v1 = is_v1(hp)
        rates: List[int] = list(gen["upsample_rates"])
        initial = int(gen["upsample_initial_channel"])
        self.num_kernels = len(gen["resblock_kernel_sizes"])
        self.upsample_factor = int(np.prod(rates))
        self.adapter = SpeakerAdapter(int(vits["spk_dim"]), int(gen["upsample_input"]))
        self.conv_pre = nn.Conv1d(int(gen["upsample_input"]), initial, 7, 1, padding=3)
        self.m_source = SineSource(int(data["sampling_rate"]), v1=self.v1)
        self.noise_convs = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(rates, gen["upsample_kernel_sizes"], strict=True)):
            channels = initial // (2 ** (i + 1))
            self.ups.append(weight_norm(nn.ConvTranspose1d(initial // (2 ** i), channels, kernel, rate, padding=(kernel - rate) // 2)))
            if i + 1 < len(rates):
                stride = int(np.prod(rates[i + 1:]))
                self.noise_convs.append(nn.Conv1d(1, channels, kernel_size=stride * 2, stride=stride, padding=stride // 2))
            else:
                self.noise_convs.append(nn.Conv1d(1, channels, kernel_size=1))
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            channels = initial // (2 ** (i + 1))
            for kernel, dilations in zip(gen["resblock_kernel_sizes"], gen["resblock_dilation_sizes"], strict=True):
                self.resblocks.append(AMPBlock(channels, int(kernel), [int(d) for d in dilations], snake=not self.v1))
        if not self.v1:
            self.activation_post = SnakeAlias(channels)
        self.conv_post = nn.Conv1d(channels, 1, 7, 1, padding=3, bias=False)

    def pitch_to_source(self, f0: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Frame pitch [batch, frames] -> excitation [batch, 1, frames * hop] (each frame's pitch held over its hop)."""
        upsampled = F.interpolate(f0[:, None], scale_factor=float(self.upsample_factor), mode="nearest")
        return self.m_source(upsampled.transpose(1, 2), generator).transpose(1, 2)

    def forward(self, speaker: Tensor, x: Tensor, source: Tensor) -> Tensor:
        x = self.conv_pre(self.adapter(x, speaker))
        if not self.v1:
            x = x * torch.tanh(F.softplus(x))  # mish
        for i, (up, noise_conv) in enumerate(zip(self.ups, self.noise_convs, strict=True)):
            if self.v1:
                x = F.leaky_relu(x, 0.1)
            x = up(x) + noise_conv(source)
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / self.num_kernels
        x = F.leaky_relu(x) if self.v1 else self.activation_post(x)
        return torch.tanh(self.conv_post(x))


def is_v1(hp: Dict[str, Any]) -> bool:
    """A first-generation config: no hubert units (``vits.vec_dim``)."""
    return not hp["vits"].get("vec_dim")


class SynthesizerInfer(nn.Module):
    """so-vits-svc 5.0's inference model: ``infer(ppg, vec, f0, speaker, lengths, source)`` -> audio [batch, 1, samples]."""

    def __init__(self, hp: Dict[str, Any]) -> None:
        super().__init__()
        vits = hp["vits"]
        self.v1 = is_v1(hp)
        self.hop_length = int(hp["data"]["hop_length"])
        self.sampling_rate = int(hp["data"]["sampling_rate"])
        self.enc_p = PriorEncoder(int(vits["ppg_dim"]), int(vits.get("vec_dim") or 0), int(vits["inter_channels"]),
                                  int(vits["hidden_channels"]), int(vits["filter_channels"]))
        self.flow = Flow(int(vits["inter_channels"]), int(vits["hidden_channels"]), int(vits["spk_dim"]))
        self.dec = Generator(hp)

    def pitch_to_source(self, f0: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return self.dec.pitch_to_source(f0, generator)

    def infer(self, ppg: Tensor, vec: Optional[Tensor], f0: Tensor, speaker: Tensor, lengths: Tensor, source: Tensor,
              generator: Optional[torch.Generator] = None) -> Tensor:
        def draw(like: Tensor) -> Tensor:
            return torch.randn(like.shape, dtype=like.dtype, generator=generator).to(like.device)

        if self.v1:  # upstream v1 perturbs the PPG slightly and draws the encoder's own sample before its 0.7 one
            ppg = ppg + draw(ppg) * 0.0001
        mean, log_scale, mask = self.enc_p(ppg, lengths, vec, f0_to_coarse(f0))
        if self.v1:
            draw(mean)
            z = mean + draw(mean) * torch.exp(log_scale) * 0.7
        else:  # v2 samples the prior at full scale (its z_p), as in training: the draw is part of its output
            z = (mean + draw(mean) * torch.exp(log_scale)) * mask
        z = self.flow.reverse(z, mask, speaker)
        return self.dec(speaker, z * mask, source)

    def remove_weight_norm(self) -> None:
        """Fold the weight-normalised layers' g and v into plain weights (what inference needs; loads first)."""
        for module in self.modules():
            if hasattr(module, "weight_g"):
                remove_weight_norm(module)


def convert_in_chunks(model: SynthesizerInfer, ppg: Tensor, vec: Optional[Tensor], f0: Tensor, speaker: Tensor, source: Tensor,
                      chunk_frames: int = 2500, context_frames: int = 10, generator: Optional[torch.Generator] = None) -> Tensor:
    """Upstream's ``svc_infer`` loop: 25 s chunks with 10 frames of context on each side, cut off after decoding.
    ppg/vec [frames, dim], f0 [frames], speaker [spk_dim], source [1, 1, frames * hop] -> audio [samples].
    v2 drops the take's last sample; v1 keeps it (and where v1 would lose a chunk whose end context runs past the
    input, its output is kept here)."""
    frames = f0.shape[0]
    hop = model.hop_length
    pieces: List[Tensor] = []
    index = 0
    while index < frames:
        start = 0 if index == 0 else index - context_frames
        cut_start = 0 if index == 0 else context_frames * hop
        end = frames if index + chunk_frames + context_frames > frames else index + chunk_frames + context_frames
        audio = model.infer(ppg[start:end].unsqueeze(0), None if vec is None else vec[start:end].unsqueeze(0), f0[start:end].unsqueeze(0),
                            speaker.unsqueeze(0),
                            torch.tensor([end - start], dtype=torch.long, device=f0.device), source[:, :, start * hop:end * hop],
                            generator)[0, 0]
        # upstream cuts [cut_start:-1] at the end (its last sample dropped) and [cut_start:-context*hop] elsewhere
        if end == frames:
            pieces.append(audio[cut_start:] if model.v1 else audio[cut_start:-1])
        else:
            pieces.append(audio[cut_start:-context_frames * hop])
        index += chunk_frames
    return torch.cat(pieces)
