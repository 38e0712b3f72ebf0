"""Controllable TalkNet's super-resolution: upstream's ``HiFiGAN.superres`` (SortAnon/ControllableTalkNet's
core/vocoder.py with SortAnon/hifi-gan beside it, as its Dockerfile clones it) beside ours
(runtimes/adapters/controllable_talknet/superres.py), on the same random weights and the same take. Run in the
controllable_talknet env with resampy importable (upstream's resampler; not in the env: e.g. an unpacked
resampy 0.4.3 wheel on PYTHONPATH), given the two checkouts (nothing of them is in this project):

    PYTHONPATH=/tmp/resampy data/envs/controllable_talknet/bin/python bench/talknet_sr_equivalence.py \\
        /path/to/ControllableTalkNet /path/to/hifi-gan [--write-reference]

Upstream ran on torch 1.8, librosa 0.8 and a GPU; here it runs unchanged on today's libraries through adapters
that only restore the old call forms: ``.cuda()`` is the identity without a GPU, ``torch.stft`` without
``return_complex`` answers the old real view, ``librosa``'s ``mel`` and ``pad_center`` take their old positional
arguments. Upstream's take is 16-bit (its vocoder's output) and it truncates to int16 twice (the resampled take,
the added band); ours works in floating point, so besides the difference as it is, the difference with those two
truncations applied to our parts is printed (that isolates the arithmetic).

1. Real size (upstream's config_32k: HiFi-GAN with 256 initial channels, hop 512): a 2 s take.
2. Tiny (16 initial channels, 0.4 s): with ``--write-reference`` stored as tests/data/talknet_sr_reference.npz for
   tests/runtimes/test_talknet_superres.py.
Writes bench/results/talknet_sr_equivalence.txt.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "talknet_sr_equivalence.txt"
REFERENCE = ROOT / "tests" / "data" / "talknet_sr_reference.npz"
TAKE_RATE = 22050
FULL_SCALE = 32768.0


def old_call_forms() -> None:
    """Today's torch and librosa answering the calls upstream makes in their old forms (no arithmetic changes)."""
    import librosa.filters
    import librosa.util
    import torch

    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *a, **k: self
        torch.nn.Module.cuda = lambda self, *a, **k: self
    stft = torch.stft

    def old_stft(*args: Any, **kwargs: Any) -> Any:
        if "return_complex" in kwargs:
            return stft(*args, **kwargs)
        return torch.view_as_real(stft(*args, return_complex=True, **kwargs))

    torch.stft = old_stft
    mel, pad_center = librosa.filters.mel, librosa.util.pad_center
    librosa.filters.mel = lambda sr, n_fft, n_mels=128, fmin=0.0, fmax=None, **k: mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin,
                                                                                         fmax=fmax, **k)
    librosa.util.pad_center = lambda data, size=None, **k: pad_center(data, size=size, **k)


def upstream_module(talknet: Path, hifigan_dir: Path) -> Any:
    """Upstream's core/vocoder.py, importing its hifi-gan modules from ``hifigan_dir`` (the cwd's ``hifi-gan``)."""
    sys.path.insert(0, str(hifigan_dir))
    spec = importlib.util.spec_from_file_location("upstream_vocoder", talknet / "core" / "vocoder.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomize(model: Any, seed: int) -> None:
    """Every parameter random (weight-norm g near the norms of v); the last layer small, so that its tanh stays out of
    saturation and four times the high band stays within 16 bits, as with trained weights."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            scale = 0.3 if parameter.dim() <= 1 else 0.5 / max(1.0, float(np.sqrt(parameter[0].numel())))
            if name.startswith("conv_post"):
                scale *= 0.05
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
            if name.endswith("weight_g"):
                parameter.abs_().add_(0.2)


def take(seconds: float, seed: int) -> np.ndarray:
    """A voiced, 16-bit take like a vocoder's: harmonics of a gliding 120-260 Hz pitch, a breath of noise, pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * TAKE_RATE)) / TAKE_RATE
    f0 = 120.0 + 140.0 * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / TAKE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 40) if k * 260.0 < TAKE_RATE / 2)
    voice = voice * (0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t) ** 2) + 0.02 * rng.standard_normal(t.size)
    voice[(t % 0.9) > 0.75] *= 0.01
    voice = 0.9 * voice / np.abs(voice).max()
    return np.asarray(np.trunc(voice * 32767), dtype=np.int16)


