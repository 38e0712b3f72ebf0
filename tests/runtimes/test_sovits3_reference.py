"""Our so-vits-svc 3.0 generator (3.0's checkpoint mapped onto so-vits-svc-fork's model) against upstream 3.0's own
output, stored by bench/sovits3_equivalence.py: a tiny generator assembled from upstream's modules (3.0's key names
and shapes), its inputs, torch seed and upstream's output (tests/runtimes/sovits3_reference.npz, no upstream code here).
Runs in the sovits env, which the default suite builds anyway (~5 s)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

REFERENCE = Path(__file__).with_name("sovits3_reference.npz")

RUN = r"""
import json, sys
import numpy as np, torch
from runtimes.adapters.sovits3 import SovitsV3

folder = sys.argv[1]
stored = np.load(sys.argv[2])
flat, at, state = stored["weights"], 0, {}
for name, shape in json.loads(str(stored["layout"])):
    size = int(np.prod(shape))
    state[name] = torch.from_numpy(flat[at:at + size].reshape(shape).copy())
    at += size
torch.save({"model": state, "iteration": 1, "optimizer": None, "learning_rate": 1e-4}, folder + "/G_1.pth")
ours = SovitsV3(folder + "/G_1.pth", folder + "/config.json", "cpu", False, lambda: None, lambda f0: f0)
torch.manual_seed(int(stored["seed"]))
audio = ours.decode(torch.from_numpy(stored["units"]), stored["f0"], int(stored["speaker"]), noise_scale=1.0).numpy()
theirs = stored["audio"]
print(json.dumps({"shape": list(audio.shape), "their_shape": list(theirs.shape), "rate": ours.target_sample,
                  "worst": float(np.abs(audio - theirs).max()), "peak": float(np.abs(theirs).max())}))
"""


def test_our_generator_computes_what_upstream_3_0_computed(sovits_python: Path, tmp_path: Path) -> None:
    config = {"train": {"segment_size": 17920}, "data": {"sampling_rate": 32000, "hop_length": 320, "filter_length": 1280},
              "model": {"n_heads": 2, "p_dropout": 0.1, "ssl_dim": 256, "n_speakers": 2}, "spk": {"a": 0, "b": 1}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    done = subprocess.run([str(sovits_python), "-c", RUN, str(tmp_path), str(REFERENCE)], capture_output=True, text=True,
                          timeout=120, cwd=str(Path(__file__).resolve().parents[2]))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["shape"] == result["their_shape"] == [7680] and result["rate"] == 32000
    assert result["peak"] > 1e-3, "the stored output is silent: the reference tests nothing"
    assert result["worst"] <= 1e-4 * result["peak"], result
