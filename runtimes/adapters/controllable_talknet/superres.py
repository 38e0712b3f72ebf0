"""Controllable TalkNet's optional super-resolution, as the established app (SortAnon/ControllableTalkNet) does it.

The take (22050 Hz, band-limited to 11025 Hz) is resampled to 32 kHz with a Hann-windowed sinc (resampy's
``sinc_window`` filter, 8 zero crossings); a second HiFi-GAN trained at 32 kHz (``hifisr``, jik876's
``{'generator': state_dict}``, hop 512) re-synthesises it from its own mel spectrogram (2048-point FFT, 80 bands
up to 11025 Hz), which gives it a high band the take lacks. That synthesis is denoised (the WaveGlow denoiser's
bias spectrum: the vocoder's output for a seeded random mel, subtracted 35 times over), high-passed at 10.5 kHz
(a 101-tap FIR, causal) and added four times over to the resampled take: the take keeps its own band, gains the
vocoder's 10.5-16 kHz. The output is at 32 kHz. Upstream works on 16-bit integers (truncating twice); this works
in floating point and clips the sum to full scale (upstream's int16 wraps around).

The weights are a shared asset, ``<data>/assets/hifisr``, loaded weights-only once per worker. Numpy and scipy at
import; torch and NeMo's HiFi-GAN Generator when built.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Dict, Tuple

import numpy as np

from runtimes.adapters.common import load_failure
from runtimes.adapters.controllable_talknet.adapter import (
    DENOISE_STRENGTH,
    FULL_SCALE,
    SR_ASSET,
    SR_RATE,
    flat_to_nested,
    nested_to_flat,
    vocoder_shape,
)
from runtimes.errors import BadRequestError

logger = logging.getLogger(__name__)

__all__ = ["SR_ASSET", "SR_RATE", "Denoiser", "SuperResolution", "high_pass", "resample_sinc", "seeded_generator", "sinc_table"]
MEL_N_FFT, MEL_BANDS, MEL_HOP, MEL_WINDOW = 2048, 80, 512, 2048
MEL_FMIN_HZ, MEL_FMAX_HZ = 0.0, 11025.0
MEL_LOG_FLOOR = 1e-5
RESAMPLE_ZEROS, RESAMPLE_PRECISION_BITS, RESAMPLE_ROLLOFF = 8, 9, 0.945
"""resampy's ``sinc_window`` with a Hann taper and 8 zero crossings (upstream's choice); precision and roll-off are
resampy's defaults."""
DENOISE_FFT, DENOISE_HOP = 1024, 256
DENOISE_SEED, DENOISE_MEL_FRAMES = 1234, 88
"""Upstream seeds torch with its config's seed (1234) before building the vocoder, then draws the denoiser's random
mel (80 x 88): the same draws after building a vocoder of the same shape give the same bias."""
HIGH_PASS_TAPS, HIGH_PASS_CUTOFF_HZ = 101, 10500.0
HIGH_BAND_GAIN = 4.0
"""Upstream's "superres strength"."""


def sinc_table() -> np.ndarray:
    """The right wing of the windowed-sinc interpolation filter, ``2**precision`` entries per zero crossing."""
    from scipy.signal.windows import hann

    per_zero = 2 ** RESAMPLE_PRECISION_BITS
    count = per_zero * RESAMPLE_ZEROS
    sinc = RESAMPLE_ROLLOFF * np.sinc(RESAMPLE_ROLLOFF * np.linspace(0, RESAMPLE_ZEROS, num=count + 1, endpoint=True))
    return np.asarray(hann(2 * count + 1)[count:] * sinc, dtype=np.float64)


