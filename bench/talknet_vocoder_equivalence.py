"""Controllable TalkNet's character vocoder with upstream's denoiser: upstream's ``HiFiGAN.vocode`` (SortAnon/
ControllableTalkNet's core/vocoder.py, SortAnon/hifi-gan beside it: the vocoder built with torch seeded, its
denoiser's bias from a random mel, the output at 16-bit full scale denoised with strength 35) beside ours
(TalkNetAdapter._vocoder + vocode, which reuse superres.Denoiser), on the same random weights and the same mel.
Run in the controllable_talknet env with resampy importable (upstream's vocoder.py imports it; e.g. an unpacked
resampy 0.4.3 wheel on PYTHONPATH), given the two checkouts (nothing of them is in this project):

    PYTHONPATH=/tmp/resampy data/envs/controllable_talknet/bin/python bench/talknet_vocoder_equivalence.py \\
        /path/to/ControllableTalkNet /path/to/hifi-gan [--write-reference]

Upstream runs unchanged through talknet_sr_equivalence.py's adapters for today's torch and librosa. Upstream's
output is truncated to int16; ours is floating point: the difference is printed as it is and with that truncation
applied to ours. Also compared: the denoiser's bias, the denoiser alone on a signal as quiet as its bias (where its
effect shows), and how much the denoiser changes the take (ours with and without it).

1. Real size (upstream's config_v1, the config it builds every character's vocoder with): a 2 s mel.
2. Tiny (16 initial channels, 0.3 s): with ``--write-reference`` stored as tests/data/talknet_vocoder_reference.npz
   for tests/runtimes/test_talknet_vocoder.py.
Writes bench/results/talknet_vocoder_equivalence.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.talknet_sr_equivalence import old_call_forms, randomize, upstream_module  # noqa: E402  (after the path)

RESULT = ROOT / "bench" / "results" / "talknet_vocoder_equivalence.txt"
REFERENCE = ROOT / "tests" / "data" / "talknet_vocoder_reference.npz"
RATE, HOP, FULL_SCALE = 22050, 256, 32768.0


def spect(frames: int, seed: int) -> Any:
    """A mel like TalkNet's (natural log magnitudes, -11.5 silence to ~1 loud): a voiced band sweeping up and down over a
    quiet floor, with a silent stretch in the middle (where the denoiser's subtraction shows)."""
    import torch

    rng = np.random.default_rng(seed)
    bands = np.arange(80)[:, None]
    t = np.arange(frames)[None, :]
    centre = 20 + 12 * np.sin(2 * np.pi * t / max(frames, 1))
    mel = -9.0 + 8.0 * np.exp(-((bands - centre) ** 2) / 60.0) + 0.5 * rng.standard_normal((80, frames))
    mel[:, frames * 2 // 5: frames * 3 // 5] = -11.0 + 0.3 * rng.standard_normal((80, frames * 3 // 5 - frames * 2 // 5))
    return torch.from_numpy(mel[None].astype(np.float32))


def loud(model: Any, mel: Any) -> None:
    """The last layer scaled so that the take peaks near 0.8 of full scale, as a trained vocoder's does (random weights
    give a quiet take, where upstream's int16 truncation would weigh more than it does on a real one)."""
    import torch

    with torch.no_grad():
        peak = float(model(mel).abs().max())
        gain = float(np.arctanh(0.8) / np.arctanh(min(peak, 0.99)))
        model.conv_post.weight_g.mul_(gain)
        model.conv_post.bias.mul_(gain)


def compare(module: Any, adapter: Any, cwd: Path, config: Dict[str, Any], seconds: float,
            seed: int) -> Tuple[List[str], Dict[str, Any], float]:
    import torch

    name = "config_bench_v1_%d" % int(config["upsample_initial_channel"])
    (cwd / "hifi-gan" / (name + ".json")).write_text(json.dumps(config))
    theirs_model = module.Generator(module.AttrDict(config))
    randomize(theirs_model, seed)
    mel = spect(int(seconds * RATE / HOP), seed + 1)
    loud(theirs_model, mel)
    state = {k: v.clone() for k, v in theirs_model.state_dict().items()}
    weights = cwd / ("hifiganmodel-%s" % name)
    torch.save({"generator": state}, weights)
    started = time.time()
    theirs = module.HiFiGAN(str(weights), name, "cpu")
    with torch.no_grad():
        upstream_out, _ = theirs.vocode(mel)
    upstream_s = time.time() - started
    started = time.time()
    generator, denoiser = adapter._vocoder(str(weights))
    character = {"vocoder": generator, "denoiser": denoiser}
    out = adapter.vocode(character, mel, True).astype(np.float64) * FULL_SCALE
    ours_s = time.time() - started
    plain = adapter.vocode(character, mel, False).astype(np.float64) * FULL_SCALE
    upstream = upstream_out.astype(np.float64)
    if out.shape != upstream.shape:
        raise SystemExit("shapes differ: upstream %s, ours %s" % (upstream.shape, out.shape))
    bias_theirs = theirs.denoiser.bias_spec.reshape(-1)
    bias_diff = float((denoiser.bias.reshape(-1).cpu() - bias_theirs).abs().max() / bias_theirs.abs().max())
    quiet = torch.from_numpy(np.random.default_rng(seed + 2).standard_normal(8192).astype(np.float32) * 2.0).unsqueeze(0)
    with torch.no_grad():
        quiet_theirs = theirs.denoiser(quiet, strength=35)[:, 0].reshape(-1).numpy()
        quiet_ours = denoiser(quiet).reshape(-1).numpy()
    if quiet_ours.shape != quiet_theirs.shape:
        raise SystemExit("the denoisers' outputs differ in shape: upstream %s, ours %s" % (quiet_theirs.shape, quiet_ours.shape))
    quiet_diff = float(np.abs(quiet_ours - quiet_theirs).max() / np.abs(quiet_theirs).max())
    power_in = np.sum(quiet.numpy()[0, : quiet_theirs.size].astype(np.float64) ** 2)
    removed = 1.0 - float(np.sum(quiet_theirs.astype(np.float64) ** 2) / power_in)
    peak = float(np.abs(upstream).max())
    diff = np.abs(out - upstream)
    truncated = np.trunc(out)
    relative = float(diff.max()) / peak
    middle = slice(out.size * 2 // 5 + HOP, out.size * 3 // 5 - HOP)  # the silent stretch
    lines = [
        "  %d parameters; %d mel frames -> %d samples at %d Hz (both); upstream %.2f s, ours %.2f s (build + denoiser + vocode)" % (
            sum(p.numel() for p in theirs_model.parameters()), mel.shape[-1], out.size, RATE, upstream_s, ours_s),
        "  denoiser bias (the vocoder's output for the seeded random mel): max |diff| %.3g relative" % bias_diff,
        "  denoiser alone on a signal at its bias's level (%.0f%% of the power removed): max |diff| %.3g relative" % (
            100 * removed, quiet_diff),
        "  the denoiser's effect on the take (ours on vs off): max %.1f LSB, rms %.2f LSB; where the mel is silent "
        "(a random vocoder is not) rms %.2f -> %.2f LSB" % (
            float(np.abs(out - plain).max()), float(np.sqrt(np.mean((out - plain) ** 2))), float(np.sqrt(np.mean(plain[middle] ** 2))),
            float(np.sqrt(np.mean(out[middle] ** 2)))),
        "  output: peak %.0f LSB; max |diff| %.3g LSB = %.3g relative to the peak (target < 1e-4); mean |diff| %.3g LSB" % (
            peak, float(diff.max()), relative, float(diff.mean())),
        "  with upstream's int16 truncation applied to ours: max |diff| %.3g LSB, %d of %d samples differ" % (
            float(np.abs(truncated - upstream).max()), int(np.count_nonzero(np.abs(truncated - upstream) > 0.5)), out.size),
    ]
    case = {"state_" + k: v.numpy() for k, v in state.items()}
    case.update({"mel": mel.numpy(), "upstream_out": upstream, "quiet": quiet.numpy()[0], "quiet_denoised": quiet_theirs,
                 "upstream_bias": bias_theirs.numpy(), "config_json": np.array(json.dumps(config))})
    return lines, case, relative


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("talknet", type=Path, help="a checkout of SortAnon/ControllableTalkNet")
    parser.add_argument("hifigan", type=Path, help="a checkout of SortAnon/hifi-gan (upstream clones it into its folder as hifi-gan)")
    parser.add_argument("--write-reference", action="store_true")
    args = parser.parse_args()
    import torch

    from runtimes.adapters.controllable_talknet.adapter import TalkNetAdapter

    adapter = TalkNetAdapter()
    adapter.load_shared("cpu")  # NeMo with the shims, as the worker has it
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    old_call_forms()
    commits = [(path / ".commit").read_text().strip() if (path / ".commit").is_file() else
               os.popen("git -C %s rev-parse HEAD 2>/dev/null" % path).read().strip() or "(commit unknown)"
               for path in (args.talknet, args.hifigan)]
    real = json.loads((args.hifigan / "config_v1.json").read_text())
    tiny = dict(real, upsample_initial_channel=16)
    lines = ["Controllable TalkNet character vocoder + denoiser: upstream's HiFiGAN.vocode vs ours (TalkNetAdapter.vocode), CPU",
             "upstream: %s at %s, %s at %s; torch %s; %s" % (args.talknet, commits[0], args.hifigan, commits[1], torch.__version__,
                                                              time.strftime("%Y-%m-%d")),
             "differences in 16-bit steps (LSB, 1/32768 of full scale), upstream's output being int16 values", ""]
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="talknet-voc-") as folder:
        cwd = Path(folder)
        (cwd / "hifi-gan").mkdir()
        for entry in args.hifigan.iterdir():
            (cwd / "hifi-gan" / entry.name).symlink_to(entry.resolve())
        os.chdir(cwd)
        module = upstream_module(args.talknet, cwd / "hifi-gan")
        for label, config, seconds, reference in (("real size (upstream's config_v1)", real, 2.0, None),
                                                  ("tiny (the stored reference's)", tiny, 0.3, REFERENCE)):
            found, case, relative = compare(module, adapter, cwd, config, seconds, seed=40)
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
