"""Artifacts in any fsspec filesystem: an S3-compatible bucket (``s3://bucket/prefix``, through s3fs; credentials and
the endpoint of a non-AWS service from the usual ``AWS_*`` variables, e.g. ``AWS_ENDPOINT_URL``), or another fsspec
protocol. The artifact-store seam of ``jobs.artifacts``, for hosts that share no folder.

Objects are written whole (an S3 put is all or nothing); reads that need a local file (``path_for``: decoding,
serving) go through a cache folder on this host, fetched once per version of the object (its size and modification
time) and written beside then renamed into place."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterator, Optional, Tuple

import fsspec

from jobs.artifacts import LocalPath, Source, check_key, check_prefix
from jobs.errors import ArtifactKeyError, MissingArtifactError

STAMPS = ".stamps"
"""Under the cache folder: which version of each object the cached copy is (never a key: keys hold no dot folder
of this name at the top, and the cache is not the store)."""


class FsspecStore:
    def __init__(self, url: str, cache_dir: LocalPath, **options: Any) -> None:
        protocol = url.split("://", 1)[0] if "://" in url else "file"
        if protocol in ("file", "local"):
            options.setdefault("auto_mkdir", True)
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **options)
        self.root = root.rstrip("/")
        self.cache = Path(os.path.abspath(cache_dir))

    def __repr__(self) -> str:
        return "FsspecStore(%r)" % self.url

    def _remote(self, key: str) -> str:
        return "%s/%s" % (self.root, check_key(key))

    def _info(self, key: str) -> Dict[str, Any]:
        remote = self._remote(key)
        try:
            info: Dict[str, Any] = self.fs.info(remote)
        except FileNotFoundError:
            raise MissingArtifactError("nothing is stored under %r" % key) from None
        if info.get("type") != "file":
            raise MissingArtifactError("nothing is stored under %r" % key)
        return info

    def _stamp(self, key: str, info: Dict[str, Any]) -> str:
        return json.dumps([int(info.get("size") or 0), str(self.fs.modified(self._remote(key)))])

    def put(self, key: str, source: Source) -> None:
        remote = self._remote(key)
        if isinstance(source, bytes):
            self.fs.pipe_file(remote, source)
        else:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError("no file to store at %s" % path)
            self.fs.put_file(str(path), remote)
        self.fs.invalidate_cache(remote)

    def path_for(self, key: str) -> Path:
        info = self._info(key)
        stamp = self._stamp(key, info)
        local = self.cache.joinpath(*key.split("/"))
        marker = self.cache.joinpath(STAMPS, *key.split("/"))
        if local.is_file() and marker.is_file() and marker.read_text() == stamp:
            return local
        local.parent.mkdir(parents=True, exist_ok=True)
        part = local.with_name(".part-" + uuid.uuid4().hex)
        try:
            self.fs.get_file(self._remote(key), str(part))
            os.replace(part, local)
        finally:
            part.unlink(missing_ok=True)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(stamp)
        return local

    def open(self, key: str) -> BinaryIO:
        self._info(key)
        handle: BinaryIO = self.fs.open(self._remote(key), "rb")
        return handle

    def link(self, existing_key: str, new_key: str) -> None:
        self._info(existing_key)
        target = self._remote(new_key)
        self.fs.copy(self._remote(existing_key), target)  # a server-side copy on S3: two objects, each deleted alone
        self.fs.invalidate_cache(target)

    def delete(self, key: str) -> bool:
        if not self.exists(key):
            return False
        self.fs.rm_file(self._remote(key))
        self.fs.invalidate_cache(self._remote(key))
        for local in (self.cache.joinpath(*key.split("/")), self.cache.joinpath(STAMPS, *key.split("/"))):
            local.unlink(missing_ok=True)
        return True

    def exists(self, key: str) -> bool:
        try:
            self._info(key)
        except MissingArtifactError:
            return False
        return True

    def keys(self, prefix: str = "") -> Iterator[str]:
        prefix = check_prefix(prefix)
        base = "%s/%s" % (self.root, prefix) if prefix else self.root
        self.fs.invalidate_cache(base)
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return
        for path in sorted(found):
            relative = path[len(self.root) + 1:] if path.startswith(self.root + "/") else ""
            try:
                yield check_key(relative)
            except ArtifactKeyError:
                continue  # not something this store wrote

    def size(self, key: str) -> int:
        return int(self._info(key).get("size") or 0)

    def modified(self, key: str) -> float:
        self._info(key)
        when = self.fs.modified(self._remote(key))
        return when.timestamp() if isinstance(when, datetime) else float(when)

    def key_of(self, path: LocalPath) -> Optional[str]:
        """A cached copy's key (what ``path_for`` gave): the runner hands back the stored file it served."""
        candidate = os.path.abspath(path)
        root = str(self.cache).rstrip(os.sep) + os.sep
        if not candidate.startswith(root):
            return None
        relative = Path(candidate).relative_to(self.cache).as_posix()
        if relative.split("/", 1)[0] == STAMPS:
            return None
        try:
            return check_key(relative)
        except ArtifactKeyError:
            return None

    def names(self, key: str) -> Tuple[str, ...]:
        return (check_key(key),)
