"""Our so-vits-svc 5.0 synthesizer against small outputs of upstream's (tests/data/sovits5_reference.npz and, for the
first generation, sovits5_v1_reference.npz, made by bench/sovits5_equivalence.py --write-reference beside checkouts
of PlayVoice/whisper-vits-svc at b95a849 and d4b76cb): the same random
weights, whisper/hubert features, pitch and singer; the NSF excitation from the same seed, the prior's draw from
the same seed. Runs in the sovits5 env (torch), so it is heavy_env."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.sovits5_fixtures import sovits5_python, sovits5_spec

__all__ = ["sovits5_python", "sovits5_spec"]  # fixtures this module uses by name

REFERENCES = {"v2": PROJECT_ROOT / "tests" / "data" / "sovits5_reference.npz",
              "v1": PROJECT_ROOT / "tests" / "data" / "sovits5_v1_reference.npz"}
CHECK = r"""
import json, sys
import numpy as np, torch
sys.path.insert(0, %(root)r)
from runtimes.adapters.sovits5.synthesizer import SynthesizerInfer
case = np.load(%(reference)r)
model = SynthesizerInfer(json.loads(str(case["hp_json"]))).eval()
model.load_state_dict({k[len("state_"):]: torch.from_numpy(case[k]) for k in case.files if k.startswith("state_")}, strict=True)
model.remove_weight_norm()
f0, frames = torch.from_numpy(case["f0"]), case["f0"].shape[0]
with torch.no_grad():
    source = model.pitch_to_source(f0[None], torch.Generator().manual_seed(int(case["source_seed"])))
    ppg, vec, spk = (torch.from_numpy(case[name])[None] for name in ("ppg", "vec", "spk"))
    vec = None if model.v1 else vec
    prior = torch.Generator().manual_seed(int(case["prior_seed"]))
    out = model.infer(ppg, vec, f0[None], spk, torch.tensor([frames]), torch.from_numpy(case["source"]), prior).numpy()
reference = case["upstream_out"]
print(json.dumps({"shape": list(out.shape), "reference_shape": list(reference.shape), "peak": float(np.abs(reference).max()),
                  "source_diff": float(np.abs(source.numpy() - case["source"]).max()),
                  "out_diff": float(np.abs(out - reference).max())}))
"""


@pytest.mark.heavy_env
@pytest.mark.parametrize("generation", ["v2", "v1"])
def test_our_synthesizer_matches_upstreams_stored_output(sovits5_python: Path, generation: str) -> None:
    reference = str(REFERENCES[generation])
    done = subprocess.run([str(sovits5_python), "-W", "ignore", "-c", CHECK % {"root": str(PROJECT_ROOT), "reference": reference}],
                          capture_output=True, text=True, timeout=300, check=True)
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["shape"] == facts["reference_shape"] == [1, 1, 16 * 320]
    assert facts["peak"] > 0.01  # the tanh is not saturated: a difference could show
    assert facts["source_diff"] < 1e-6
    assert facts["out_diff"] / facts["peak"] < 1e-4
