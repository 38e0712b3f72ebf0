"""so-vits-svc 5.0: upstream's inference model beside ours (runtimes/adapters/sovits5/), on the same random weights
and inputs. Run in the sovits5 env with the upstream checkout's path (PlayVoice/whisper-vits-svc; nothing of it is
in this project):

    data/envs/sovits5/bin/python bench/sovits5_equivalence.py /path/to/whisper-vits-svc [--v1 /path/to/it-at-d4b76cb] [--write-reference]

1. The synthesizer at upstream's real size (its configs/base.yaml): every weight random (weight-normalised layers
   as g and v), loaded into upstream's ``SynthesizerInfer`` and ours from one state dict (strict both ways). The
   same whisper PPG, hubert units, pitch (voiced and unvoiced frames) and singer go to both; the NSF excitation is
   compared from the same seed, then upstream's fed to both decoders, with the prior's draw from the same seed.
   Upstream runs with weight norm as it loads (``svc_inference.py`` never removes it); ours folds it first.
2. hubert-soft (upstream's ``hubert_model.HubertSoft`` vs ours) and the whisper encoder (upstream's sliced
   ``AudioEncoder`` vs openai-whisper's with our slicing), on random weights and the same input.

3. With ``--v1``, a second checkout at upstream's hifigan_release (d4b76cb, the first generation the established app's
   catalogue characters are): its synthesizer beside ours the same way (no hubert units; its prior drawn at 0.7).

Writes bench/results/sovits5_equivalence.txt; ``--write-reference`` also stores small cases (a tiny config's weights,
inputs and upstream's output) as tests/data/sovits5_reference.npz (and sovits5_v1_reference.npz) for
tests/runtimes/test_sovits5_reference.py.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import types
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "sovits5_equivalence.txt"
REFERENCE = ROOT / "tests" / "data" / "sovits5_reference.npz"
REFERENCE_V1 = ROOT / "tests" / "data" / "sovits5_v1_reference.npz"
TINY_HP: Dict[str, Any] = {
    "data": {"sampling_rate": 32000, "hop_length": 320, "filter_length": 1024, "segment_size": 8000},
    "vits": {"ppg_dim": 16, "vec_dim": 8, "spk_dim": 8, "gin_channels": 8, "inter_channels": 8, "hidden_channels": 8,
             "filter_channels": 16},
    "gen": {"upsample_input": 8, "upsample_rates": [10, 8, 4], "upsample_kernel_sizes": [20, 16, 8], "upsample_initial_channel": 16,
            "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]]},
}


UPSTREAMS: List[str] = []


def namespace(value: Any) -> Any:
    """A config dict as upstream reads it (OmegaConf's attribute access)."""
    if isinstance(value, dict):
        return types.SimpleNamespace(**{k: namespace(v) for k, v in value.items()})
    return value


def randomize(model: Any, seed: int) -> None:
    """Every parameter random at a scale that keeps activations in range (weight-norm g near the norms of v)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            scale = 0.3 if parameter.dim() <= 1 else 0.5 / max(1.0, float(np.sqrt(parameter[0].numel())))
            if name.startswith("dec.conv_post"):
                scale *= 0.1  # keep the final tanh out of saturation, so that differences can show
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
            if name.endswith("weight_g"):
                parameter.abs_().add_(0.2)


def inputs(hp: Dict[str, Any], frames: int, seed: int) -> Dict[str, Any]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    f0 = 110.0 + 330.0 * torch.rand(frames, generator=generator)
    f0[frames // 3: frames // 3 + frames // 6] = 0.0  # an unvoiced stretch
    return {"ppg": torch.randn(frames, hp["vits"]["ppg_dim"], generator=generator),
            "vec": torch.randn(frames, hp["vits"].get("vec_dim", 1), generator=generator) * 0.5,
            "f0": f0, "spk": torch.randn(hp["vits"]["spk_dim"], generator=generator) * 0.3}


def upstream_synthesizer(upstream: Path, hp: Dict[str, Any]) -> Any:
    for name in [m for m in sys.modules if m.split(".")[0] in ("vits", "vits_decoder")]:
        del sys.modules[name]  # another checkout's modules of the same names
    sys.path[:] = [p for p in sys.path if p not in UPSTREAMS]
    sys.path.insert(0, str(upstream))
    UPSTREAMS.append(str(upstream))
    from vits.models import SynthesizerInfer

    return SynthesizerInfer(hp["data"]["filter_length"] // 2 + 1, hp["data"]["segment_size"] // hp["data"]["hop_length"], namespace(hp))


def compare_synthesizer(upstream: Path, hp: Dict[str, Any], frames: int, seed: int) -> Tuple[Dict[str, float], Dict[str, np.ndarray]]:
    import torch

    from runtimes.adapters.sovits5.synthesizer import SynthesizerInfer

    theirs = upstream_synthesizer(upstream, hp).eval()
    ours = SynthesizerInfer(hp).eval()
    randomize(ours, seed)
    state = ours.state_dict()
    theirs.load_state_dict(state, strict=True)  # the same names and shapes, both ways
    ours.remove_weight_norm()
    data = inputs(hp, frames, seed + 1)
    v1 = "vec_dim" not in hp["vits"]
    lengths = torch.tensor([frames], dtype=torch.long)
    with torch.no_grad():
        torch.manual_seed(seed + 2)
        source_theirs = theirs.pitch2source(data["f0"].unsqueeze(0))
        source_ours = ours.pitch_to_source(data["f0"].unsqueeze(0), torch.Generator().manual_seed(seed + 2))
        torch.manual_seed(seed + 3)
        if v1:
            out_theirs = theirs.inference(data["ppg"][None], data["f0"][None], data["spk"][None], lengths, source_theirs)
        else:
            out_theirs = theirs.inference(data["ppg"][None], data["vec"][None], data["f0"][None], data["spk"][None], lengths, source_theirs)
        out_ours = ours.infer(data["ppg"][None], None if v1 else data["vec"][None], data["f0"][None], data["spk"][None], lengths,
                              source_theirs, torch.Generator().manual_seed(seed + 3))
    a, b = out_theirs.numpy(), out_ours.numpy()
    if a.shape != b.shape:
        raise SystemExit("shapes differ: upstream %s, ours %s" % (a.shape, b.shape))
    facts = {"frames": float(frames), "samples": float(a.shape[-1]), "params": float(sum(p.numel() for p in theirs.parameters())),
             "source_max_abs": float(np.abs(source_theirs.numpy() - source_ours.numpy()).max()),
             "out_max_abs": float(np.abs(a - b).max()), "out_peak": float(np.abs(a).max()),
             "out_rms": float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))}
    facts["out_max_rel"] = facts["out_max_abs"] / max(facts["out_peak"], 1e-12)
    case = {"state_" + k: v.numpy() for k, v in state.items()}
    case.update({k: v.numpy() for k, v in data.items()})
    case.update({"source": source_theirs.numpy(), "source_seed": np.array(seed + 2), "prior_seed": np.array(seed + 3), "upstream_out": a,
                 "hp_json": np.array(json.dumps(hp))})
    return facts, case


def compare_hubert(upstream: Path, seed: int) -> float:
    import torch

    from runtimes.adapters.sovits5.content import HubertSoft

    sys.path.insert(0, str(upstream))
    hubert_model = importlib.import_module("hubert.hubert_model")
    theirs = hubert_model.HubertSoft().eval()
    randomize(theirs, seed)
    state = {k: v for k, v in theirs.state_dict().items() if k not in ("label_embedding.weight", "masked_spec_embed")}
    ours = HubertSoft().eval()  # upstream's fixed size, our defaults
    ours.load_state_dict(state, strict=True)
    wav = torch.randn(1, 1, 16000, generator=torch.Generator().manual_seed(seed)) * 0.1
    with torch.no_grad():
        a, b = theirs.units(wav).numpy(), ours.units(wav).numpy()
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / np.abs(a).max())


def compare_whisper(upstream: Path, seed: int) -> float:
    """Upstream's whisper/model.py is loaded as a package of its own name (openai-whisper is ``whisper`` here)."""
    import torch
    from whisper.model import AudioEncoder

    from runtimes.adapters.sovits5.content import WhisperPPG

    package = types.ModuleType("upstream_whisper")
    package.__path__ = [str(upstream / "whisper")]
    sys.modules["upstream_whisper"] = package
    decoding = types.ModuleType("upstream_whisper.decoding")
    decoding.detect_language = decoding.decode = None  # type: ignore[attr-defined]  # the encoder needs neither
    sys.modules["upstream_whisper.decoding"] = decoding
    model = importlib.import_module("upstream_whisper.model")
    dims = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 64, "n_audio_head": 4, "n_audio_layer": 8}
    theirs = model.AudioEncoder(dims["n_mels"], dims["n_audio_ctx"], dims["n_audio_state"], dims["n_audio_head"], dims["n_audio_layer"])
    del theirs.blocks[-(dims["n_audio_layer"] // 4):]
    randomize(theirs, seed)
    ours = WhisperPPG.__new__(WhisperPPG)
    ours.encoder = AudioEncoder(dims["n_mels"], dims["n_audio_ctx"], dims["n_audio_state"], dims["n_audio_head"], 6).eval()
    ours.encoder.load_state_dict(theirs.state_dict(), strict=True)
    mel = torch.randn(80, 2 * 173, generator=torch.Generator().manual_seed(seed))  # a 3.46 s input, far below 30 s
    with torch.no_grad():
        a, b = theirs.eval()(mel.unsqueeze(0))[0].numpy(), ours.encode(mel).numpy()
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / np.abs(a).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("upstream", type=Path, help="a checkout of PlayVoice/whisper-vits-svc")
    parser.add_argument("--write-reference", action="store_true")
    parser.add_argument("--commit", default="", help="upstream's commit, when the checkout is an exported tree")
    parser.add_argument("--v1", type=Path, help="a checkout of upstream at d4b76cb (hifigan_release: the first generation)")
    args = parser.parse_args()
    import torch
    import whisper.model  # openai-whisper's, before upstream's folder (its own whisper/) joins the path
    import yaml  # type: ignore[import-untyped, unused-ignore]

    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    commit = args.commit or os.popen("git -C %s rev-parse HEAD 2>/dev/null" % args.upstream).read().strip() or "(commit unknown)"
    real_hp = yaml.safe_load((args.upstream / "configs" / "base.yaml").read_text())
    lines: List[str] = ["so-vits-svc 5.0: upstream's inference model vs ours (runtimes/adapters/sovits5/), float32 on CPU",
                        "upstream: %s at %s; torch %s; %s" % (args.upstream, commit, torch.__version__, time.strftime("%Y-%m-%d"))]
    if args.v1 is not None:
        lines.append("upstream v1: %s (at d4b76cb, its hifigan_release)" % args.v1)
    lines.append("")
    worst = 0.0
    runs = [(args.upstream, "real size (upstream configs/base.yaml)", real_hp, 150, None),
            (args.upstream, "tiny (the stored reference's)", TINY_HP, 16, REFERENCE)]
    if args.v1 is not None:
        tiny_v1 = json.loads(json.dumps(TINY_HP))
        del tiny_v1["vits"]["vec_dim"]
        v1_hp = yaml.safe_load((args.v1 / "configs" / "base.yaml").read_text())
        runs += [(args.v1, "v1 real size (its configs/base.yaml)", v1_hp, 150, None),
                 (args.v1, "v1 tiny (the stored v1 reference's)", tiny_v1, 16, REFERENCE_V1)]
    for upstream, label, hp, frames, reference in runs:
        started = time.time()
        facts, case = compare_synthesizer(upstream, hp, frames, seed=20)
        worst = max(worst, facts["out_max_rel"])
        lines.append("synthesizer, %s: %d parameters, %d frames -> %d samples at %d Hz (both)" % (
            label, facts["params"], facts["frames"], facts["samples"], hp["data"]["sampling_rate"]))
        lines.append("  NSF excitation, same seed: max |diff| %.3g" % facts["source_max_abs"])
        lines.append("  decoder output: peak %.4f, rms %.4f, max |diff| %.3g = %.3g relative to the peak (target < 1e-4) [%.1f s]" % (
            facts["out_peak"], facts["out_rms"], facts["out_max_abs"], facts["out_max_rel"], time.time() - started))
        if args.write_reference and reference is not None:
            reference.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(reference, **{k: np.asarray(v) for k, v in case.items()})  # type: ignore[arg-type]
            lines.append("  stored as %s (%d KB)" % (reference.relative_to(ROOT), reference.stat().st_size // 1024))
    hubert = compare_hubert(args.upstream, seed=21)
    whisper = compare_whisper(args.upstream, seed=22)
    lines.append("hubert-soft units (random weights, 1 s): max |diff| %.3g relative to the peak" % hubert)
    lines.append("whisper encoder, 6 of 8 blocks, a 3.46 s input with the positional embedding sliced: max |diff| %.3g relative" % whisper)
    lines.append("")
    lines.append("result: %s (worst decoder difference %.3g relative; target < 1e-4)" % ("PASS" if worst < 1e-4 else "FAIL", worst))
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
