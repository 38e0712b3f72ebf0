"""What an interrupted download, import or deletion leaves in ``downloads/``: a download stopped by closing the
app resumes from its kept bytes after a restart (a ``Range`` request, the right sha256), and leftovers older
than their grace period are swept when the manager starts, never those of a download still running."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Set

import pytest

from models.leftovers import LEFTOVER_GRACE_S, PARTIAL_KEEP_S
from models.manager import ModelManager
from runtimes.adapters.rvc import RvcAdapter
from tests.models.hub_server import Fault, Hub
from tests.models.test_downloads import MB, character, finished, hf_file, manager_with, nothing_left, random_bytes


def wait_for_bytes(manager: ModelManager, entry_id: str, at_least: int) -> None:
    deadline = time.monotonic() + 30
    while manager.installer.tasks[entry_id].summary()["done_bytes"] < at_least and time.monotonic() < deadline:
        time.sleep(0.02)
    assert manager.installer.tasks[entry_id].summary()["done_bytes"] >= at_least


@pytest.mark.parametrize("source", ["huggingface", "url"])
def test_a_download_stopped_by_closing_the_app_resumes_after_a_restart(tmp_path: Path, hub: Hub, source: str) -> None:
    data = random_bytes(6 * MB, seed=7)
    sha256 = hashlib.sha256(data).hexdigest()
    if source == "huggingface":
        hub.put_hf("someone/voices", "big.pth", data)
        spec = hf_file("someone/voices", "big.pth", sha256=sha256)
        path = "/someone/voices/resolve/main/big.pth"
    else:
        spec = {"source": "url", "url": hub.put_url("big.pth", data), "save_as": "big.pth", "sha256": sha256}
        path = "/files/big.pth"
    hub.faults[path] = Fault(delay_per_chunk_s=0.02)
    entries = [character("Restarted", [spec])]
    first = manager_with(tmp_path, hub, entries)
    first.download("Restarted")
    wait_for_bytes(first, "rvc/Restarted", 2 * MB)
    first.close()  # the app stops mid-way
    part = first.layout.staging_dir / "rvc--Restarted" / "big.pth.part"
    kept = part.stat().st_size
    assert 2 * MB <= kept < len(data) and part.read_bytes() == data[:kept]

    hub.faults[path] = Fault()
    second = manager_with(tmp_path, hub, entries)  # a restarted app over the same data folder
    second.download("Restarted")
    summary = finished(second, "rvc/Restarted")
    assert summary["state"] == "installed", summary
    assert summary["files"][0]["sha256"] == sha256
    assert (second.layout.characters_dir("rvc") / "Restarted" / "big.pth").read_bytes() == data
    last_get = [headers for method, got, headers in hub.requests if method == "GET" and got == path][-1]
    assert last_get.get("Range") == "bytes=%d-" % kept, last_get
    assert nothing_left(second)
    second.close()


def test_a_kept_part_of_another_source_is_not_resumed(tmp_path: Path, hub: Hub) -> None:
    """The catalogue now names another file under the same name: the kept bytes belong to the old one."""
    old, new = random_bytes(3 * MB, seed=8), random_bytes(3 * MB, seed=9)
    first = manager_with(tmp_path, hub, [character("Changed", [{"source": "url", "url": hub.put_url("old.pth", old),
                                                                 "save_as": "model.pth"}])])
    hub.faults["/files/old.pth"] = Fault(delay_per_chunk_s=0.02)
    first.download("Changed")
    wait_for_bytes(first, "rvc/Changed", MB)
    first.close()
    second = manager_with(tmp_path, hub, [character("Changed", [{"source": "url", "url": hub.put_url("new.pth", new),
                                                                  "save_as": "model.pth"}])])
    second.download("Changed")
    assert finished(second, "rvc/Changed")["state"] == "installed"
    assert (second.layout.characters_dir("rvc") / "Changed" / "model.pth").read_bytes() == new
    [(_, _, headers)] = [request for request in hub.requests if request[1] == "/files/new.pth"]
    assert "Range" not in headers
    second.close()


def plant(path: Path, age_s: float, data: bytes = b"x") -> Path:
    """A file and the folders above it (up to ``downloads/``) last modified ``age_s`` ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    when = time.time() - age_s
    for touched in [path, *path.parents]:
        if touched.name == "downloads":
            break
        os.utime(touched, (when, when))
    return path


def remaining(downloads: Path) -> Set[str]:
    return {str(p.relative_to(downloads)) for p in downloads.rglob("*") if p.is_file()}


def test_leftovers_older_than_their_grace_period_are_swept_when_the_manager_starts(tmp_path: Path) -> None:
    downloads = tmp_path / "data" / "downloads"
    old, stale = LEFTOVER_GRACE_S + 60, PARTIAL_KEEP_S + 60
    plant(downloads / ".import-0a1b2c" / "Joe" / "G_0.pth", old)  # an import the app died in
    plant(downloads / ".deleting-Joe-123" / "model.pth", old)  # a deletion the app died in
    plant(downloads / "rvc--Gone" / "model.pth.part", stale)  # a download nobody resumed
    plant(downloads / "rvc--Gone" / "model.pth.part.json", stale)
    plant(downloads / "rvc--Gone" / "unpacked" / "added.index", old)
    plant(downloads / "rvc--Paused" / "model.pth.part", old)  # resumable for a while yet
    plant(downloads / "rvc--Paused" / "model.pth.part.json", old)
    plant(downloads / "rvc--Paused" / "config.json", old)  # a finished file: fetched again with the rest
    plant(downloads / ".import-fresh" / "Amy" / "G_0.pth", 5)  # young: perhaps still being written
    plant(downloads / "stray.tmp", old)
    ModelManager(tmp_path / "data", {"rvc": RvcAdapter.describe}).close()
    assert remaining(downloads) == {"rvc--Paused/model.pth.part", "rvc--Paused/model.pth.part.json",
                                    ".import-fresh/Amy/G_0.pth"}
    assert sorted(p.name for p in downloads.iterdir()) == [".import-fresh", "rvc--Paused"]


def test_a_running_download_is_never_swept(tmp_path: Path, hub: Hub) -> None:
    data = random_bytes(4 * MB, seed=10)
    hub.put_hf("someone/voices", "slow.pth", data)
    hub.faults["/someone/voices/resolve/main/slow.pth"] = Fault(delay_per_chunk_s=0.02)
    manager = manager_with(tmp_path, hub, [character("Running", [hf_file("someone/voices", "slow.pth")])])
    manager.download("Running")
    wait_for_bytes(manager, "rvc/Running", MB)
    swept = manager.installer.sweep(now=time.time() + 10 * PARTIAL_KEEP_S)  # as if everything were old
    assert not any("Running" in str(path) for path in swept), swept
    assert finished(manager, "rvc/Running")["state"] == "installed"
    assert (manager.layout.characters_dir("rvc") / "Running" / "slow.pth").read_bytes() == data
    manager.close()
