"""Controllable TalkNet's super-resolution (runtimes/adapters/controllable_talknet/superres.py): its resampler
(numpy + scipy, run by default) and, in the controllable_talknet env (``-m heavy_env``), the whole of it against a
small output of upstream's ``HiFiGAN.superres`` stored by bench/talknet_sr_equivalence.py --write-reference
(tests/data/talknet_sr_reference.npz: a tiny random 32 kHz HiFi-GAN in jik876's names, a 0.4 s 16-bit take and
upstream's 16-bit output; its denoiser's bias, and its denoiser's output for a signal as quiet as that bias; made
beside SortAnon/ControllableTalkNet a6f2b53 and SortAnon/hifi-gan b1a16bc)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from runtimes.adapters.controllable_talknet.superres import SR_RATE, resample_sinc
from tests.conftest import PROJECT_ROOT
from tests.controllable_talknet_fixtures import talknet_python, talknet_spec

__all__ = ["talknet_python", "talknet_spec"]  # fixtures this module uses by name

REFERENCE = PROJECT_ROOT / "tests" / "data" / "talknet_sr_reference.npz"
CHECK = r"""
import json, os, sys, tempfile
import numpy as np, torch
sys.path.insert(0, %(root)r)
from runtimes.adapters.controllable_talknet import shims
shims.apply_before_import()
import nemo.collections.tts.modules.hifigan_modules
shims.apply_after_import()
from runtimes.adapters.controllable_talknet.superres import SR_RATE, SuperResolution
case = np.load(%(reference)r)
state = {k[len("state_"):]: torch.from_numpy(case[k]) for k in case.files if k.startswith("state_")}
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "hifisr")
    torch.save({"generator": state}, path)
    superres = SuperResolution(path, "cpu")
    out = superres(case["take_int16"] / 32768.0, 22050).astype(np.float64) * 32768.0
    quiet = superres.denoise(torch.from_numpy(case["quiet"]).unsqueeze(0)).reshape(-1).numpy()
bias, quiet_reference = superres.bias.reshape(-1).numpy(), case["quiet_denoised"]
reference = case["upstream_out"]
print(json.dumps({"shape": list(out.shape), "reference_shape": list(reference.shape), "rate": SR_RATE,
                  "peak": float(np.abs(reference).max()), "diff": float(np.abs(out - reference).max()),
                  "bias_diff": float(np.abs(bias - case["upstream_bias"]).max() / np.abs(case["upstream_bias"]).max()),
                  "quiet_shapes": [quiet.size, quiet_reference.size],
                  "quiet_diff": float(np.abs(quiet - quiet_reference).max() / np.abs(quiet_reference).max())}))
"""


def test_the_resampler_keeps_a_tone_and_the_takes_duration() -> None:
    t = np.arange(22050) / 22050
    tone = np.sin(2 * np.pi * 1000.0 * t)
    out = resample_sinc(tone, 22050, SR_RATE)
    assert out.size == int(22050 * SR_RATE / 22050) == SR_RATE
    expected = np.sin(2 * np.pi * 1000.0 * np.arange(out.size) / SR_RATE)
    middle = slice(200, out.size - 200)  # the filter's 8 zero crossings reach past the ends
    assert np.abs(out[middle] - expected[middle]).max() < 2e-3
    down = resample_sinc(tone, 22050, 16000)  # downsampling narrows the filter to the lower rate
    assert down.size == 16000 and np.abs(down[200:-200] - np.sin(2 * np.pi * 1000.0 * np.arange(16000) / 16000)[200:-200]).max() < 2e-3


@pytest.mark.heavy_env
def test_our_super_resolution_matches_upstreams_stored_output(talknet_python: Path) -> None:
    done = subprocess.run([str(talknet_python), "-W", "ignore", "-c", CHECK % {"root": str(PROJECT_ROOT), "reference": str(REFERENCE)}],
                          capture_output=True, text=True, timeout=300, check=True)
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["shape"] == facts["reference_shape"] == [int(0.4 * 22050) * SR_RATE // 22050] and facts["rate"] == 32000
    assert facts["peak"] > 10000  # a take near full scale, as a vocoder's
    # upstream truncates to int16 twice (the resampled take, the added band): up to 2 steps of 1/32768 between us
    assert facts["diff"] <= 2.0 and facts["diff"] / facts["peak"] < 1e-4, facts
    # the denoiser's bias (the vocoder's output for upstream's seeded random mel) and the denoiser on a signal as quiet as
    # it, where its effect shows (on a take it is small)
    assert facts["bias_diff"] < 1e-5 and facts["quiet_shapes"][0] == facts["quiet_shapes"][1] and facts["quiet_diff"] < 1e-5, facts
