"""Builds tiny random so-vits-svc 3.0 characters and a tiny random hubert-soft, as upstream 3.0 saves them: its
generator's key names and shapes (``enc_p_.*`` with a 1-wide ``enc_p_.pre``, no ``emb_uv``, no ``f0_decoder``, the
attention layers' FFN kernels 5 wide) in a training checkpoint ``{'model', 'iteration', 'optimizer',
'learning_rate'}``, and bshall's hubert-soft state dict (``module.`` prefixed, the positional convolution weight-normed).
Made from so-vits-svc-fork's classes with 4.0's names turned back into 3.0's (the inverse of the adapter's mapping,
which bench/sovits3_equivalence.py checks against upstream's own code). Run with the sovits env's Python:

    python build_sovits3_character.py OUT_DIR

OUT_DIR/assets/hubert-soft-0d54a1f4.pt   the tiny random hubert-soft (64 wide, 2 layers, 256-wide units)
OUT_DIR/characters/tiny-30-32k/          G_1.pth + config.json (32 kHz), speakers alice, bob
OUT_DIR/characters/tiny-30-48k/          G_1.pth + config.json (48 kHz), one speaker
OUT_DIR/unsafe-hubert.pt                 a hubert-soft file whose unpickling would create OUT_DIR/pwned
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from so_vits_svc_fork.modules.synthesizers import SynthesizerTrn
from torch import nn
from unsafe_pickle import RunsOnLoad  # a sibling module: these scripts run from their folder

UNITS = 256  # hubert-soft's units: every 3.0 model's ssl_dim


def perturb(module: nn.Module, seed: int, scale: float = 0.05) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)


def config_for(rate: int, speakers: list) -> dict:
    """Upstream 3.0's config template's layout; its model section as 3.0 writes it (3.0's code fixes the real sizes,
    the adapter reads them from the weights)."""
    return {
        "train": {"log_interval": 200, "seed": 1234, "segment_size": 17920, "fp16_run": False},
        "data": {"max_wav_value": 32768.0, "sampling_rate": rate, "filter_length": 1280, "hop_length": 320, "win_length": 1280,
                 "n_mel_channels": 80, "mel_fmin": 0.0, "mel_fmax": None},
        "model": {"inter_channels": 192, "hidden_channels": 192, "filter_channels": 768, "n_heads": 2, "n_layers": 6, "kernel_size": 3,
                  "p_dropout": 0.1, "resblock": "1", "resblock_kernel_sizes": [3, 7, 11],
                  "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "upsample_rates": [10, 8, 2, 2],
                  "upsample_initial_channel": 512, "upsample_kernel_sizes": [16, 16, 4, 4], "n_layers_q": 3,
                  "use_spectral_norm": False, "gin_channels": 256, "ssl_dim": UNITS, "n_speakers": len(speakers)},
        "spk": {name: index for index, name in enumerate(speakers)},
    }


def v3_generator(rate: int, speakers: int, seed: int) -> dict:
    torch.manual_seed(seed)
    net = SynthesizerTrn(spec_channels=9, segment_size=8, inter_channels=8, hidden_channels=8, filter_channels=16, n_heads=2,
                         n_layers=2, kernel_size=5, p_dropout=0.1, resblock="1", resblock_kernel_sizes=[3, 5],
                         resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]], upsample_rates=[10, 8, 2, 2], upsample_initial_channel=16,
                         upsample_kernel_sizes=[16, 16, 4, 4], gin_channels=8, ssl_dim=UNITS, n_speakers=speakers, sampling_rate=rate)
    perturb(net, seed + 1)
    v3 = {}
    for name, value in net.state_dict().items():
        if name.startswith(("f0_decoder.", "emb_uv.")):
            continue  # 3.0 has neither
        if name == "pre.weight":
            v3["enc_p_.pre.weight"] = value[:, :, 2:3].clone()  # 3.0's 1-wide content projection
        elif name == "pre.bias":
            v3["enc_p_.pre.bias"] = value.clone()
        elif name.startswith("enc_p."):
            v3["enc_p_." + name[len("enc_p."):]] = value.clone()
        else:
            v3[name] = value.clone()
    return {"model": v3, "iteration": 1000, "optimizer": None, "learning_rate": 1e-4}


def hubert_soft(seed: int) -> dict:
    """bshall's HubertSoft state dict, tiny (64 wide, 1 head, 2 layers), 256-wide units."""
    torch.manual_seed(seed)
    conv, hidden = 32, 64
    modules = nn.ModuleDict({
        "conv0": nn.Conv1d(1, conv, 10, 5, bias=False), "norm0": nn.GroupNorm(conv, conv),
        **{"conv%d" % i: nn.Conv1d(conv, conv, 3 if i < 5 else 2, 2, bias=False) for i in range(1, 7)}})
    state = {"feature_extractor." + k: v for k, v in modules.state_dict().items()}
    projection = nn.ModuleDict({"norm": nn.LayerNorm(conv), "projection": nn.Linear(conv, hidden)})
    state.update({"feature_projection." + k: v for k, v in projection.state_dict().items()})
    positional = nn.utils.weight_norm(nn.Conv1d(hidden, hidden, kernel_size=16, padding=8, groups=16), name="weight", dim=2)
    state.update({"positional_embedding.conv." + k: v for k, v in positional.state_dict().items()})
    state.update({"norm." + k: v for k, v in nn.LayerNorm(hidden).state_dict().items()})
    for index in range(2):
        layer = nn.TransformerEncoderLayer(hidden, 1, 128, activation="gelu", batch_first=True)
        state.update({"encoder.layers.%d.%s" % (index, k): v for k, v in layer.state_dict().items()})
    state.update({"proj." + k: v for k, v in nn.Linear(hidden, UNITS).state_dict().items()})
    state["masked_spec_embed"] = torch.rand(hidden)
    state["label_embedding.weight"] = torch.randn(100, UNITS)
    generator = torch.Generator().manual_seed(seed + 1)
    state = {k: v + torch.randn(v.shape, generator=generator) * 0.02 if v.is_floating_point() else v for k, v in state.items()}
    return {"module." + k: v.detach().clone() for k, v in state.items()}


def main() -> None:
    out = Path(sys.argv[1])
    (out / "assets").mkdir(parents=True, exist_ok=True)
    torch.save(hubert_soft(1), out / "assets" / "hubert-soft-0d54a1f4.pt")
    for name, rate, speakers in (("tiny-30-32k", 32000, ["alice", "bob"]), ("tiny-30-48k", 48000, ["carol"])):
        folder = out / "characters" / name
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(v3_generator(rate, len(speakers), rate // 1000), folder / "G_1.pth")
        (folder / "config.json").write_text(json.dumps(config_for(rate, speakers), indent=2))
    torch.save({"module.proj.weight": torch.zeros(1), "note": RunsOnLoad(str(out / "pwned"))}, out / "unsafe-hubert.pt")


if __name__ == "__main__":
    main()
