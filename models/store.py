"""Installed models on disk: where each kind lives, its install record, disk use, deletion.

    <data>/characters/<arch>/<name>/      characters (what the app lists and generates with)
    <data>/shared-models/<arch>/<name>/   multi-speaker models characters link their files to
    <data>/assets/<name>                  pretrained assets (a folder, or one file such as rmvpe.pt)
    <data>/downloads/                     staging: nothing here is ever listed as installed

Each installed folder holds ``.voicegen-model.json`` (what, where from, license, each file's size
and sha256, and whether the hash was the catalogue's or measured here); a one-file asset keeps it
beside the file. Measured hashes are also kept by source in ``<data>/models/measured-hashes.json``
so that a later download of the same file that differs is flagged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from models.archive import remove_tree
from models.catalogue import Entry
from models.errors import ModelError

RECORD = ".voicegen-model.json"


def file_digest(path: Path, length: Optional[int] = None) -> Any:
    """sha256 of the file, or of its first ``length`` bytes, as a hash object (a download can go on feeding it)."""
    digest = hashlib.sha256()
    left = math.inf if length is None else length
    with path.open("rb") as handle:
        while left > 0 and (chunk := handle.read(int(min(1 << 20, left)))):
            digest.update(chunk)
            left -= len(chunk)
    return digest


def sha256_of(path: Path) -> str:
    return str(file_digest(path).hexdigest())


class FileHashes:
    """sha256 of files, remembered by (path, size, modification time) for the ``limit`` most recently
    asked: a 500 MB checkpoint is hashed once while it is in use, and a long-running app that sees many
    files holds a bounded memo (least recently used forgotten first). Safe from several threads."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._known: OrderedDict[Tuple[str, int, int], str] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            digest = self._known.get(key)
            if digest is not None:
                self._known.move_to_end(key)
                return digest
        digest = sha256_of(path)  # outside the lock: another file's hash need not wait for this one
        with self._lock:
            self._known[key] = digest
            self._known.move_to_end(key)
            while len(self._known) > self.limit:
                self._known.popitem(last=False)
        return digest

    def __len__(self) -> int:
        with self._lock:
            return len(self._known)


def folder_name(name: str) -> str:
    """A catalogue or person's name as a folder name (keeps spaces and brackets, drops what a file system refuses)."""
    cleaned = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip().strip(".")
    if not cleaned:
        raise ModelError("%r cannot be a folder name; choose another name" % name)
    return cleaned[:150]


@dataclass(frozen=True)
class Layout:
    data_dir: Path

    @property
    def assets_dir(self) -> Path:
        return self.data_dir / "assets"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "downloads"

    @property
    def catalogues_dir(self) -> Path:
        """The person's own catalogue files and refreshed ones."""
        return self.data_dir / "catalogues"

    def characters_dir(self, architecture: str) -> Path:
        return self.data_dir / "characters" / architecture

    def shared_dir(self, architecture: str) -> Path:
        return self.data_dir / "shared-models" / architecture

    def target(self, entry: Entry) -> Path:
        if entry.kind == "asset":
            return self.assets_dir / folder_name(entry.name)
        base = self.characters_dir(entry.architecture) if entry.kind == "character" else self.shared_dir(entry.architecture)
        return base / folder_name(entry.name)

    @staticmethod
    def record_path(target: Path, single_file: bool = False) -> Path:
        """Inside a folder; beside a one-file asset."""
        return target.with_name("." + target.name + RECORD) if single_file or target.is_file() else target / RECORD

    def is_installed(self, entry: Entry) -> bool:
        target = self.target(entry)
        return target.exists() and (entry.kind == "asset" or (target / RECORD).exists() or any(target.iterdir()))


def single_file_asset(entry: Entry) -> bool:
    """An asset that is one file named as the asset (``rmvpe.pt``) rather than a folder."""
    return entry.kind == "asset" and len(entry.files) == 1 and entry.files[0].save_as == entry.name


