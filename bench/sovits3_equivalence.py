"""so-vits-svc 3.0: upstream's inference model beside ours (its checkpoints mapped onto so-vits-svc-fork's model,
runtimes/adapters/sovits3.py), on the same random weights and inputs, for the 32 kHz and the 48 kHz model:

    data/envs/sovits/bin/python bench/sovits3_equivalence.py <checkout of so-vits-svc's Mera-SVC-32k> [<checkout of Mera-SVC-48k>]

(the svc-develop-team/so-vits-svc branches holding 3.0: ``git archive Mera-SVC-32k | tar -x -C <dir>``). Runs in the
sovits env; upstream's imports it lacks and never reaches here (torchvision, scikit-maad) are stubbed, and numpy 2's
missing ``np.int`` is put back for upstream's pitch function. Per rate, with upstream's real-size generator (its code
fixes the sizes) randomly initialised and perturbed (so zero-initialised layers count too), and a real-size random
hubert-soft:

1. the generator: upstream's ``SynthesizerTrn.infer`` against ours on the same units (repeated as upstream does), pitch,
   speaker and random seed (noise scale 1, upstream's);
2. the content: upstream's ``HubertSoft.units`` against ours on a 2 s recording;
3. the whole conversion of that recording: upstream's resampling, units, ``get_f0`` (and 48 kHz's ``resize2d_f0``),
   then the generator, against ``SovitsV3.units_and_f0`` + ``decode``.

Also writes tests/runtimes/sovits3_reference.npz: a tiny generator made of upstream's own modules (its 3.0 key names
and shapes), its inputs and upstream's output, which tests/runtimes/test_sovits3_reference.py pins our side against.
Results: bench/results/sovits3_equivalence.txt.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "sovits3_equivalence.txt"
REFERENCE = ROOT / "tests" / "runtimes" / "sovits3_reference.npz"
UPSTREAM_MODULES = ("models", "utils", "commons", "modules", "attentions", "hubert", "vdecoder", "inference")


def config_for(rate: int) -> Dict[str, Any]:
    """Upstream 3.0's config template (preprocess_flist_config.py) at ``rate``, three speakers."""
    return {
        "train": {"segment_size": 17920},
        "data": {"max_wav_value": 32768.0, "sampling_rate": rate, "filter_length": 1280, "hop_length": 320, "win_length": 1280,
                 "n_mel_channels": 80, "mel_fmin": 0.0, "mel_fmax": None},
        "model": {"inter_channels": 192, "hidden_channels": 192, "filter_channels": 768, "n_heads": 2, "n_layers": 6,
                  "kernel_size": 3, "p_dropout": 0.1, "resblock": "1", "resblock_kernel_sizes": [3, 7, 11],
                  "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "upsample_rates": [10, 8, 2, 2],
                  "upsample_initial_channel": 512, "upsample_kernel_sizes": [16, 16, 4, 4], "n_layers_q": 3,
                  "use_spectral_norm": False, "gin_channels": 256, "ssl_dim": 256, "n_speakers": 3},
        "spk": {"nen": 0, "paimon": 1, "yunhao": 2},
    }


def import_upstream(checkout: Path) -> Dict[str, Any]:
    """Upstream's modules from ``checkout`` (a fresh import: the two branches share module names)."""
    for name in list(sys.modules):
        if name.split(".")[0] in UPSTREAM_MODULES:
            del sys.modules[name]
    import so_vits_svc_fork.modules.synthesizers  # noqa: F401  (ours first: transformers looks for the real torchvision)

    stubs = [name for name in ("torchvision", "maad") if name not in sys.modules]
    sys.modules.update({name: types.ModuleType(name) for name in stubs})
    if not hasattr(np, "int"):
        np.int = int  # type: ignore[attr-defined]  # upstream's get_f0 casts with it (removed in numpy 1.24)
    sys.path.insert(0, str(checkout))
    try:
        import models  # noqa: I001  (upstream's, from the checkout)
        from hubert import hubert_model
        from inference import infer_tool
    finally:
        sys.path.remove(str(checkout))
        for name in stubs:
            del sys.modules[name]
    return {"models": models, "hubert_model": hubert_model, "infer_tool": infer_tool}


