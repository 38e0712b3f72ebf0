"""Importing a person's own model: a zip or a folder becomes a character, usable at once.

The architecture is told from the files by each architecture's own ``Manifest.detect`` (Piper: ``*.onnx`` +
``*.onnx.json``; so-vits-svc: ``G_*.pth`` + ``config.json``; RVC: ``*.pth``; the rule that fills most globs
wins), the layout and version checked by the architecture's own ``describe`` (the same the character list
uses; RVC's reads the checkpoint's plain values without torch), every pickle checked against the weights-only
allow-list, and the folder renamed into place only when all of it passed.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from models.archive import ZipLimits, extract, remove_tree
from models.errors import ImportRefusedError
from models.store import Layout, folder_name, sha256_of, write_record
from runtimes.inspection import (
    CharacterInfo,
    Manifest,
    UnreadableCheckpointError,
    UnsafeCheckpointError,
    is_legacy_torch_file,
    read_plain_values,
)

Describe = Callable[[str], CharacterInfo]
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt")


def detect_architecture(folder: Path, manifests: Sequence[Manifest], wanted: Optional[str] = None) -> str:
    """The architecture whose ``detect`` rule the folder's files fill best; ``wanted`` settles a tie."""
    names = [p.name for p in folder.iterdir() if p.is_file()]
    rules = [(m.architecture, m.detect) for m in manifests if m.detect is not None]
    scores = {architecture: rule.score(names) for architecture, rule in rules}
    best = max(scores.values(), default=0)
    if best == 0:
        expected = ", ".join("%s (%s)" % (architecture, rule.describe()) for architecture, rule in rules) or "none known"
        raise ImportRefusedError("cannot tell the architecture from %s: expected one of %s"
                                 % (", ".join(sorted(names)) or "no files", expected))
    tied = sorted(architecture for architecture, score in scores.items() if score == best)
    if wanted in tied:
        return str(wanted)
    if len(tied) > 1:
        raise ImportRefusedError("these files fit several architectures (%s): choose one" % ", ".join(tied))
    return tied[0]


def check_pickles(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.suffix in PICKLE_SUFFIXES and path.is_file():
            try:
                read_plain_values(str(path))
            except UnsafeCheckpointError as exc:
                raise ImportRefusedError("%s holds pickled Python objects (%s), not only weights; refused" % (path.name, exc)) from None
            except UnreadableCheckpointError as exc:
                if not is_legacy_torch_file(str(path)):  # a pre-zip torch file is read by the worker, weights-only, on load
                    raise ImportRefusedError("%s is not a readable checkpoint: %s" % (path.name, exc)) from None


def _copy_folder(source: Path, staging: Path, limits: ZipLimits) -> None:
    total = 0
    for root, dirs, files in os.walk(source):
        for name in dirs + files:
            if Path(root, name).is_symlink():
                raise ImportRefusedError("%s is a symbolic link; copy the real file into the folder" % name)
        for name in files:
            total += Path(root, name).stat().st_size
            if total > limits.max_total_bytes:
                raise ImportRefusedError("the folder holds more than %.1f GB; refused" % (limits.max_total_bytes / 1e9))
    shutil.copytree(source, staging, dirs_exist_ok=True)


def _single_top_folder(staging: Path) -> Path:
    """A zip of a folder (its files one level down) is imported as that folder's files."""
    entries = [p for p in staging.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else staging


def import_model(layout: Layout, source: Path, name: str, license_name: str, describers: Dict[str, Describe],
                 architecture: Optional[str] = None, limits: ZipLimits = ZipLimits(), manifests: Sequence[Manifest] = ()) -> Dict[str, str]:
    """Install ``source`` (a zip or a folder) as character ``name``; returns its id, architecture and folder.
    ``manifests``: the architectures whose ``detect`` rules tell the files' architecture."""
    if not name.strip():
        raise ImportRefusedError("give the character a name")
    if not source.exists():
        raise ImportRefusedError("nothing to import at the given path")
    staging = layout.staging_dir / (".import-%s" % uuid.uuid4().hex)
    try:
        if source.is_dir():
            _copy_folder(source, staging, limits)
        else:
            extract(source, staging, limits)
        folder = _single_top_folder(staging)
        detected = detect_architecture(folder, manifests, architecture)
        if architecture and architecture != detected:
            raise ImportRefusedError("these files look like a %s model, not %s" % (detected, architecture))
        if detected not in describers:
            raise ImportRefusedError("%s is not installed in this app" % detected)
        check_pickles(folder)
        info = describers[detected](str(folder))
        if not info.usable:
            raise ImportRefusedError("not a usable %s character: %s" % (detected, info.problem))
        target = layout.characters_dir(detected) / folder_name(name)
        if target.exists():
            raise ImportRefusedError("a %s character named %r already exists; choose another name or delete it" % (detected, target.name))
        files: List[Dict[str, object]] = [
            {"file": str(p.relative_to(folder)), "size_bytes": p.stat().st_size, "sha256": sha256_of(p), "sha256_from": "measured"}
            for p in sorted(folder.rglob("*")) if p.is_file()
        ]
        record = {"id": "%s/%s" % (detected, target.name), "name": target.name, "architecture": detected, "kind": "character",
                  "license": license_name.strip() or "unspecified", "source": "import", "version": info.version,
                  "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files, "flags": []}
        write_record(folder / ".voicegen-model.json", record)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(folder, target)  # appears complete, or not at all
        return {"id": str(record["id"]), "architecture": detected, "name": target.name, "version": info.version}
    finally:
        remove_tree(staging)
