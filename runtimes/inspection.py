"""The public inspection API of ``runtimes``: what the model manager (``models/``) may know about an
architecture without running it, and the only ``runtimes`` module it imports.

An architecture's manifest (its own facts: ``detect``, the file patterns that tell its model folder;
``hay_say_names``, its ids in the established app's catalogues; which assets a converted character needs),
what a character folder is (``CharacterInfo``, from the adapter's ``describe``), and the weights-only
reader of torch checkpoints. Standard library (+ numpy) only; Python 3.9 syntax.
"""

from __future__ import annotations

from runtimes.adapter import CharacterInfo
from runtimes.adapters.checkpoint_meta import (
    UnreadableCheckpointError,
    UnsafeCheckpointError,
    is_legacy_torch_file,
    read_plain_values,
)
from runtimes.manifest import Asset, Detect, Manifest

__all__ = [
    "Asset",
    "CharacterInfo",
    "Detect",
    "Manifest",
    "UnreadableCheckpointError",
    "UnsafeCheckpointError",
    "is_legacy_torch_file",
    "read_plain_values",
]
