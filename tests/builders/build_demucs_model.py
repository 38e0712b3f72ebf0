"""Tiny random Demucs separation models, built with the demucs package's own classes and saved as upstream saves its
pretrained ones; run inside the demucs env: ``python build_demucs_model.py OUT``.

OUT is laid out as a data folder (``assets/``), one asset folder per model as upstream's local repository
(``Separator(model=name, repo=folder)``) reads it: ``<name>.yaml`` naming the models' signatures, and one
``<sig>-<sha256[:8]>.th`` per model (upstream's ``save_with_checksum``; its loader checks the hash in the name)
holding ``{'klass', 'args', 'kwargs', 'state' (half precision), 'training_args'}`` as ``serialize_model`` writes it:

* ``assets/demucs_htdemucs/``: ``htdemucs.yaml`` + one HTDemucs (4 sources: drums, bass, other, vocals; a one-layer
  cross transformer, channels 8, depth 3; trained segment 3/2 s as a ``Fraction``, like upstream's 39/5);
* ``assets/demucs_htdemucs_ft/``: ``htdemucs_ft.yaml``, a bag of two HTDemucs with per-source weights (as upstream's
  fine-tuned bag: each model counts for some sources);
* ``assets/demucs_htdemucs_6s/``: ``htdemucs_6s.yaml`` + a six-source HTDemucs whose file also holds a pickled call
  that runs a command (``unsafe_pickle.RunsOnLoad``): the loader must refuse it, never run it;
* ``assets/demucs_hdemucs_mmi/``: ``hdemucs_mmi.yaml`` + a file whose bytes do not match the checksum in its name (a
  changed or incomplete download): upstream's loader refuses it.

Signatures are upstream's own for these names (a test model stands where the real one would). Fixed seeds.

``--full``: only ``assets/demucs_htdemucs/``, an HTDemucs at the class's default sizes (26.9 M parameters; segment 39/5 s as
htdemucs was trained), random weights: for bench/demucs_equivalence.py.
"""

from __future__ import annotations

import hashlib
import io
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from demucs.htdemucs import HTDemucs
from demucs.states import get_state
from unsafe_pickle import RunsOnLoad  # a sibling module: these scripts run from their folder

FOUR = ["drums", "bass", "other", "vocals"]
SIX = ["drums", "bass", "other", "vocals", "guitar", "piano"]
TINY = dict(channels=8, depth=3, t_layers=1, t_heads=2, segment=Fraction(3, 2))
"""96 k parameters; 3 s of stereo separate in about 2 s on one busy core."""


def tiny(sources: List[str], seed: int) -> HTDemucs:
    torch.manual_seed(seed)
    return HTDemucs(sources=list(sources), **TINY).eval()  # type: ignore[arg-type]


def package(model: HTDemucs, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """What upstream's ``serialize_model`` writes (its training args as a plain dict, as OmegaConf resolves them)."""
    args, kwargs = model._init_args_kwargs
    content = {"klass": type(model), "args": args, "kwargs": kwargs, "state": get_state(model, None, half=True),
               "training_args": {"model": "htdemucs", "dset": {"samplerate": 44100, "segment": 11}, "seed": 42}}
    content.update(extra or {})
    return content


def save(content: Dict[str, Any], folder: Path, sig: str) -> str:
    """``<sig>-<sha256[:8]>.th`` as upstream's ``save_with_checksum`` names it."""
    buffer = io.BytesIO()
    torch.save(content, buffer)
    data = buffer.getvalue()
    name = "%s-%s.th" % (sig, hashlib.sha256(data).hexdigest()[:8])
    (folder / name).write_bytes(data)
    return name


def bag(out: Path, name: str, models: Dict[str, Dict[str, Any]], weights: Optional[List[List[float]]] = None) -> None:
    folder = out / "assets" / ("demucs_%s" % name)
    folder.mkdir(parents=True, exist_ok=True)
    for sig, content in models.items():
        save(content, folder, sig)
    lines = ["models: [%s]" % ", ".join("'%s'" % sig for sig in models)]
    if weights is not None:
        lines.append("weights: [%s]" % ", ".join("[%s]" % ", ".join("%.1f" % w for w in row) for row in weights))
    (folder / ("%s.yaml" % name)).write_text("\n".join(lines) + "\n")


def main(out: Path, full: bool = False) -> None:
    if full:
        torch.manual_seed(0)
        bag(out, "htdemucs", {"955717e8": package(HTDemucs(sources=list(FOUR), segment=Fraction(39, 5)).eval())})
        return
    bag(out, "htdemucs", {"955717e8": package(tiny(FOUR, 1))})
    bag(out, "htdemucs_ft", {"f7e0c4bc": package(tiny(FOUR, 2)), "d12395a8": package(tiny(FOUR, 3))},
        weights=[[1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    unsafe = package(tiny(SIX, 4), {"note": RunsOnLoad(str(out / "unsafe-ran"))})
    bag(out, "htdemucs_6s", {"5c90dfd2": unsafe})
    changed = out / "assets" / "demucs_hdemucs_mmi"
    bag(out, "hdemucs_mmi", {"75fc33f5": package(tiny(FOUR, 5))})
    [saved] = changed.glob("75fc33f5-*.th")
    saved.rename(changed / "75fc33f5-00000000.th")


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--full" in sys.argv[2:])