def compare(module: Any, cwd: Path, config: Dict[str, Any], seconds: float, seed: int) -> Tuple[List[str], Dict[str, np.ndarray], float]:
    import torch

    from runtimes.adapters.controllable_talknet.superres import SR_RATE, SuperResolution, resample_sinc

    name = "config_bench_%d" % int(config["upsample_initial_channel"])
    (cwd / "hifi-gan" / (name + ".json")).write_text(json.dumps(config))
    theirs_model = module.Generator(module.AttrDict(config))
    randomize(theirs_model, seed)
    state = {k: v.clone() for k, v in theirs_model.state_dict().items()}
    weights = cwd / ("hifisr-%s" % name)
    torch.save({"generator": state}, weights)
    audio = take(seconds, seed + 1)
    started = time.time()
    theirs = module.HiFiGAN(str(weights), name, "cpu")
    with torch.no_grad():
        upstream_out, upstream_rate = theirs.superres(audio, TAKE_RATE)
    upstream_s = time.time() - started
    started = time.time()
    ours = SuperResolution(str(weights), "cpu")
    out = ours(audio / FULL_SCALE, TAKE_RATE).astype(np.float64) * FULL_SCALE
    ours_s = time.time() - started
    if out.shape != upstream_out.shape or upstream_rate != SR_RATE:
        raise SystemExit("shapes or rates differ: upstream %s at %d Hz, ours %s at %d Hz"
                         % (upstream_out.shape, upstream_rate, out.shape, SR_RATE))
    base = resample_sinc(audio.astype(np.float64), TAKE_RATE, SR_RATE)
    truncated = np.trunc(base) + np.trunc(out - base)  # upstream's two int16 truncations applied to our parts
    upstream_base = module.resampy.resample(audio, TAKE_RATE, SR_RATE, filter="sinc_window", window=module.scipy.signal.windows.hann,
                                            num_zeros=8).astype(np.float64)
    bias_diff = float((ours.bias.cpu() - theirs.denoiser.bias_spec.cpu()).abs().max() / theirs.denoiser.bias_spec.abs().max())
    wave = torch.from_numpy(upstream_base / FULL_SCALE).float().unsqueeze(0)
    mel_theirs = module.mel_spectrogram(wave, 2048, 80, SR_RATE, 512, 2048, 0, 11025)
    mel_diff = float((ours.mel(wave) - mel_theirs).abs().max())
    # the denoiser on its own, on a signal as quiet as its bias (on a take its effect is small): upstream's vs ours
    quiet = torch.from_numpy(np.random.default_rng(seed + 2).standard_normal(8192).astype(np.float32) * 2.0).unsqueeze(0)
    with torch.no_grad():
        quiet_theirs = theirs.denoiser(quiet, strength=35)[:, 0].reshape(-1).numpy()
        quiet_ours = ours.denoise(quiet).reshape(-1).numpy()
    if quiet_ours.shape != quiet_theirs.shape:
        raise SystemExit("the denoisers' outputs differ in shape: upstream %s, ours %s" % (quiet_theirs.shape, quiet_ours.shape))
    quiet_diff = float(np.abs(quiet_ours - quiet_theirs).max() / np.abs(quiet_theirs).max())
    power_in = np.sum(quiet.numpy()[0, : quiet_theirs.size].astype(np.float64) ** 2)
    removed = 1.0 - float(np.sum(quiet_theirs.astype(np.float64) ** 2) / power_in)
    diff = np.abs(out - upstream_out)
    peak = float(np.abs(upstream_out).max())
    band = upstream_out - np.trunc(upstream_base)
    relative = float(diff.max()) / peak
    lines = [
        "  %d parameters; %d samples at %d Hz -> %d samples at %d Hz (both); upstream %.2f s, ours %.2f s" % (
            sum(p.numel() for p in theirs_model.parameters()), audio.size, TAKE_RATE, out.size, SR_RATE, upstream_s, ours_s),
        "  resampled take (sinc, Hann, 8 zeros): max |diff| %.3g LSB (upstream's resampy vs ours, both unrounded)" % float(
            np.abs(base - upstream_base).max()),
        "  mel of the resampled take: max |diff| %.3g (log magnitude); denoiser bias: max |diff| %.3g relative" % (mel_diff, bias_diff),
        "  denoiser alone on a signal at its bias's level (%.0f%% of the power removed): max |diff| %.3g relative" % (
            100 * removed, quiet_diff),
        "  added high band: peak %.1f LSB, rms %.2f LSB" % (float(np.abs(band).max()), float(np.sqrt(np.mean(band ** 2)))),
        "  output: peak %.0f LSB; max |diff| %.3g LSB = %.3g relative to the peak (target < 1e-4); mean |diff| %.3g LSB" % (
            peak, float(diff.max()), relative, float(diff.mean())),
        "  with upstream's two int16 truncations applied to our parts: max |diff| %.3g LSB, %d of %d samples differ" % (
            float(np.abs(truncated - upstream_out).max()), int(np.count_nonzero(np.abs(truncated - upstream_out) > 0.5)), out.size),
    ]
    case = {"state_" + k: v.numpy() for k, v in state.items()}
    case.update({"take_int16": audio, "upstream_out": np.asarray(upstream_out, dtype=np.float64), "quiet": quiet.numpy()[0],
                 "quiet_denoised": quiet_theirs, "upstream_bias": theirs.denoiser.bias_spec.reshape(-1).numpy(),
                 "config_json": np.array(json.dumps(config))})
    return lines, case, relative


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("talknet", type=Path, help="a checkout of SortAnon/ControllableTalkNet")
    parser.add_argument("hifigan", type=Path, help="a checkout of SortAnon/hifi-gan (upstream clones it into its folder as hifi-gan)")
    parser.add_argument("--write-reference", action="store_true")
    args = parser.parse_args()
    import torch

    sys.path.insert(0, str(ROOT))
    from runtimes.adapters.controllable_talknet import shims

    shims.apply_before_import()
    import nemo.collections.tts.modules.hifigan_modules  # noqa: F401  (ours builds NeMo's Generator)

    shims.apply_after_import()
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    old_call_forms()
    commits = [(path / ".commit").read_text().strip() if (path / ".commit").is_file() else  # an exported tree names its commit there
               os.popen("git -C %s rev-parse HEAD 2>/dev/null" % path).read().strip() or "(commit unknown)"
               for path in (args.talknet, args.hifigan)]
    real = json.loads((args.hifigan / "config_32k.json").read_text())
    tiny = dict(real, upsample_initial_channel=16)
    lines = ["Controllable TalkNet super-resolution: upstream's HiFiGAN.superres vs ours (controllable_talknet/superres.py), CPU",
             "upstream: %s at %s, %s at %s; torch %s; %s" % (args.talknet, commits[0], args.hifigan, commits[1], torch.__version__,
                                                              time.strftime("%Y-%m-%d")),
             "differences in 16-bit steps (LSB, 1/32768 of full scale), upstream's output being int16 values", ""]
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="talknet-sr-") as folder:
        cwd = Path(folder)
        (cwd / "hifi-gan").mkdir()
        for entry in args.hifigan.iterdir():
            (cwd / "hifi-gan" / entry.name).symlink_to(entry.resolve())
        os.chdir(cwd)
        module = upstream_module(args.talknet, cwd / "hifi-gan")
        for label, config, seconds, reference in (("real size (upstream's config_32k)", real, 2.0, None),
                                                  ("tiny (the stored reference's)", tiny, 0.4, REFERENCE)):
            found, case, relative = compare(module, cwd, config, seconds, seed=30)
            worst = max(worst, relative)
            lines += [label + ":", *found]
            if args.write_reference and reference is not None:
                reference.parent.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(reference, **{k: np.asarray(v) for k, v in case.items()})  # type: ignore[arg-type]
                lines.append("  stored as %s (%d KB)" % (reference.relative_to(ROOT), reference.stat().st_size // 1024))
    lines += ["", "result: %s (worst output difference %.3g relative; target < 1e-4)" % ("PASS" if worst < 1e-4 else "FAIL", worst)]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
