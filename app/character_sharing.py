"""Model files every host can use: a character folder (or a shared asset: a folder or one file) the front has is
published to the shared artifact store with a manifest of its files' sha256s; a worker host that lacks it, or holds
another version, fetches it once, verified, before its first job needs it.

Layout in the store: each file's bytes once, by content (``models/blobs/<sha256[:2]>/<sha256>``: a new version never
overwrites what a host may be fetching), and, written after them, a manifest naming the files and their sha256s,
``models/characters/<architecture>/<character>.manifest.json`` (assets: ``models/assets/<name>.manifest.json``), which
also keeps the files' sizes and modification times: a front restarted over unchanged files does not hash them again.
A host keeps the manifest's digest beside its copy (``.shared-manifest``; a single-file asset:
``.<name>.shared-manifest``): the next job compares one small file, not the model's bytes."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from app.characters import files_signature
from jobs.artifacts import ArtifactStore, check_key
from jobs.errors import JobError, MissingArtifactError
from jobs.kept_inputs import sha256_of

logger = logging.getLogger(__name__)
PREFIX = "models/characters"
ASSETS_PREFIX = "models/assets"
MARKER = ".shared-manifest"


class SharingError(JobError):
    """A shared copy is unusable (a file that does not match its manifest): what and where."""


def blob_key(sha256: str) -> str:
    """Where a file's bytes are kept: by their sha256 (a publish never overwrites what a fetch may be reading)."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise SharingError("a shared manifest names %r, which is not a sha256" % sha256[:80])
    return check_key("models/blobs/%s/%s" % (sha256[:2], sha256))


def manifest_key(architecture: str, character: str) -> str:
    return check_key("%s/%s/%s.manifest.json" % (PREFIX, architecture, character))


def _marker_of(local: Path) -> Path:
    return local / MARKER if local.is_dir() else local.with_name(".%s%s" % (local.name, MARKER))