def perturb(module: Any, seed: int, scale: float = 0.02) -> None:
    """Random weights everywhere, zero-initialised layers (the flows' last convolutions) included."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)


def voiced(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    f0 = 180 + 40 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    audio = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.2 * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t) ** 2)
    audio[int(0.9 * rate):int(1.1 * rate)] = 0.0  # a pause: unvoiced frames
    return np.asarray(audio, dtype=np.float32)


def pitch_curve(frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f0 = 150 + 100 * np.sin(np.linspace(0, 6, frames)) + rng.normal(0, 5, frames)
    f0[frames // 3:frames // 3 + 8] = 0.0  # unvoiced
    return f0.astype(np.float32)


def difference(theirs: Any, ours: Any) -> Tuple[float, float]:
    a, b = np.asarray(theirs, dtype=np.float64), np.asarray(ours, dtype=np.float64)
    worst = float(np.abs(a - b).max())
    return worst, worst / max(float(np.abs(a).max()), 1e-12)


def compare(checkout: Path, rate: int, work: Path, lines: List[str]) -> None:
    import torch
    import torchaudio

    from runtimes.adapters.sovits3 import UNIT_REPEATS, SovitsV3, load_hubert_soft

    up = import_upstream(checkout)
    repeats = UNIT_REPEATS[rate]
    config = config_for(rate)
    folder = work / str(rate)
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    theirs = up["models"].SynthesizerTrn(config["data"]["filter_length"] // 2 + 1, config["train"]["segment_size"] // 320,
                                         **config["model"])
    perturb(theirs, 1)
    theirs.eval()
    torch.save({"model": theirs.state_dict(), "iteration": 1, "optimizer": None, "learning_rate": 1e-4}, folder / "G_1.pth")
    torch.manual_seed(2)
    their_hubert = up["hubert_model"].HubertSoft()
    perturb(their_hubert, 3, 0.01)
    their_hubert.eval()
    torch.save({"module." + k: v for k, v in their_hubert.state_dict().items()}, folder / "hubert-soft.pt")  # as bshall's file
    our_hubert = load_hubert_soft(str(folder / "hubert-soft.pt"), "cpu")
    started = time.perf_counter()
    ours = SovitsV3(str(folder / "G_1.pth"), str(folder / "config.json"), "cpu", False, lambda: our_hubert, lambda f0: f0)
    load_s = time.perf_counter() - started
    params = sum(p.numel() for p in theirs.parameters())
    lines.append("== %d Hz (upstream %s; generator %.1f M parameters, ours loaded in %.1f s)" % (rate, checkout.name, params / 1e6, load_s))

    # 1. the generator alone
    units = torch.randn(1, 50, 256, generator=torch.Generator().manual_seed(4))
    f0 = pitch_curve(50 * repeats, 5)
    sid = torch.LongTensor([1]).unsqueeze(0)
    with torch.no_grad():
        torch.manual_seed(6)
        their_audio = theirs.infer(torch.repeat_interleave(units, repeats=repeats, dim=1).transpose(1, 2),
                                   f0=torch.FloatTensor(f0).unsqueeze(0), g=sid)[0, 0].float().numpy()
    torch.manual_seed(6)
    our_audio = ours.decode(units, f0, 1, noise_scale=1.0).numpy()
    assert their_audio.shape == our_audio.shape, (their_audio.shape, our_audio.shape)
    worst, relative = difference(their_audio, our_audio)
    lines.append("generator: 50 units x%d -> %d samples at %d Hz (both); largest difference %.3g (%.3g of the peak %.3f)"
                 % (repeats, their_audio.size, ours.target_sample, worst, relative, float(np.abs(their_audio).max())))

    # 2. the content encoder
    wav = voiced(rate, 2.0)
    wav16 = torchaudio.functional.resample(torch.from_numpy(wav)[None], rate, 16000)
    their_units = their_hubert.units(wav16[None])
    our_units = our_hubert.units(wav16[None])
    worst_u, relative_u = difference(their_units.numpy(), our_units.numpy())
    lines.append("hubert-soft: %s units (both); largest difference %.3g (%.3g of the peak)"
                 % (tuple(their_units.shape), worst_u, relative_u))

    # 3. the whole conversion of a recording
    tool = up["infer_tool"]
    _, their_f0 = tool.get_f0(wav16.numpy()[0], their_units.shape[1] * 2, 3)
    if rate == 48000:
        their_f0 = tool.resize2d_f0(their_f0, their_units.shape[1] * 3)
    their_f0 = tool.clean_pitch(their_f0)
    with torch.no_grad():
        torch.manual_seed(7)
        their_take = theirs.infer(torch.repeat_interleave(their_units, repeats=repeats, dim=1).transpose(1, 2),
                                  f0=torch.FloatTensor(their_f0).unsqueeze(0), g=torch.LongTensor([2]).unsqueeze(0))[0, 0].float().numpy()
    our_units_take, our_f0 = ours.units_and_f0(wav, 3)
    torch.manual_seed(7)
    our_take = ours.decode(our_units_take, our_f0, 2, noise_scale=1.0).numpy()
    assert their_take.shape == our_take.shape, (their_take.shape, our_take.shape)
    worst_f0 = float(np.abs(np.asarray(their_f0) - our_f0).max())
    worst_t, relative_t = difference(their_take, our_take)
    lines.append("conversion of a 2.00 s recording (+3 semitones): pitch %d frames, largest difference %.3g Hz; %d samples = %.3f s "
                 "at %d Hz (both); largest difference %.3g (%.3g of the peak)"
                 % (our_f0.size, worst_f0, our_take.size, our_take.size / rate, rate, worst_t, relative_t))
    ok = relative < 1e-4 and relative_t < 1e-4 and relative_u < 1e-4
    lines.append("within 1e-4 relative: %s" % ("yes" if ok else "NO"))


def tiny_reference(checkout: Path, lines: List[str]) -> None:
    """A tiny 32 kHz generator assembled from upstream's own modules (its SynthesizerTrn fixes real sizes), upstream's
    output on fixed inputs and torch seed: what the suite pins ours against (the same pinned torch draws the same noise)."""
    import torch
    from torch import nn

    up = import_upstream(checkout)
    models = up["models"]
    hidden = inter = 8
    gin = 8
    torch.manual_seed(10)
    net = models.SynthesizerTrn.__new__(models.SynthesizerTrn)
    nn.Module.__init__(net)
    net.emb_g = nn.Embedding(2, gin)
    net.enc_p_ = models.TextEncoder(256, inter, hidden, 5, 1, 2, 0, 16, 2, 0.1)
    hps = {"sampling_rate": 32000, "inter_channels": inter, "resblock": "1", "resblock_kernel_sizes": [3, 5],
           "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]], "upsample_rates": [10, 8, 2, 2], "upsample_initial_channel": 16,
           "upsample_kernel_sizes": [16, 16, 4, 4], "gin_channels": gin}
    net.dec = models.Generator(h=hps)
    net.enc_q = models.Encoder(9, inter, hidden, 5, 1, 16, gin_channels=gin)
    net.flow = models.ResidualCouplingBlock(inter, hidden, 5, 1, 4, gin_channels=gin)
    perturb(net, 11, 0.05)
    net.eval()
    units = torch.randn(1, 12, 256, generator=torch.Generator().manual_seed(12))
    f0 = pitch_curve(24, 13)
    with torch.no_grad():
        torch.manual_seed(14)
        out = net.infer(torch.repeat_interleave(units, repeats=2, dim=1).transpose(1, 2), f0=torch.FloatTensor(f0).unsqueeze(0),
                        g=torch.LongTensor([1]).unsqueeze(0))[0, 0].float().numpy()
    state = {k: v.numpy().astype(np.float32) for k, v in net.state_dict().items()}
    layout = json.dumps([[k, list(v.shape)] for k, v in state.items()])
    flat = np.concatenate([v.reshape(-1) for v in state.values()])
    np.savez_compressed(REFERENCE, units=units.numpy(), f0=f0, speaker=np.array(1), seed=np.array(14), audio=out,
                        weights=flat, layout=np.array(layout))
    lines.append("tiny reference: upstream's 3.0 keys, %d weights (%d values), 12 units -> %d samples at 32000 Hz; %s (%d KB)"
                 % (len(state), flat.size, out.size, REFERENCE.relative_to(ROOT), REFERENCE.stat().st_size // 1024))


def main() -> None:
    import torch

    if len(sys.argv) < 2:
        sys.exit(__doc__)
    checkouts = [Path(p).resolve() for p in sys.argv[1:3]]
    lines = ["so-vits-svc 3.0 equivalence (%s; torch %s, CPU, float32, %d threads)"
             % (time.strftime("%Y-%m-%d"), torch.__version__, torch.get_num_threads())]
    with tempfile.TemporaryDirectory() as tmp:
        for checkout, rate in zip(checkouts, (32000, 48000)[:len(checkouts)], strict=True):
            compare(checkout, rate, Path(tmp), lines)
            print("\n".join(lines), flush=True)
    tiny_reference(checkouts[0], lines)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[-1:]))


if __name__ == "__main__":
    main()
