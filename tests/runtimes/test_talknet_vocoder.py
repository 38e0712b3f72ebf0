"""Controllable TalkNet's character vocoder with upstream's denoiser (TalkNetAdapter._vocoder + vocode, reusing
superres.Denoiser), in the controllable_talknet env (``-m heavy_env``), against a small output of upstream's
``HiFiGAN.vocode`` stored by bench/talknet_vocoder_equivalence.py --write-reference
(tests/data/talknet_vocoder_reference.npz: a tiny random HiFi-GAN of upstream's config_v1 shape in jik876's names, a
25-frame mel, upstream's 16-bit output, its denoiser's bias and its denoiser's output for a signal as quiet as that
bias; made beside SortAnon/ControllableTalkNet a6f2b53 and SortAnon/hifi-gan b1a16bc)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.controllable_talknet_fixtures import talknet_python, talknet_spec

__all__ = ["talknet_python", "talknet_spec"]  # fixtures this module uses by name

REFERENCE = PROJECT_ROOT / "tests" / "data" / "talknet_vocoder_reference.npz"
CHECK = r"""
import json, os, sys, tempfile
import numpy as np, torch
sys.path.insert(0, %(root)r)
from runtimes.adapters.controllable_talknet.adapter import TalkNetAdapter
adapter = TalkNetAdapter()
adapter.load_shared("cpu")
case = np.load(%(reference)r)
state = {k[len("state_"):]: torch.from_numpy(case[k]) for k in case.files if k.startswith("state_")}
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "hifiganmodel")
    torch.save({"generator": state}, path)
    generator, denoiser = adapter._vocoder(path)
character = {"vocoder": generator, "denoiser": denoiser}
mel = torch.from_numpy(case["mel"])
on = adapter.vocode(character, mel, True).astype(np.float64) * 32768.0
off = adapter.vocode(character, mel, False).astype(np.float64) * 32768.0
quiet = denoiser(torch.from_numpy(case["quiet"]).unsqueeze(0)).reshape(-1).numpy()
reference, quiet_reference = case["upstream_out"], case["quiet_denoised"]
print(json.dumps({"shapes": [on.size, off.size, reference.size], "peak": float(np.abs(reference).max()),
                  "diff_on": float(np.abs(on - reference).max()), "diff_off": float(np.abs(off - reference).max()),
                  "bias_diff": float(np.abs(denoiser.bias.reshape(-1).numpy() - case["upstream_bias"]).max()
                                     / np.abs(case["upstream_bias"]).max()),
                  "quiet_shapes": [quiet.size, quiet_reference.size],
                  "quiet_diff": float(np.abs(quiet - quiet_reference).max() / np.abs(quiet_reference).max())}))
"""


@pytest.mark.heavy_env
def test_the_character_vocoder_is_denoised_as_upstream_does(talknet_python: Path) -> None:
    done = subprocess.run([str(talknet_python), "-W", "ignore", "-c", CHECK % {"root": str(PROJECT_ROOT), "reference": str(REFERENCE)}],
                          capture_output=True, text=True, timeout=300, check=True)
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["shapes"] == [25 * 256] * 3 and facts["peak"] > 10000, facts
    # upstream truncates its denoised take to int16: up to one step of 1/32768 between us
    assert facts["diff_on"] <= 1.5 and facts["diff_on"] / facts["peak"] < 1e-4, facts
    # without the denoiser the take is not upstream's (its subtraction moves samples by tens of steps here)
    assert facts["diff_off"] > 10.0, facts
    # the bias (the vocoder's output for upstream's seeded random mel) and the denoiser where its effect shows
    assert facts["bias_diff"] < 1e-5 and facts["quiet_shapes"][0] == facts["quiet_shapes"][1] and facts["quiet_diff"] < 1e-5, facts
