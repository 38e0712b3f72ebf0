"""Unpacking a zip that came from someone else: every entry must land inside the target folder, no
links, and limits on entry count, total size and compression ratio (zip bombs) checked on the
directory before anything is written, then again while writing (a lying header)."""

from __future__ import annotations

import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import List

from models.errors import ImportRefusedError


@dataclass(frozen=True)
class ZipLimits:
    max_total_bytes: int = 8 << 30
    """More than any single character (the largest in the catalogues is ~1.1 GB)."""
    max_ratio: float = 200.0
    """Uncompressed / compressed of the whole zip; model weights barely compress, bombs compress 1000x."""
    max_entries: int = 10_000


def _inside(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ImportRefusedError("the zip entry %r points outside the folder it unpacks into; refused" % name)
    return path


def extract(archive_path: Path, target: Path, limits: ZipLimits = ZipLimits(), strategy: str = "in_place") -> List[Path]:
    """Unpack into ``target`` (created). ``strategy``: ``in_place`` keeps the zip's folders,
    ``flatten`` puts every file at the top, ``remove_outermost_dir`` drops one top folder all
    entries share. Returns the files written."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ImportRefusedError("%s is not a readable zip file (%s)" % (archive_path.name, exc)) from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_entries:
            raise ImportRefusedError("the zip has %d entries (limit %d); refused" % (len(infos), limits.max_entries))
        total = sum(i.file_size for i in infos)
        packed = sum(i.compress_size for i in infos) or 1
        if total > limits.max_total_bytes:
            raise ImportRefusedError("the zip unpacks to %.1f GB (limit %.1f GB); refused" % (total / 1e9, limits.max_total_bytes / 1e9))
        if total / packed > limits.max_ratio:
            raise ImportRefusedError("the zip unpacks to %.0fx its size (limit %.0fx): a zip bomb? refused"
                                     % (total / packed, limits.max_ratio))
        files = []
        for info in infos:
            path = _inside(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ImportRefusedError("the zip holds a symbolic link (%s); refused" % info.filename)
            if not info.is_dir():
                files.append((info, path))
        top = {p.parts[0] for _, p in files if len(p.parts) > 1}
        if strategy == "remove_outermost_dir" and (len(top) != 1 or any(len(p.parts) == 1 for _, p in files)):
            strategy = "in_place"  # nothing to remove: every file is not under one folder
        target.mkdir(parents=True, exist_ok=True)
        written: List[Path] = []
        budget = limits.max_total_bytes
        for info, path in files:
            parts = path.parts
            if any(part.startswith("__MACOSX") or part == ".DS_Store" for part in parts):
                continue
            relative = PurePosixPath(parts[-1]) if strategy == "flatten" else PurePosixPath(*parts[1:]) if (
                strategy == "remove_outermost_dir") else path
            destination = target.joinpath(*relative.parts)
            if destination.exists():
                raise ImportRefusedError("the zip has two files that unpack to %s; refused" % relative)
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, destination.open("wb") as sink:
                while chunk := source.read(1 << 20):
                    budget -= len(chunk)
                    if budget < 0:  # the directory understated the sizes
                        raise ImportRefusedError("the zip unpacks to more than it declares; refused")
                    sink.write(chunk)
            written.append(destination)
        return written


def remove_tree(path: Path) -> None:
    """Remove a folder or file (or link) if present."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)