class CharacterSharing:
    def __init__(self, artifacts: ArtifactStore, characters_dir: Path, assets_dir: Optional[Path] = None) -> None:
        self.artifacts, self.characters_dir = artifacts, characters_dir
        self.assets_dir = assets_dir if assets_dir is not None else characters_dir.parent / "assets"
        self._lock = threading.Lock()
        self._published: Dict[Path, Any] = {}
        """Per folder or file: its signature when last published by this process."""
        self.fetches = 0
        """Characters and assets this host copied from the store (tests and status)."""

    # the front's side
    def publish(self, architecture: str, character: str) -> bool:
        """Put the character's folder in the store if it changed since; False when it has no folder (a builtin voice)."""
        folder = self.characters_dir / architecture / character
        if not folder.is_dir():
            return False
        return self._publish("%s/%s/%s" % (PREFIX, architecture, character), folder, "character %s/%s" % (architecture, character))

    def publish_assets(self, names: Sequence[str]) -> List[str]:
        """Put the shared assets this front has (of those named) in the store; the names published."""
        done = []
        for name in names:
            local = self.assets_dir / check_key(name)
            if local.exists() and self._publish("%s/%s" % (ASSETS_PREFIX, name), local, "asset %s" % name):
                done.append(name)
        return done

    def _publish(self, key_root: str, local: Path, what: str) -> bool:
        check_key(key_root)
        signature = [list(item) for item in files_signature(local)] if local.is_dir() else [[local.name, local.stat().st_size,
                                                                                           local.stat().st_mtime_ns]]
        with self._lock:
            if self._published.get(local) == signature:
                return True
            old = self._read_manifest(key_root)
            if old is not None and old.get("signature") == signature:
                self._published[local] = signature  # published before (by an earlier run): nothing changed since
                return True
            paths = sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else [local]
            files: Dict[str, Dict[str, Any]] = {}
            for path in paths:
                if path.name == MARKER or path.name.endswith(MARKER):
                    continue
                relative = path.relative_to(local).as_posix() if local.is_dir() else local.name
                files[relative] = {"sha256": sha256_of(path), "bytes": path.stat().st_size}
            for relative, info in files.items():  # by content: a host reading the old manifest meanwhile still finds its files
                blob = blob_key(info["sha256"])
                if not self.artifacts.exists(blob):
                    self.artifacts.put(blob, local / relative if local.is_dir() else local)
            manifest = {"files": files, "folder": local.is_dir(), "signature": signature}
            self.artifacts.put(key_root + ".manifest.json", json.dumps(manifest, sort_keys=True).encode())
            self._published[local] = signature
        logger.info("%s published to the shared store (%d files)", what, len(files))
        return True

    def _read_manifest(self, key_root: str) -> Optional[Dict[str, Any]]:
        try:
            with self.artifacts.open(key_root + ".manifest.json") as handle:
                data: Dict[str, Any] = json.loads(handle.read())
                return data
        except MissingArtifactError:
            return None

    # a host's side
    def fetch(self, architecture: str, character: str) -> bool:
        """Make this host's copy of the character match the shared one (copied and verified when missing or different);
        True when files were copied. Nothing shared (a builtin voice, a character only this host has): False."""
        check_key("%s/%s/%s" % (PREFIX, architecture, character))
        return self._fetch("%s/%s/%s" % (PREFIX, architecture, character), self.characters_dir / architecture / character,
                           "character %s/%s" % (architecture, character))

    def fetch_assets(self, names: Sequence[str]) -> List[str]:
        """This host's copies of the shared assets named, where the store has them; the names copied now."""
        return [name for name in names if self._fetch("%s/%s" % (ASSETS_PREFIX, name), self.assets_dir / check_key(name),
                                                      "asset %s" % name)]

    def _fetch(self, key_root: str, local: Path, what: str) -> bool:
        try:
            with self.artifacts.open(check_key(key_root + ".manifest.json")) as handle:
                raw = handle.read()
        except MissingArtifactError:
            return False
        digest = hashlib.sha256(raw).hexdigest()
        with self._lock:
            marker = _marker_of(local) if local.exists() else None
            if marker is not None and marker.is_file() and marker.read_text().strip() == digest:
                return False
            manifest = json.loads(raw)
            is_folder = bool(manifest.get("folder", True))
            local.parent.mkdir(parents=True, exist_ok=True)
            staging = local.parent / (".fetch-%s-%s" % (local.name, uuid.uuid4().hex[:8]))
            staging.mkdir()
            try:
                for relative, info in manifest["files"].items():
                    target = staging / check_key(relative)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    hasher = hashlib.sha256()
                    with self.artifacts.open(blob_key(str(info["sha256"]))) as source, target.open("wb") as out:
                        while chunk := source.read(1 << 20):
                            hasher.update(chunk)
                            out.write(chunk)
                    if hasher.hexdigest() != info["sha256"]:
                        raise SharingError("%s: its file %s in the shared store does not match its sha256 (a copy changed or "
                                           "cut short): publish it again from the front" % (what, relative))
                staged_marker = staging / MARKER if is_folder else staging / (".%s%s" % (local.name, MARKER))
                staged_marker.write_text(digest)
                retired = None
                if local.exists():
                    retired = local.parent / (".old-%s-%s" % (local.name, uuid.uuid4().hex[:8]))
                    local.rename(retired)
                if is_folder:
                    staging.rename(local)
                else:  # one file: it and its marker beside it
                    (staging / local.name).rename(local)
                    staged_marker.replace(_marker_of(local))
                    shutil.rmtree(staging, ignore_errors=True)
                if retired is not None and retired.is_dir():
                    shutil.rmtree(retired, ignore_errors=True)
                elif retired is not None:
                    retired.unlink(missing_ok=True)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            self.fetches += 1
        logger.info("%s fetched from the shared store (%d files, verified)", what, len(manifest["files"]))
        return True