def resample_sinc(audio: np.ndarray, rate_in_hz: int, rate_out_hz: int) -> np.ndarray:
    """Band-limited interpolation of ``audio`` to ``rate_out_hz`` (float64, ``int(len * out / in)`` samples): each
    output sample sums the input's neighbours weighted by the sinc table, linearly interpolated between entries."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    ratio = float(rate_out_hz) / float(rate_in_hz)
    count = int(x.size * float(rate_out_hz) / float(rate_in_hz))
    if count < 1:
        raise BadRequestError("the take is too short to resample (%d samples)" % x.size)
    table = sinc_table()
    if ratio < 1:
        table = table * ratio  # downsampling: the filter's cut-off follows the lower rate
    delta = np.diff(table, append=table[-1])
    per_zero = 2 ** RESAMPLE_PRECISION_BITS
    scale = min(1.0, ratio)
    step = int(scale * per_zero)
    times = np.arange(count) * (1.0 / ratio)
    whole = times.astype(np.int64)
    out = np.zeros(count, dtype=np.float64)
    most_taps = table.size // step + 1
    for fraction, reach, direction in (
        (scale * (times - whole), whole + 1, -1),  # left wing: x[n], x[n-1], ...
        (scale - scale * (times - whole), x.size - whole - 1, 1),  # right wing: x[n+1], x[n+2], ...
    ):
        position = fraction * per_zero
        offset = position.astype(np.int64)
        eta = position - offset
        taps = np.minimum(reach, (table.size - offset) // step)
        for tap in range(most_taps):
            live = tap < taps
            if not live.any():
                break
            index = np.where(live, offset + tap * step, 0)
            source = np.where(live, whole - tap if direction < 0 else whole + tap + 1, 0)
            out += np.where(live, (table[index] + eta * delta[index]) * x[source], 0.0)
    return out


def high_pass(audio: np.ndarray, rate_hz: int) -> np.ndarray:
    """The FIR high-pass upstream applies to the super-resolution vocoder's output (causal: its 50-sample delay stays)."""
    from scipy.signal import firwin, lfilter

    taps = firwin(HIGH_PASS_TAPS, cutoff=HIGH_PASS_CUTOFF_HZ, fs=rate_hz, pass_zero=False)
    return np.asarray(lfilter(taps, [1.0], audio), dtype=np.float64)


def seeded_generator(shape: Dict[str, Any]) -> Tuple[Any, Any]:
    """NeMo's HiFi-GAN ``Generator(**shape)`` built as upstream builds a vocoder (torch seeded with its config's seed
    first, so that the layers' initial draws are the same), and the random mel its denoiser draws next. Torch's
    global random state is left as it was (upstream reseeds it globally)."""
    import torch
    from nemo.collections.tts.modules.hifigan_modules import Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DENOISE_SEED)
        generator = Generator(**shape)
        noise_mel = torch.randn((1, MEL_BANDS, DENOISE_MEL_FRAMES))
    return generator, noise_mel


class Denoiser:
    """Upstream's denoiser (WaveGlow's, adapted to HiFi-GAN) for one vocoder: the bias is the magnitude spectrum of the
    vocoder's output for a random mel (its first frame); denoising subtracts it ``DENOISE_STRENGTH`` times from the
    audio's magnitudes, floored at 0, phases kept. The audio is at 16-bit full scale, the bias is not (as upstream)."""

    def __init__(self, generator: Any, noise_mel: Any, device: str) -> None:
        import torch

        self.torch = torch
        self.window = torch.hann_window(DENOISE_FFT).to(device)
        with torch.no_grad():
            bias_audio = generator(x=noise_mel.to(device)).reshape(1, -1).float()
            self.bias = self.stft(bias_audio)[0][:, :, :1]  # the first frame's magnitudes, as upstream keeps them

    def stft(self, audio: Any) -> Any:
        """Magnitude and phase (reflect-padded, centred frames of a periodic Hann window), as the denoiser reads them."""
        spectrum = self.torch.stft(audio, DENOISE_FFT, hop_length=DENOISE_HOP, win_length=DENOISE_FFT, window=self.window,
                                   center=True, pad_mode="reflect", return_complex=True)
        return spectrum.abs(), spectrum.angle()

    def __call__(self, audio: Any, strength: float = DENOISE_STRENGTH) -> Any:
        """``audio`` (1 x samples) denoised; ``len // hop * hop`` samples come back, as upstream's inverse gives. Audio
        too short for one reflect-padded frame (upstream fails on it) comes back as it is."""
        torch = self.torch
        if audio.shape[-1] <= DENOISE_FFT // 2:
            return audio.reshape(1, -1)
        magnitude, phase = self.stft(audio)
        magnitude = torch.clamp(magnitude - self.bias * strength, min=0.0)
        length = audio.shape[-1] // DENOISE_HOP * DENOISE_HOP
        return torch.istft(torch.polar(magnitude, phase), DENOISE_FFT, hop_length=DENOISE_HOP, win_length=DENOISE_FFT,
                           window=self.window, center=True, length=length)


