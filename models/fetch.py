"""Fetching one file: Hugging Face through ``huggingface_hub`` (its resume and retries), other URLs
over HTTP(S) with ``Range`` resume; Google Drive and Mega are not fetched (no maintained downloader
installs here): a clear message says to download by hand and import. Progress in bytes, cancel at
any chunk."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import httpx

from models.catalogue import FileSpec
from models.errors import DownloadCancelledError, DownloadError

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


@dataclass
class Transfer:
    """One file's progress, read by the UI while a download thread writes it."""

    name: str
    total_bytes: Optional[int]
    done_bytes: int = 0
    state: str = "waiting"  # waiting, downloading, verifying, done, failed, cancelled, skipped
    error: str = ""
    started_at: float = field(default_factory=time.monotonic)
    sha256: str = ""

    def add(self, count: int) -> None:
        if self.state == "waiting":
            self.state, self.started_at = "downloading", time.monotonic()
        self.done_bytes += count

    @property
    def speed_bps(self) -> float:
        elapsed = time.monotonic() - self.started_at
        return self.done_bytes / elapsed if elapsed > 0 and self.state == "downloading" else 0.0

    @property
    def eta_s(self) -> Optional[float]:
        speed = self.speed_bps
        if not speed or not self.total_bytes:
            return None
        return max(0.0, (self.total_bytes - self.done_bytes) / speed)


class Fetcher:
    def __init__(self, hf_endpoint: Optional[str] = None, timeout_s: float = 30.0, retries: int = 5) -> None:
        self.hf_endpoint = hf_endpoint
        self.timeout_s = timeout_s
        self.retries = retries

    def fetch(self, spec: FileSpec, dest: Path, transfer: Transfer, cancel: threading.Event) -> Optional[str]:
        """Write ``spec``'s bytes to ``dest`` (its folder exists), resuming what a failed try left.
        Returns the sha256 when it was computed on the way (else the caller reads the file)."""
        if spec.source in ("gdrive", "mega"):
            raise DownloadError("%s: %s downloads are not supported (no maintained downloader works here): download it by "
                                "hand from %s and import the folder or zip (Models tab, Import)"
                                % (spec.save_as, "Google Drive" if spec.source == "gdrive" else "Mega", spec.url))
        if spec.source == "huggingface":
            self._huggingface(spec, dest, transfer, cancel)
            return None
        return self._http(spec, dest, transfer, cancel)

    def _huggingface(self, spec: FileSpec, dest: Path, transfer: Transfer, cancel: threading.Event) -> None:
        from huggingface_hub import constants, hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

        self._hub_reachable(spec)
        staging = dest.parent / ".hf"
        # its progress (and so our cancel) moves once per chunk: 10 MB by default, seconds on a slow line
        constants.DOWNLOAD_CHUNK_SIZE = CHUNK_BYTES
        try:
            path = hf_hub_download(spec.repo or "", spec.path or "", revision=spec.revision, repo_type=spec.repo_type,
                                   local_dir=staging, endpoint=self.hf_endpoint, tqdm_class=_progress_bar(transfer, cancel),
                                   etag_timeout=self.timeout_s)
        except (EntryNotFoundError, RepositoryNotFoundError) as exc:
            raise DownloadError("%s: dead link (%s is not on the hub: %s)" % (spec.save_as, spec.where(), type(exc).__name__)) from exc
        except LocalEntryNotFoundError as exc:
            raise DownloadError("%s: cannot reach the Hugging Face hub (offline?); nothing was installed" % spec.save_as) from exc
        except HfHubHTTPError as exc:
            raise DownloadError("%s: the hub answered %s for %s" % (spec.save_as, _status(exc), spec.where())) from exc
        except (httpx.HTTPError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise  # the installer says what filled up
            raise DownloadError("%s: download from %s failed: %s" % (spec.save_as, spec.where(), exc)) from exc
        os.replace(path, dest)

    def _hub_reachable(self, spec: FileSpec) -> None:
        """One quick request first: offline, huggingface_hub would retry with backoff for many seconds."""
        endpoint = self.hf_endpoint or "https://huggingface.co"
        try:
            httpx.head(endpoint, timeout=min(self.timeout_s, 10.0))
        except httpx.TransportError:
            raise DownloadError("%s: cannot reach %s (offline?); nothing was installed" % (spec.save_as, endpoint)) from None

    def _http(self, spec: FileSpec, dest: Path, transfer: Transfer, cancel: threading.Event) -> str:
        """GET with ``Range`` from what is on disk; a dropped connection resumes (up to ``retries`` tries
        without progress), a server that ignores ``Range`` restarts the file."""
        partial = dest.with_name(dest.name + ".part")
        failures = 0
        with httpx.Client(follow_redirects=True, timeout=self.timeout_s) as client:
            while True:
                have = partial.stat().st_size if partial.exists() else 0
                headers = {"Range": "bytes=%d-" % have} if have else {}
                try:
                    with client.stream("GET", str(spec.url), headers=headers) as response:
                        if response.status_code == 416 and have:  # already complete
                            digest = _digest_of(partial)
                            break
                        if response.status_code >= 400:
                            raise DownloadError("%s: dead link (HTTP %d from %s)" % (spec.save_as, response.status_code, spec.url))
                        if have and response.status_code != 206:
                            have = 0  # the server sent the whole file again
                            transfer.done_bytes = 0
                        digest = _digest_of(partial) if have else hashlib.sha256()  # hashed on the way: no second read
                        if transfer.total_bytes is None:
                            length = response.headers.get("Content-Length")
                            transfer.total_bytes = have + int(length) if length and length.isdigit() else None
                        transfer.add(have if transfer.done_bytes == 0 else 0)
                        with partial.open("ab" if have else "wb") as handle:
                            for chunk in response.iter_bytes(CHUNK_BYTES):
                                if cancel.is_set():
                                    raise DownloadCancelledError("cancelled")
                                handle.write(chunk)
                                digest.update(chunk)
                                transfer.add(len(chunk))
                                failures = 0
                    break
                except (httpx.TransportError, httpx.DecodingError) as exc:
                    failures += 1
                    if failures > self.retries:
                        raise DownloadError("%s: download from %s failed after %d tries: %s"
                                            % (spec.save_as, spec.url, failures, exc or type(exc).__name__)) from exc
                    logger.warning("%s: %s; resuming (try %d)", spec.save_as, exc or type(exc).__name__, failures + 1)
                    if cancel.wait(min(2.0 ** failures / 4, 5.0)):
                        raise DownloadCancelledError("cancelled") from None
        os.replace(partial, dest)
        return str(digest.hexdigest())


def _digest_of(path: Path) -> Any:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest


def _status(exc: Any) -> str:
    response = getattr(exc, "response", None)
    return "HTTP %s" % getattr(response, "status_code", "?")


def _progress_bar(transfer: Transfer, cancel: threading.Event) -> Any:
    """A tqdm class for ``huggingface_hub`` that reports into ``transfer`` and stops at a cancel."""
    from tqdm.auto import tqdm

    class Progress(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            if kwargs.get("total"):
                transfer.total_bytes = int(kwargs["total"])
            if kwargs.get("initial"):
                transfer.done_bytes = 0
                transfer.add(int(kwargs["initial"]))

        def update(self, n: Optional[float] = 1) -> Optional[bool]:
            if cancel.is_set():
                raise DownloadCancelledError("cancelled")
            transfer.add(int(n or 0))
            return None

    return Progress
