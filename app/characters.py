"""Characters: an architecture's builtin voices plus folders under ``<data>/characters/<architecture>/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from runtimes.manifest import Manifest


@dataclass(frozen=True)
class Character:
    id: str
    label: str
    architecture: str
    path: Optional[Path]  # None for builtin voices

    @property
    def model_path(self) -> Optional[str]:
        """What the supervisor and the adapter take: the folder, or None for a builtin voice."""
        return str(self.path) if self.path else None


def list_characters(manifest: Manifest, characters_dir: Path) -> List[Character]:
    found = [
        Character(character_id, label, manifest.architecture, None)
        for character_id, label in manifest.builtin_characters.items()
    ]
    folder = characters_dir / manifest.architecture
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                found.append(Character(entry.name, entry.name, manifest.architecture, entry))
    return found