def read_record(target: Path, layout: Layout) -> Dict[str, Any]:
    try:
        return dict(json.loads(layout.record_path(target).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def write_record(path: Path, record: Dict[str, Any]) -> None:
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")


def disk_bytes(path: Path) -> int:
    """Bytes of the real files under ``path``; links are not counted (their target is, where it lives)."""
    if path.is_symlink():
        return 0
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            file = Path(root, name)
            if not file.is_symlink():
                total += file.stat().st_size
    return total


class HashLedger:
    """sha256 measured at first install, per source: a later download that differs is flagged."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def check(self, where: str, sha256: str) -> Optional[str]:
        """Record ``sha256`` for ``where`` the first time; return the earlier hash when it differs."""
        with self._lock:
            try:
                known = json.loads(self.path.read_text())
            except (OSError, ValueError):
                known = {}
            earlier = known.get(where)
            if earlier is None:
                known[where] = sha256
                self.path.parent.mkdir(parents=True, exist_ok=True)
                partial = self.path.with_suffix(".tmp")
                partial.write_text(json.dumps(known, indent=1))
                os.replace(partial, self.path)
            return earlier if earlier and earlier != sha256 else None


def installed(layout: Layout) -> Iterator[Dict[str, Any]]:
    """Every installed character, shared model and asset with its size on disk and its record."""
    roots = [("character", layout.data_dir / "characters"), ("shared", layout.data_dir / "shared-models")]
    for kind, root in roots:
        if not root.is_dir():
            continue
        for arch_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for folder in sorted(p for p in arch_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                record = read_record(folder, layout)
                yield {"id": record.get("id") or "%s/%s%s" % (arch_dir.name, "shared/" if kind == "shared" else "", folder.name),
                       "name": folder.name, "architecture": arch_dir.name, "kind": kind, "path": folder,
                       "size_bytes": disk_bytes(folder), "license": record.get("license", "unknown"),
                       "source": record.get("source", "placed by hand"), "flags": record.get("flags", []),
                       "files": record.get("files", [])}
    if layout.assets_dir.is_dir():
        for item in sorted(layout.assets_dir.iterdir()):
            if item.name.startswith("."):
                continue
            record = read_record(item, layout)
            yield {"id": record.get("id") or "asset/%s" % item.name, "name": item.name, "architecture": record.get("architecture", ""),
                   "kind": "asset", "path": item, "size_bytes": disk_bytes(item), "license": record.get("license", "unknown"),
                   "source": record.get("source", "placed by hand"), "flags": record.get("flags", []),
                   "files": record.get("files", [])}


def users_of(layout: Layout, shared: Path) -> List[str]:
    """Character folders with a link into ``shared``."""
    users = []
    characters = layout.data_dir / "characters"
    real = shared.resolve()
    for link in characters.glob("*/*/*") if characters.is_dir() else []:
        if link.is_symlink() and real in link.resolve().parents:
            users.append(link.parent.name)
    return sorted(set(users))


def delete(layout: Layout, item: Dict[str, Any]) -> int:
    """Remove an installed item; returns the bytes freed. A shared model still linked is kept."""
    path: Path = item["path"]
    if item["kind"] == "shared":
        users = users_of(layout, path)
        if users:
            raise ModelError("%s is used by %d character(s) (%s); delete them first" % (item["name"], len(users), ", ".join(users[:5])))
    freed = disk_bytes(path)
    record = layout.record_path(path)
    # rename first: the app never sees a half-deleted folder as a character
    doomed = layout.staging_dir / (".deleting-%s-%d" % (folder_name(path.name), time.monotonic_ns()))
    layout.staging_dir.mkdir(parents=True, exist_ok=True)
    os.replace(path, doomed)
    remove_tree(doomed)
    if not path.exists() and record.parent != path:
        record.unlink(missing_ok=True)
    return freed
