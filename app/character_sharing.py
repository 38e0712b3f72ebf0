"""Characters every host can run: a character folder the front has is published to the shared artifact store with a
manifest of its files' sha256s; a worker host that lacks it, or holds another version, fetches it once, verified,
before its first job needs it.

Layout in the store: ``models/characters/<architecture>/<character>/<file>`` and, written last (so it names only
complete files), ``models/characters/<architecture>/<character>.manifest.json``. A host keeps the manifest's digest
beside its copy (``.shared-manifest``): the next job compares one small file, not the model's bytes."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from app.characters import files_signature
from jobs.artifacts import ArtifactStore, check_key
from jobs.errors import JobError, MissingArtifactError

logger = logging.getLogger(__name__)
PREFIX = "models/characters"
MARKER = ".shared-manifest"


class SharingError(JobError):
    """A character's shared copy is unusable (a file that does not match its manifest): what and where."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_key(architecture: str, character: str) -> str:
    return check_key("%s/%s/%s.manifest.json" % (PREFIX, architecture, character))


class CharacterSharing:
    def __init__(self, artifacts: ArtifactStore, characters_dir: Path) -> None:
        self.artifacts, self.characters_dir = artifacts, characters_dir
        self._lock = threading.Lock()
        self._published: Dict[Path, Tuple[Any, ...]] = {}
        """Per folder: the files' signature when last published (unchanged folders are not hashed again)."""
        self.fetches = 0
        """Characters this host copied from the store (tests and status)."""

    # the front's side
    def publish(self, architecture: str, character: str) -> bool:
        """Put the character's folder in the store if it changed since; False when it has no folder (a builtin voice)."""
        folder = self.characters_dir / architecture / character
        if not folder.is_dir():
            return False
        signature = files_signature(folder)
        with self._lock:
            if self._published.get(folder) == signature:
                return True
            files: Dict[str, Dict[str, Any]] = {}
            for path in sorted(folder.rglob("*")):
                if not path.is_file() or path.name == MARKER:  # the install record (a dot file) travels with it
                    continue
                relative = path.relative_to(folder).as_posix()
                files[relative] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
            key_folder = "%s/%s/%s" % (PREFIX, architecture, character)
            old = self._read_manifest(architecture, character)
            for relative, info in files.items():
                if not old or old["files"].get(relative, {}).get("sha256") != info["sha256"]:
                    self.artifacts.put(check_key("%s/%s" % (key_folder, relative)), folder / relative)
            manifest = {"architecture": architecture, "character": character, "files": files}
            self.artifacts.put(manifest_key(architecture, character), json.dumps(manifest, sort_keys=True).encode())
            self._published[folder] = signature
        logger.info("character %s/%s published to the shared store (%d files)", architecture, character, len(files))
        return True

    def _read_manifest(self, architecture: str, character: str) -> Optional[Dict[str, Any]]:
        try:
            with self.artifacts.open(manifest_key(architecture, character)) as handle:
                data: Dict[str, Any] = json.loads(handle.read())
                return data
        except MissingArtifactError:
            return None

    # a host's side
    def fetch(self, architecture: str, character: str) -> bool:
        """Make this host's copy of the character match the shared one (copied and verified when missing or different);
        True when files were copied. Nothing shared (a builtin voice, a character only this host has): False."""
        try:
            with self.artifacts.open(manifest_key(architecture, character)) as handle:
                raw = handle.read()
        except MissingArtifactError:
            return False
        digest = hashlib.sha256(raw).hexdigest()
        folder = self.characters_dir / architecture / character
        with self._lock:
            marker = folder / MARKER
            if marker.is_file() and marker.read_text().strip() == digest:
                return False
            manifest = json.loads(raw)
            staging = folder.parent / (".fetch-%s-%s" % (character, uuid.uuid4().hex[:8]))
            staging.mkdir(parents=True)
            try:
                for relative, info in manifest["files"].items():
                    target = staging / check_key(relative)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    hasher = hashlib.sha256()
                    with self.artifacts.open(check_key("%s/%s/%s/%s" % (PREFIX, architecture, character, relative))) as source, \
                            target.open("wb") as out:
                        while chunk := source.read(1 << 20):
                            hasher.update(chunk)
                            out.write(chunk)
                    if hasher.hexdigest() != info["sha256"]:
                        raise SharingError("%s/%s's file %s in the shared store does not match its sha256 (a copy changed or "
                                           "cut short): publish the character again from the front" % (architecture, character,
                                                                                                         relative))
                (staging / MARKER).write_text(digest)
                retired = None
                if folder.exists():
                    retired = folder.parent / (".old-%s-%s" % (character, uuid.uuid4().hex[:8]))
                    folder.rename(retired)
                staging.rename(folder)
                if retired is not None:
                    shutil.rmtree(retired, ignore_errors=True)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            self.fetches += 1
        logger.info("character %s/%s fetched from the shared store (%d files, verified)", architecture, character,
                    len(manifest["files"]))
        return True
