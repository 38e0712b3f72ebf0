"""Fetching one file: Hugging Face through ``huggingface_hub`` (its resume and retries), Google Drive
through ``gdown`` (its confirm pages, resume, retries, progress and cancel), other URLs over HTTP(S)
with ``Range`` resume; Mega is not fetched (no maintained downloader installs here): a clear message
says to download by hand and import. Progress in bytes, cancel at any chunk. Every request, each
library's included, goes only where the ``UrlPolicy`` allows (``models.urls``); the bytes of an unfinished
file are kept with where they came from (``models.partial``), so a later try resumes them."""

from __future__ import annotations

import errno
import hashlib
import http.client
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import httpx

from models.catalogue import FileSpec
from models.errors import DownloadCancelledError, DownloadError, UrlRefusedError
from models.partial import Partial
from models.store import file_digest
from models.urls import UrlPolicy

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
    def __init__(self, hf_endpoint: Optional[str] = None, timeout_s: float = 30.0, retries: int = 5,
                 policy: UrlPolicy = UrlPolicy()) -> None:
        self.hf_endpoint = hf_endpoint
        self.timeout_s = timeout_s
        self.retries = retries
        self.policy = policy
        self._opener = policy.opener()

    def fetch(self, spec: FileSpec, dest: Path, transfer: Transfer, cancel: threading.Event) -> Optional[str]:
        """Write ``spec``'s bytes to ``dest`` (its folder exists), resuming what a failed try (or an earlier run
        of the app) left. Returns the sha256 when it was computed on the way (else the caller reads the file)."""
        if spec.source == "mega":
            raise DownloadError("%s: Mega downloads are not supported (no maintained downloader installs here): download it by "
                                "hand from %s and import the folder or zip (Models tab, Import)" % (spec.save_as, spec.url))
        try:
            with self.policy.guard():
                if spec.source == "huggingface":
                    return self._huggingface(spec, dest, transfer, cancel)
                self.policy.check(str(spec.url))
                if spec.source == "gdrive":
                    return self._gdrive(spec, dest, transfer, cancel)
                return self._http(spec, dest, transfer, cancel)
        except UrlRefusedError as exc:
            raise UrlRefusedError("%s: %s" % (spec.save_as, exc)) from None

    def _huggingface(self, spec: FileSpec, dest: Path, transfer: Transfer, cancel: threading.Event) -> str:
        """``huggingface_hub`` resolves the file (endpoint, revision, repo type, redirects to its CDN, size,
        headers and token); the bytes come through the same fetcher as any URL (Range resume, hash on
        the way): ``hf_hub_download``'s own transfer (httpx) ran at a fifth of curl's speed here (bench/models_bench.py)."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
        from huggingface_hub.utils._headers import build_hf_headers

        self._hub_reachable(spec)
        url = hf_hub_url(spec.repo or "", spec.path or "", repo_type=spec.repo_type, revision=spec.revision, endpoint=self.hf_endpoint)
        try:
            metadata = get_hf_file_metadata(url, timeout=self.timeout_s, endpoint=self.hf_endpoint)
        except (EntryNotFoundError, RepositoryNotFoundError) as exc:
            raise DownloadError("%s: dead link (%s is not on the hub: %s)" % (spec.save_as, spec.where(), type(exc).__name__)) from exc
        except LocalEntryNotFoundError as exc:
            raise DownloadError("%s: cannot reach the Hugging Face hub (offline?); nothing was installed" % spec.save_as) from exc
        except HfHubHTTPError as exc:
            raise DownloadError("%s: the hub answered %s for %s" % (spec.save_as, _status(exc), spec.where())) from exc
        except (httpx.HTTPError, OSError) as exc:
            raise DownloadError("%s: the hub could not be asked for %s: %s" % (spec.save_as, spec.where(), exc)) from exc
        if metadata.size is not None:
            transfer.total_bytes = metadata.size
        location = metadata.location or url
        headers = build_hf_headers()
        if location != url:
            headers.pop("authorization", None)  # a signed CDN address: the token stays with the hub
            self.policy.check(location)
        return self._http(spec, dest, transfer, cancel, location, headers)

    def _gdrive(self, spec: FileSpec, dest: Path, transfer: Transfer, cancel: threading.Event) -> str:
        import gdown
        from gdown.exceptions import DownloadCancelled

        digest = hashlib.sha256()

        def progress(done: int, total: Optional[int]) -> None:
            if total:
                transfer.total_bytes = total
            transfer.add(done - transfer.done_bytes)

        try:
            gdown.download(url=str(spec.url), output=str(dest), quiet=True, resume=True, progress=progress, hasher=digest,
                           timeout=self.timeout_s, retries=self.retries, cancel=cancel)
        except DownloadCancelled:
            raise DownloadCancelledError("cancelled") from None
        except UrlRefusedError:
            raise  # a connection gdown opened (a redirect it followed) went where the policy does not allow
        except Exception as exc:  # gdown's own errors (a file Drive will not hand out), requests' (a dead link, offline)
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise  # the installer says what filled up
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DownloadError("%s: Google Drive would not give %s (%s); if it opens in a browser, download it by hand and "
                                "import it" % (spec.save_as, spec.url, reason[:200])) from None
        return digest.hexdigest()

    def _hub_reachable(self, spec: FileSpec) -> None:
        """One quick request first: offline, huggingface_hub would retry with backoff for many seconds."""
        endpoint = self.hf_endpoint or "https://huggingface.co"
        self.policy.check(endpoint)
        try:
            httpx.head(endpoint, timeout=min(self.timeout_s, 10.0))
        except httpx.TransportError:
            raise DownloadError("%s: cannot reach %s (offline?); nothing was installed" % (spec.save_as, endpoint)) from None

    def _http(self, spec: FileSpec, dest: Path, transfer: Transfer, cancel: threading.Event, url: Optional[str] = None,
              headers: Optional[Dict[str, str]] = None) -> str:
        """GET with ``Range`` from what is on disk; a dropped connection resumes (up to ``retries`` tries
        without progress), a server that ignores ``Range`` restarts the file. The standard library's
        client: its reads go straight into C buffers (httpx's pure-Python parsing halves throughput on a
        fast line); the hash runs in a thread beside the reads (hashlib releases the GIL)."""
        partial = Partial(dest.with_name(dest.name + ".part"), spec.where())
        failures = 0
        while True:
            have, validator = partial.kept()
            wanted = dict(headers or {}, **partial.range_headers(have, validator))
            request = urllib.request.Request(url or str(spec.url), headers=wanted)
            try:
                with self._opener.open(request, timeout=self.timeout_s) as response:
                    if have and response.status != 206:
                        have = 0  # the server sent the whole file again (or it changed since the kept bytes)
                    if not have:
                        partial.begin(response.headers)
                    length = response.headers.get("Content-Length")
                    expected = have + int(length) if length and length.isdigit() else None
                    if transfer.total_bytes is None or not have:
                        transfer.total_bytes = expected
                    transfer.done_bytes = 0
                    transfer.add(have)
                    with _BackgroundHash(partial.path, have) as digest, partial.path.open("ab" if have else "wb") as handle:
                        while chunk := response.read(CHUNK_BYTES):
                            if cancel.is_set():
                                raise DownloadCancelledError("cancelled")
                            handle.write(chunk)
                            digest.update(chunk)
                            transfer.add(len(chunk))
                            failures = 0
                        handle.flush()
                        if expected is not None and handle.tell() < expected:
                            raise ConnectionResetError("the server closed the connection at %d of %d bytes" % (handle.tell(), expected))
                return partial.finish(dest, digest.hexdigest())
            except urllib.error.HTTPError as exc:
                if exc.code == 416 and have:  # already complete
                    with _BackgroundHash(partial.path, have) as digest:
                        pass
                    return partial.finish(dest, digest.hexdigest())
                raise DownloadError("%s: dead link (HTTP %d from %s)" % (spec.save_as, exc.code, spec.where())) from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                    raise
                failures += 1
                reason = getattr(exc, "reason", None) or exc or type(exc).__name__
                if failures > self.retries:
                    raise DownloadError("%s: download from %s failed after %d tries: %s"
                                        % (spec.save_as, spec.where(), failures, reason)) from None
                logger.warning("%s: %s; resuming (try %d)", spec.save_as, reason, failures + 1)
                if cancel.wait(min(2.0 ** failures / 4, 5.0)):
                    raise DownloadCancelledError("cancelled") from None


class _BackgroundHash:
    """sha256 of what is written, computed in a thread beside the download (after the bytes already on
    disk when resuming)."""

    def __init__(self, existing: Path, existing_bytes: int) -> None:
        self._digest = hashlib.sha256()
        self._chunks: queue.Queue[Optional[bytes]] = queue.Queue(maxsize=16)
        self._existing = existing
        self._existing_bytes = existing_bytes
        """Only these first bytes: the download appends to the same file meanwhile."""
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._result = ""

    def _run(self) -> None:
        if self._existing_bytes:
            self._digest = file_digest(self._existing, self._existing_bytes)
        while (chunk := self._chunks.get()) is not None:
            self._digest.update(chunk)
        self._result = self._digest.hexdigest()

    def update(self, chunk: bytes) -> None:
        self._chunks.put(chunk)

    def __enter__(self) -> _BackgroundHash:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._chunks.put(None)
        self._thread.join()

    def hexdigest(self) -> str:
        return self._result


def _status(exc: Any) -> str:
    response = getattr(exc, "response", None)
    return "HTTP %s" % getattr(response, "status_code", "?")
