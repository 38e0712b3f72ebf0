"""Upstream's own separation of a song, run in the demucs env: the reference our worker is compared with (the tests and
bench/demucs_equivalence.py).

    python tests/demucs_upstream.py REQUEST.json

REQUEST: {"repo": asset folder, "model": name, "song": .npy of (channels, samples) float32, "rate": Hz, "out": .npz,
"mode": "separator" | "apply_model", "shifts", "overlap", "split", "segment" (null: the model's own), "seed"}.
The .npz holds one array per source (channels, samples), ``sources`` (their names in order) and ``separate_s`` (the
separation's seconds, loading not counted).

``separator``: ``demucs.api.Separator(model, repo).separate_tensor`` as upstream documents it. ``apply_model``: the
model from ``demucs.pretrained.get_model(name, repo)`` through ``demucs.apply.apply_model`` on the song normalised as
upstream's command line does (``separate.py``). Python's random module is seeded before (upstream draws its shifts
from it). Upstream loads checkpoints with ``weights_only=False``; here torch is told to make every load weights-only
(``TORCH_FORCE_WEIGHTS_ONLY_LOAD``) with upstream's model classes and ``Fraction`` allowed, upstream's code unchanged.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, List

os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"

import numpy as np
import torch
from demucs.api import Separator
from demucs.apply import apply_model
from demucs.audio import convert_audio
from demucs.demucs import Demucs
from demucs.hdemucs import HDemucs
from demucs.htdemucs import HTDemucs
from demucs.pretrained import get_model

ALLOWED = [Demucs, HDemucs, HTDemucs, Fraction]


def separate(request: Dict[str, Any], took_s: List[float]) -> Dict[str, np.ndarray]:
    song = torch.from_numpy(np.load(request["song"]).astype(np.float32))
    repo, name, rate = Path(request["repo"]), str(request["model"]), int(request["rate"])
    shifts, overlap, split, segment = int(request["shifts"]), float(request["overlap"]), bool(request["split"]), request["segment"]
    with torch.serialization.safe_globals(ALLOWED):
        if request["mode"] == "separator":
            separator = Separator(model=name, repo=repo, device="cpu", shifts=shifts, overlap=overlap, split=split, segment=segment)
            random.seed(int(request["seed"]))
            started = time.perf_counter()
            _, stems = separator.separate_tensor(song, rate)
            took_s.append(time.perf_counter() - started)
            return {source: audio.numpy() for source, audio in stems.items()}
        model = get_model(name, repo)
    started = time.perf_counter()
    wav = convert_audio(song, rate, model.samplerate, model.audio_channels)
    ref = wav.mean(0)
    mean, std = ref.mean(), ref.std() + 1e-8
    random.seed(int(request["seed"]))
    out = apply_model(model, ((wav - mean) / std)[None], shifts=shifts, split=split, overlap=overlap, segment=segment)
    out = out * std + mean
    took_s.append(time.perf_counter() - started)
    return {source: audio.numpy() for source, audio in zip(model.sources, out[0], strict=True)}


def main(path: str) -> None:
    request = json.loads(Path(path).read_text())
    took_s: List[float] = []
    stems = separate(request, took_s)
    np.savez(request["out"], sources=np.array(list(stems)), separate_s=np.array(took_s[0]), **stems)


if __name__ == "__main__":
    main(sys.argv[1])
