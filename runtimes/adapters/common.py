"""Pieces the torch-based adapters share: where shared assets live, what a failed checkpoint load
means in words, and slicing long audio with cross-fades. Standard library + numpy only."""

from __future__ import annotations

import glob
import os
from typing import Iterator, List, Tuple

import numpy as np

from runtimes.errors import BadRequestError
from runtimes.protocol import ASSETS_ENV


def asset_path(name: str) -> str:
    """A shared pretrained asset under the data folder's ``assets/`` (the supervisor names the folder)."""
    return os.path.join(os.environ.get(ASSETS_ENV, ""), name)


def matching(folder: str, pattern: str) -> Tuple[List[str], str]:
    """The files in ``folder`` matching ``pattern`` (sorted), and their names for a message."""
    found = sorted(glob.glob(os.path.join(folder, pattern)))
    return found, ", ".join(os.path.basename(p) for p in found)


def missing_asset(architecture: str, what: str, name: str, how: str) -> BadRequestError:
    return BadRequestError("the %s %s is missing: download it in the Models tab (search %r, kind asset), or put %s in the "
                           "data folder's assets/%s" % (architecture, what, name, how, name))


def load_failure(file_name: str, exc: BaseException) -> str:
    """What went wrong loading a checkpoint, in words a person can act on."""
    text = str(exc)
    lowered = text.lower()
    first_line = text.splitlines()[0][:300] if text else ""
    if "unsupported global" in lowered:  # torch's weights-only unpickler met a class or function to call
        return "%s holds pickled Python objects, not only weights; it was refused (only plain weights are loaded)" % file_name
    if any(sign in lowered for sign in ("unsupported operand", "invalid load key", "central directory", "pytorchstreamreader")):
        return "%s could not be loaded: it is not a readable checkpoint (corrupt or incomplete download?)" % file_name
    if "size mismatch" in lowered or "missing key" in lowered or "unexpected key" in lowered:
        return "%s does not match its configuration (%s)" % (file_name, first_line)
    return "%s could not be loaded: %s: %s" % (file_name, type(exc).__name__, first_line)


def slices(length: int, slice_samples: int, fade_samples: int) -> Iterator[Tuple[int, int]]:
    """(start, end) of consecutive slices of at most ``slice_samples``, each starting ``fade_samples``
    early so that it overlaps the one before (0 slice length: one slice)."""
    if slice_samples <= 0 or length <= slice_samples:
        yield 0, length
        return
    position = 0
    while position < length:
        yield max(0, position - fade_samples), min(length, position + slice_samples)
        position += slice_samples


def overlap_add(out: np.ndarray, piece: np.ndarray, start: int, fade: int) -> None:
    """Write ``piece`` at ``start``, cross-fading its first ``fade`` samples with what is there."""
    end = min(out.size, start + piece.size)
    piece = piece[: end - start]
    fade = min(fade, piece.size)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        out[start:start + fade] = out[start:start + fade] * (1.0 - ramp) + piece[:fade] * ramp
    out[start + fade:end] = piece[fade:]
