"""Issue 17 defect 14 (outside the supervisor): the model files' hash memo is bounded, and the
installer's status reads its tasks under the installer's lock."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import List

from models.fetch import Fetcher
from models.installer import Installer
from models.store import FileHashes, Layout


def test_the_file_hash_memo_stays_bounded_and_follows_changes(tmp_path: Path) -> None:
    hashes = FileHashes(limit=64)
    files = []
    for index in range(500):  # many distinct files over a long-running app's life
        path = tmp_path / ("f%d.bin" % index)
        path.write_bytes(b"%d" % index)
        files.append(path)
        assert hashes(path) == hashlib.sha256(b"%d" % index).hexdigest()
    assert len(hashes) == 64
    recent = files[-1]
    assert hashes(recent) == hashlib.sha256(b"499").hexdigest() and len(hashes) == 64
    recent.write_bytes(b"changed, longer")  # size and modification time change: hashed again
    os.utime(recent, ns=(1, 1))
    assert hashes(recent) == hashlib.sha256(b"changed, longer").hexdigest()
    assert len(hashes) == 64


def test_the_workstation_hashes_model_files_through_a_bounded_memo(tmp_path: Path) -> None:
    from app.catalog import Catalog
    from app.provenance import Provenance
    from app.settings import Settings

    memo = Provenance(Catalog(Settings(data_dir=tmp_path), {}, {})).file_hashes
    assert isinstance(memo, FileHashes) and memo.limit <= 10_000


def test_the_installers_status_reads_its_tasks_under_its_lock(tmp_path: Path) -> None:
    installer = Installer(Layout(tmp_path), Fetcher())
    seen: List[object] = []
    try:
        with installer._lock:  # as start() holds it while it adds a task
            reader = threading.Thread(target=lambda: seen.append(installer.status()))
            reader.start()
            reader.join(0.3)
            assert reader.is_alive(), "status() read the tasks while start() could be adding one"
        reader.join(5.0)
        assert seen == [[]]
    finally:
        installer.shutdown()
