"""Characters: an architecture's builtin voices plus folders under ``<data>/characters/<architecture>/``,
each folder described by its adapter (layout, version, speakers) without loading it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from runtimes.adapter import CharacterInfo
from runtimes.manifest import Manifest

Describe = Callable[[str], CharacterInfo]


@dataclass(frozen=True)
class Character:
    id: str
    label: str
    architecture: str
    path: Optional[Path]  # None for builtin voices
    info: CharacterInfo = field(default_factory=CharacterInfo)

    @property
    def model_path(self) -> Optional[str]:
        """What the supervisor and the adapter take: the folder, or None for a builtin voice."""
        return str(self.path) if self.path else None

    def to_dict(self) -> Dict[str, Any]:
        return dict({"id": self.id, "label": self.label, "builtin": self.path is None}, **self.info.to_dict())


def label_of(name: str, info: CharacterInfo) -> str:
    """What a person sees in the character list: what it is, or why it cannot be used."""
    if not info.usable:
        return "%s (not usable: %s)" % (name, info.problem)
    details = [part for part in (info.version and "v" + info.version,) if part]
    if len(info.speakers) > 1:
        details.append("%d speakers" % len(info.speakers))
    details += list(info.extras)
    return "%s (%s)" % (name, ", ".join(details)) if details else name


class DescriptionMemo:
    """A folder's description, kept until a file in it changes (``files_signature``): listing reads each
    checkpoint's plain values, which a list of many characters repeats."""

    def __init__(self, describe: Describe) -> None:
        self.describe = describe
        self.known: Dict[str, Tuple[Tuple[Any, ...], CharacterInfo]] = {}

    def __call__(self, folder: str) -> CharacterInfo:
        signature = files_signature(Path(folder))
        kept = self.known.get(folder)
        if kept is not None and kept[0] == signature:
            return kept[1]
        info = self.describe(folder)
        self.known[folder] = (signature, info)
        return info


def files_signature(folder: Path) -> Tuple[Tuple[str, int, int], ...]:
    """Every file under ``folder`` (links followed) as (relative path, size, modification time): what
    changes when a model's files do, without reading them."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            found.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def list_characters(manifest: Manifest, characters_dir: Path, describe: Describe = lambda folder: CharacterInfo()) -> List[Character]:
    found = [
        Character(character_id, label, manifest.architecture, None)
        for character_id, label in manifest.builtin_characters.items()
    ]
    folder = characters_dir / manifest.architecture
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                info = describe(str(entry))
                found.append(Character(entry.name, label_of(entry.name, info), manifest.architecture, entry, info))
    return found
