"""Installing catalogue entries: dependencies first (each once, even when two downloads need it), every
file fetched into a staging folder, verified, unpacked, linked, then renamed into place, so that a
character appears only complete. Several installs run at once under a limit; each can be cancelled
at any point and leaves nothing behind. A download stopped by the app closing (or by a connection that
would not come back) keeps the bytes it fetched for the next try, even after a restart; what such stops
leave is swept after a grace period when the installer starts (``models.leftovers``)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set

from models.archive import extract, remove_tree
from models.catalogue import Catalogue, Entry
from models.errors import ChecksumMismatchError, DownloadCancelledError, DownloadError, ModelError, NotEnoughSpaceError
from models.fetch import Fetcher, Transfer
from models.leftovers import keep_only_partials, sweep
from models.store import HashLedger, Layout, folder_name, sha256_of, single_file_asset, write_record

logger = logging.getLogger(__name__)

FREE_SPACE_RESERVE_BYTES = 256 << 20
"""Left free after a download, so that the rest of the app (outputs, caches) keeps working."""


@dataclass
class InstallTask:
    entry: Entry
    state: str = "queued"  # queued, downloading, installed, failed, cancelled
    error: str = ""
    transfers: List[Transfer] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    flags: List[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)

    def summary(self) -> Dict[str, Any]:
        total = sum(t.total_bytes or 0 for t in self.transfers)
        done = sum(t.done_bytes for t in self.transfers if t.state != "skipped")
        speed = sum(t.speed_bps for t in self.transfers)
        return {
            "id": self.entry.id, "name": self.entry.name, "architecture": self.entry.architecture, "state": self.state,
            "error": self.error, "flags": list(self.flags), "done_bytes": done, "total_bytes": total or None,
            "speed_mb_s": round(speed / 1e6, 2), "eta_s": round((total - done) / speed, 1) if speed and total else None,
            "files": [{"file": t.name, "state": t.state, "done_bytes": t.done_bytes, "total_bytes": t.total_bytes,
                       "speed_mb_s": round(t.speed_bps / 1e6, 2), "eta_s": None if t.eta_s is None else round(t.eta_s, 1),
                       "error": t.error, "sha256": t.sha256} for t in self.transfers],
        }


class Installer:
    def __init__(self, layout: Layout, fetcher: Fetcher, max_parallel: int = 3,
                 on_installed: Callable[[Entry], None] = lambda entry: None) -> None:
        self.layout = layout
        self.fetcher = fetcher
        self.ledger = HashLedger(layout.data_dir / "models" / "measured-hashes.json")
        self.on_installed = on_installed
        self.tasks: Dict[str, InstallTask] = {}
        self._lock = threading.Lock()
        self._entry_locks: Dict[str, threading.Lock] = {}
        self._busy: Set[Path] = set()
        """Staging folders of the installs running now (never swept)."""
        self._closing = False
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="download")
        self.sweep()

    def sweep(self, now: Optional[float] = None) -> List[Path]:
        """Remove what interrupted downloads, imports and deletions left, once older than their grace period."""
        with self._lock:
            busy = set(self._busy)
        removed = sweep(self.layout.staging_dir, time.time() if now is None else now, busy)
        if removed:
            logger.info("swept %d leftover(s) from %s", len(removed), self.layout.staging_dir)
        return removed

    def start(self, catalogue: Catalogue, entry: Entry) -> InstallTask:
        with self._lock:
            running = self.tasks.get(entry.id)
            if running is not None and running.state in ("queued", "downloading"):
                return running
            if self.layout.is_installed(entry):
                raise ModelError("%s is already installed" % entry.id)
            chain = catalogue.closure(entry)  # unknown or circular dependencies fail here, before anything starts
            task = InstallTask(entry)
            task.transfers = [Transfer("%s: %s" % (item.name, f.save_as), f.size_bytes) for item in chain for f in item.files]
            self.tasks[entry.id] = task
        self._pool.submit(self._run, task, chain)
        return task

    def cancel(self, entry_id: str) -> bool:
        task = self.tasks.get(entry_id)
        if task is None or task.state not in ("queued", "downloading"):
            return False
        task.cancel.set()
        return True

    def shutdown(self) -> None:
        """Stop every download, keeping what each fetched for the next start."""
        self._closing = True
        for task in list(self.tasks.values()):
            task.cancel.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _entry_lock(self, entry_id: str) -> threading.Lock:
        with self._lock:
            return self._entry_locks.setdefault(entry_id, threading.Lock())

    def _run(self, task: InstallTask, chain: List[Entry]) -> None:
        task.state = "downloading"
        try:
            if task.cancel.is_set():
                raise DownloadCancelledError("cancelled")
            self._check_space(chain)
            position = 0
            for item in chain:
                transfers = task.transfers[position:position + len(item.files)]
                position += len(item.files)
                with self._entry_lock(item.id):  # a dependency another download is fetching: wait, then find it installed
                    if self.layout.is_installed(item):
                        for transfer in transfers:
                            transfer.state = "skipped"
                        continue
                    self._install(item, transfers, task)
            task.state = "installed"
            self.on_installed(task.entry)
        except OSError as exc:  # the disk filled up (or went away) while writing
            task.state, task.error = "failed", "%s while downloading %s; nothing of it was installed" % (
                "the disk is full" if exc.errno == errno.ENOSPC else "could not write to the data folder (%s)" % exc.strerror,
                task.entry.name)
        except DownloadCancelledError:
            task.state, task.error = "cancelled", ("the app stopped; downloading it again resumes where it stopped" if self._closing
                                                   else "cancelled; nothing of it was installed")
        except ModelError as exc:
            task.state, task.error = "failed", str(exc)
        except Exception as exc:  # a thread boundary: report, never vanish
            logger.exception("install of %s failed", task.entry.id)
            task.state, task.error = "failed", "%s: %s" % (type(exc).__name__, exc)
        finally:
            for transfer in task.transfers:
                if transfer.state in ("waiting", "downloading", "verifying"):
                    transfer.state = task.state if task.state in ("failed", "cancelled") else "done"
            task.done.set()
            logger.info("install %s: %s %s", task.entry.id, task.state, task.error)

    def _check_space(self, chain: List[Entry]) -> None:
        needed = sum(e.size_bytes or 0 for e in chain if not self.layout.is_installed(e))
        self.layout.staging_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.layout.staging_dir).free
        if needed + FREE_SPACE_RESERVE_BYTES > free:
            raise NotEnoughSpaceError("not enough disk space: this download needs %.2f GB (+%.2f GB kept free), %.2f GB are free in %s"
                                      % (needed / 1e9, FREE_SPACE_RESERVE_BYTES / 1e9, free / 1e9, self.layout.data_dir))

    def _install(self, entry: Entry, transfers: List[Transfer], task: InstallTask) -> None:
        staging = self.layout.staging_dir / folder_name(entry.id.replace("/", "--"))
        target = self.layout.target(entry)
        with self._lock:
            self._busy.add(staging)
        try:
            if staging.is_dir():
                keep_only_partials(staging)  # what an earlier try (or run) fetched is resumed
            staging.mkdir(parents=True, exist_ok=True)
            files = []
            for spec, transfer in zip(entry.files, transfers, strict=True):
                destination = staging / spec.save_as
                destination.parent.mkdir(parents=True, exist_ok=True)
                try:
                    digest = self.fetcher.fetch(spec, destination, transfer, task.cancel)
                except ModelError as exc:
                    transfer.state, transfer.error = "failed", str(exc)
                    raise
                transfer.state = "verifying"
                files.append(self._verify(spec, destination, transfer, task, digest))
                if spec.unzip != "none":
                    extract(destination, destination.parent, strategy=spec.unzip)
                    destination.unlink()
                transfer.state = "done"
            for link in entry.links:
                self._link(entry, link.target, link.save_as, staging, target)
            record = {"id": entry.id, "name": entry.name, "architecture": entry.architecture, "kind": entry.kind,
                      "license": entry.license, "creator": entry.creator, "origin": entry.origin, "source": "catalogue",
                      "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files, "flags": list(task.flags)}
            target.parent.mkdir(parents=True, exist_ok=True)
            if single_file_asset(entry):
                write_record(self.layout.record_path(target, single_file=True), record)
                os.replace(staging / entry.files[0].save_as, target)
            else:
                write_record(staging / ".voicegen-model.json", record)
                os.rename(staging, target)  # the one step that makes it appear, complete
        except BaseException as exc:
            if self._resumable(exc):
                keep_only_partials(staging)
            else:
                remove_tree(staging)
            raise
        else:
            remove_tree(staging)
        finally:
            with self._lock:
                self._busy.discard(staging)

    def _resumable(self, exc: BaseException) -> bool:
        """Stopped by the app closing, or by the network (a plain ``DownloadError``: retries used up, a dead link):
        the bytes fetched are kept for the next try. A person's cancel, a wrong checksum, a full disk keep nothing."""
        return (isinstance(exc, DownloadCancelledError) and self._closing) or type(exc) is DownloadError

    def _verify(self, spec: Any, path: Path, transfer: Transfer, task: InstallTask, computed: Optional[str]) -> Dict[str, Any]:
        digest = computed or sha256_of(path)
        transfer.sha256 = digest
        size = path.stat().st_size
        if spec.size_bytes is not None and size != spec.size_bytes and not spec.sha256:
            task.flags.append("%s: %d bytes arrived, the catalogue says %d (changed upstream?)" % (spec.save_as, size, spec.size_bytes))
        if spec.sha256:
            if digest != spec.sha256:
                raise ChecksumMismatchError("%s: checksum mismatch (sha256 %s..., the catalogue says %s...); nothing was installed"
                                            % (spec.save_as, digest[:12], spec.sha256[:12]))
            checked = "catalogue"
        else:
            earlier = self.ledger.check(spec.where(), digest)
            if earlier:
                task.flags.append("%s differs from the first download of the same file (sha256 %s... then, %s... now)"
                                  % (spec.save_as, earlier[:12], digest[:12]))
            checked = "measured"
        return {"file": spec.save_as, "size_bytes": size, "sha256": digest, "sha256_from": checked, "where": spec.where()}

    def _link(self, entry: Entry, target_name: str, save_as: str, staging: Path, final_folder: Path) -> None:
        """A relative link (the data folder can move) from the character's file to the shared model's."""
        shared = [d for d in entry.depends_on if "/shared/" in d]
        if not shared:
            raise ModelError("%s links %s but depends on no shared model" % (entry.id, target_name))
        architecture, _, name = shared[0].partition("/shared/")
        source = self.layout.shared_dir(architecture) / folder_name(name) / target_name
        if not source.exists():
            raise ModelError("%s: the shared model %s has no %s" % (entry.id, name, target_name))
        link = staging / save_as
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(source, (final_folder / save_as).parent))

    def status(self) -> List[Dict[str, Any]]:
        with self._lock:  # a snapshot: start() adds tasks under the same lock
            tasks = sorted(self.tasks.values(), key=lambda t: t.started_at, reverse=True)
        return [task.summary() for task in tasks]

    def wait(self, entry_id: str, timeout_s: Optional[float] = None) -> InstallTask:
        task = self.tasks[entry_id]
        task.done.wait(timeout_s)
        return task
