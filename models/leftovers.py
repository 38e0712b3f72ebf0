"""Sweeping what interrupted work left in ``<data>/downloads/``.

    <entry>/<file>.part, <file>.part.json   a download's kept bytes and where they came from: resumed by the next
                                            download of the entry (a restarted app too); gone after PARTIAL_KEEP_S
    <entry>/... anything else               finished files and unpacked folders of a download that stopped: gone
                                            after LEFTOVER_GRACE_S (the next download fetches them again)
    .import-*/, .deleting-*/, other files   an import or a deletion the app died in: gone after LEFTOVER_GRACE_S

Age is the newest modification time inside (a download still writing, or an import still copying, is young). The
folders of downloads running in this process are never touched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Collection, List

from models.archive import remove_tree

LEFTOVER_GRACE_S = 3600.0
"""Long enough that an import or deletion still running (in another process on the same data folder) is young."""
PARTIAL_KEEP_S = 2 * 24 * 3600.0
"""How long a stopped download's bytes wait to be resumed."""


def is_partial(path: Path) -> bool:
    """Kept bytes (ours ``<file>.part``, gdown's ``<file>XXXXXXXX.part``) or the record beside them."""
    return path.name.endswith((".part", ".part.json"))


def sweep(downloads: Path, now: float, busy: Collection[Path] = ()) -> List[Path]:
    """Remove leftovers older than their grace period; returns what was removed."""
    if not downloads.is_dir():
        return []
    removed: List[Path] = []
    for item in sorted(downloads.iterdir()):
        if item in busy:
            continue
        if item.is_dir() and not item.is_symlink() and not item.name.startswith("."):
            removed += _sweep_download(item, now)
        elif now - _newest_mtime(item) > LEFTOVER_GRACE_S:
            remove_tree(item)
            removed.append(item)
    return removed


def keep_only_partials(folder: Path) -> None:
    """Clear a download's folder for a new try, keeping the bytes it can resume."""
    for root, folders, files in os.walk(folder, topdown=False):
        for name in files + [f for f in folders if Path(root, f).is_symlink()]:
            if not is_partial(Path(root, name)):
                Path(root, name).unlink()
    _remove_empty_folders(folder)


def _sweep_download(folder: Path, now: float) -> List[Path]:
    removed = []
    for root, folders, files in os.walk(folder):
        for name in files + [f for f in folders if Path(root, f).is_symlink()]:
            path = Path(root, name)
            if now - _age_reference(path) > (PARTIAL_KEEP_S if is_partial(path) else LEFTOVER_GRACE_S):
                path.unlink()
                removed.append(path)
    _remove_empty_folders(folder)
    return removed


def _age_reference(path: Path) -> float:
    """A record is as old as the bytes it describes (written when they started, it is older than the last write)."""
    if path.name.endswith(".part.json"):
        kept = path.with_name(path.name[:-len(".json")])
        if kept.exists():
            return kept.lstat().st_mtime
    return path.lstat().st_mtime


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, folders, files in os.walk(path):
            times = [Path(root, name).lstat().st_mtime for name in files + folders]
            newest = max([newest, *times]) if files or folders else newest
    return newest


def _remove_empty_folders(folder: Path) -> None:
    for root, _, _ in os.walk(folder, topdown=False):
        if not os.listdir(root):
            os.rmdir(root)
