"""Artifacts (kept input recordings, outputs, lossless masters) named by keys in a store, not by absolute paths in rows.

A key is a relative POSIX path, e.g. ``inputs/3f2a....wav`` or ``outputs/2025-01-31/120000-piper-joe-<job id>.wav``:
the same on every host that sees the store. ``ArtifactStore`` is the seam (issue 17 rooms); ``LocalFolderStore`` is
today's one implementation; a shared folder is the same class on a shared mount, and an S3-compatible store through
fsspec is another module beside this one (issue 22). Callers never branch on the kind.

Artifacts are written once: ``put`` replaces a whole file atomically and nothing edits one in place, so a ``link``
may share the stored bytes between two keys.

Rows written before keys name their files by absolute path: ``is_legacy_path`` tells such a value from a key (a key is
never absolute), ``ArtifactStore.key_of`` gives the key of one the store holds, and ``ArtifactStore.names`` every
spelling a row may use for a key (so retention never deletes a file an old row still names)."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path, PureWindowsPath
from typing import BinaryIO, Callable, Iterator, Optional, Protocol, Tuple, Union

from jobs.errors import ArtifactKeyError, MissingArtifactError

logger = logging.getLogger(__name__)
LocalPath = Union[str, "os.PathLike[str]"]
Source = Union[bytes, LocalPath]
"""What ``put`` stores: the bytes themselves, or a local file (a ``str`` or ``Path``) whose bytes are copied."""
PART_PREFIX = ".part-"
"""A file being written: renamed to its key when complete; one a crash left behind is an orphan like any other."""


def check_key(key: str) -> str:
    """``key`` if it names something inside any store: a relative POSIX path of plain segments; else ``ArtifactKeyError``."""
    if not isinstance(key, str) or not key:
        raise ArtifactKeyError("an artifact key must be a non-empty relative path, not %r" % (key,))
    if "\x00" in key:
        raise ArtifactKeyError("the artifact key %r holds a NUL character" % key)
    if "\\" in key:
        raise ArtifactKeyError("the artifact key %r holds a backslash: keys are POSIX paths with '/' between their parts" % key)
    if key.startswith("/") or PureWindowsPath(key).drive:
        raise ArtifactKeyError("the artifact key %r is absolute: keys are relative to the store" % key)
    bad = [part for part in key.split("/") if part in ("", ".", "..")]
    if bad:
        raise ArtifactKeyError("the artifact key %r has a %r part: keys never leave their folder nor name it twice" % (key, bad[0]))
    return key


def check_prefix(prefix: str) -> str:
    """A folder of keys: "" (the whole store) or a key (a trailing '/' is allowed)."""
    prefix = prefix.rstrip("/") if isinstance(prefix, str) else prefix
    return "" if prefix == "" else check_key(prefix)


def under(key: str, prefix: str) -> bool:
    """Whether ``key`` is in the folder of keys ``prefix`` ("" holds every key)."""
    return not prefix or key == prefix or key.startswith(prefix + "/")


def is_legacy_path(value: str) -> bool:
    """A row value written before keys: an absolute path (a key never is)."""
    return os.path.isabs(value)


class ArtifactStore(Protocol):
    """Where job files live, by key. Every method refuses a bad key with ``ArtifactKeyError`` before touching anything;
    reading a key with nothing stored raises ``MissingArtifactError``."""

    def put(self, key: str, source: Source) -> None:
        """Store ``source`` (bytes, or a local file copied) under ``key``, replacing what was there, all or nothing."""

    def path_for(self, key: str) -> Path:
        """A local file holding the artifact, to read (a local folder: the stored file itself; a remote store: a copy)."""

    def open(self, key: str) -> BinaryIO:
        """The artifact's bytes, to read."""

    def link(self, existing_key: str, new_key: str) -> None:
        """``new_key`` holds what ``existing_key`` holds, in one stored copy where the backend can; deleting either later
        leaves the other."""

    def delete(self, key: str) -> bool:
        """Remove it; False if nothing was stored there."""

    def exists(self, key: str) -> bool: ...

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key in the folder of keys ``prefix`` ("" for all), for the orphan sweep."""

    def size(self, key: str) -> int: ...

    def modified(self, key: str) -> float:
        """When it was last written, epoch seconds (the orphan sweep's grace period)."""

    def key_of(self, path: LocalPath) -> Optional[str]:
        """The key of a local path inside this store (a row written before keys), or None."""

    def names(self, key: str) -> Tuple[str, ...]:
        """Every value a row may name this artifact by: its key, and where rows held absolute paths, that path."""


def local_path(store: ArtifactStore, value: str) -> Path:
    """A row's file value as a local path to read: a legacy absolute path as it is, a key through the store."""
    return Path(value) if is_legacy_path(value) else store.path_for(value)


class LocalFolderStore:
    """Keys are files under ``root`` (created when first needed). A shared folder every host mounts at the same place
    is the same store on each of them."""

    def __init__(self, root: LocalPath) -> None:
        self.root = Path(os.path.abspath(root))
        """As given (made absolute, links not resolved): the spelling rows written before keys used."""

    def __repr__(self) -> str:
        return "LocalFolderStore(%r)" % str(self.root)

    def _path(self, key: str) -> Path:
        path = self.root.joinpath(*check_key(key).split("/"))
        real_root, real = os.path.realpath(self.root), os.path.realpath(path)
        if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
            raise ArtifactKeyError("the artifact key %r leads out of %s through a link" % (key, self.root))
        return path

    def _stored(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise MissingArtifactError("nothing is stored under %r" % key)
        return path

    def _write(self, target: Path, fill: Callable[[Path], object]) -> None:
        """``fill`` a new file beside ``target``, then rename it into place: a reader sees the old file or the new one."""
        for attempt in (1, 2):
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(PART_PREFIX + uuid.uuid4().hex)
            try:
                fill(part)
                os.replace(part, target)
                return
            except FileNotFoundError:
                part.unlink(missing_ok=True)
                if attempt == 2 or part.parent.is_dir():
                    raise  # a missing source (the caller's); else the folder went (a delete emptied it) meanwhile: again
            except BaseException:
                part.unlink(missing_ok=True)
                raise

    def put(self, key: str, source: Source) -> None:
        target = self._path(key)
        if isinstance(source, bytes):
            content = source
            self._write(target, lambda part: part.write_bytes(content))
        else:
            origin = Path(source)
            self._write(target, lambda part: shutil.copyfile(origin, part))

    def path_for(self, key: str) -> Path:
        return self._stored(key)

    def open(self, key: str) -> BinaryIO:
        return self._stored(key).open("rb")

    def link(self, existing_key: str, new_key: str) -> None:
        source, target = self._stored(existing_key), self._path(new_key)

        def fill(part: Path) -> None:
            try:
                os.link(source, part)  # one stored copy
                os.utime(part)  # new to the orphan sweep, though the file is old: its row is not written yet
            except OSError:  # a filesystem without hard links, or a store spread over devices
                shutil.copyfile(source, part)

        self._write(target, fill)

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        # an empty folder (a day's outputs) goes with its last file; the top-level ones (inputs, outputs) stay
        folder = path.parent
        while folder.parent != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty
                break
            folder = folder.parent
        return True

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys(self, prefix: str = "") -> Iterator[str]:
        prefix = check_prefix(prefix)
        base = self._path(prefix) if prefix else self.root
        if base.is_file():
            yield prefix
            return
        for folder, subfolders, files in os.walk(base):  # links to folders are not followed
            subfolders.sort()
            for name in sorted(files):
                path = Path(folder, name)
                if path.is_symlink():
                    continue  # not something this store wrote
                key = path.relative_to(self.root).as_posix()
                try:
                    yield check_key(key)
                except ArtifactKeyError:
                    logger.debug("%s: %r is not a key this store could have written; left alone", self, key)

    def size(self, key: str) -> int:
        return self._stored(key).stat().st_size

    def modified(self, key: str) -> float:
        return self._stored(key).stat().st_mtime

    def key_of(self, path: LocalPath) -> Optional[str]:
        candidate = os.path.abspath(path)
        for root in dict.fromkeys((str(self.root), os.path.realpath(self.root))):
            if candidate.startswith(root.rstrip(os.sep) + os.sep):
                try:
                    return check_key(Path(candidate).relative_to(root).as_posix())
                except ArtifactKeyError:
                    return None
        return None

    def names(self, key: str) -> Tuple[str, ...]:
        return check_key(key), str(self.root.joinpath(*key.split("/")))