class SuperResolution:
    """The super-resolution vocoder and its denoiser's bias, built once per worker from ``hifisr``'s weights."""

    def __init__(self, path: str, device: str) -> None:
        import torch

        self.torch, self.device = torch, device
        where = "assets/%s" % SR_ASSET
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # the weights-only unpickler's refusals and torch's reader errors
            raise BadRequestError("super-resolution: " + load_failure(where, exc)) from None
        state = checkpoint.get("generator") if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise BadRequestError("super-resolution: %s is not a HiFi-GAN checkpoint (it has no 'generator' weights)" % where)
        try:
            state = nested_to_flat(state)
            shape = vocoder_shape(state)
        except Exception as exc:
            raise BadRequestError("super-resolution: " + load_failure(where, exc)) from exc
        hop = int(np.prod(shape["upsample_rates"]))
        if hop != MEL_HOP or shape["initial_input_size"] != MEL_BANDS:
            raise BadRequestError("super-resolution: %s is not the 32 kHz super-resolution HiFi-GAN (it takes %d mel bands at hop %d; "
                                  "hifisr takes %d at hop %d)" % (where, shape["initial_input_size"], hop, MEL_BANDS, MEL_HOP))
        try:
            generator, noise_mel = seeded_generator(shape)
            generator.load_state_dict(flat_to_nested(state, len(shape["resblock_kernel_sizes"])), strict=True)
        except Exception as exc:
            raise BadRequestError("super-resolution: " + load_failure(where, exc)) from exc
        with contextlib.redirect_stdout(io.StringIO()):  # NeMo prints as it removes weight norm
            generator.remove_weight_norm()
        self.generator = generator.eval().to(device)
        self.mel_window = torch.hann_window(MEL_WINDOW).to(device)
        import librosa

        self.mel_basis = torch.from_numpy(librosa.filters.mel(sr=SR_RATE, n_fft=MEL_N_FFT, n_mels=MEL_BANDS, fmin=MEL_FMIN_HZ,
                                                              fmax=MEL_FMAX_HZ)).float().to(device)
        self.denoiser = Denoiser(self.generator, noise_mel, device)
        self.bias = self.denoiser.bias

    def denoise(self, audio: Any) -> Any:
        """This vocoder's denoiser (``Denoiser``) on ``audio`` at 16-bit full scale."""
        return self.denoiser(audio)

    def mel(self, wave: Any) -> Any:
        """jik876's training mel: reflect-padded by (n_fft - hop) / 2, uncentred frames, natural log floored at 1e-5."""
        torch = self.torch
        pad = (MEL_N_FFT - MEL_HOP) // 2
        padded = torch.nn.functional.pad(wave.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spectrum = torch.stft(padded, MEL_N_FFT, hop_length=MEL_HOP, win_length=MEL_WINDOW, window=self.mel_window, center=False,
                              return_complex=True)
        magnitude = torch.sqrt(spectrum.real ** 2 + spectrum.imag ** 2 + 1e-9)
        return torch.log(torch.clamp(torch.matmul(self.mel_basis, magnitude), min=MEL_LOG_FLOOR))

    def __call__(self, take: np.ndarray, rate_hz: int) -> np.ndarray:
        """``take`` (floats at ``rate_hz``) at 32 kHz with the vocoder's high band added; as long as the take."""
        torch = self.torch
        wave = resample_sinc(np.asarray(take, dtype=np.float64) * FULL_SCALE, rate_hz, SR_RATE)
        if wave.size <= MEL_N_FFT:  # too short for one mel frame of the vocoder: the take alone, resampled
            return np.asarray(np.clip(wave / FULL_SCALE, -1.0, 1.0), dtype=np.float32)
        with torch.no_grad():
            signal = torch.from_numpy(wave / FULL_SCALE).float().unsqueeze(0).to(self.device)
            synthesis = self.generator(x=self.mel(signal)).reshape(1, -1) * FULL_SCALE
            denoised = self.denoise(synthesis).reshape(-1).double().cpu().numpy()
        band = high_pass(denoised, SR_RATE) * HIGH_BAND_GAIN
        mix = wave.copy()
        mix[: band.size] += band[: mix.size]
        return np.asarray(np.clip(mix / FULL_SCALE, -1.0, 1.0), dtype=np.float32)

