"""Model manager benchmarks, in one run:

    .venv/bin/python -m bench.models_bench [--size-mb 200]

1. Download throughput from a local server: the model manager's two paths (``huggingface_hub``
   against a local hub, plain HTTP with ``Range`` support) vs ``curl`` of the same file, interleaved.
   Target: within 10% of curl.
2. Catalogue load (every shipped file, ~435 entries, pydantic validation) and search. Target: under 100 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from models.catalogue import load_catalogue
from models.manager import SHIPPED_DIR, ModelManager
from runtimes.adapter import CharacterInfo
from tests.models.hub_server import Fault, start_hub


def timed_download(manager: ModelManager, entry_id: str) -> float:
    started = time.perf_counter()
    manager.download(entry_id)
    task = manager.wait(entry_id, 600)
    elapsed = time.perf_counter() - started
    assert task.state == "installed", task.error
    manager.delete(entry_id)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--line-mb-s", type=float, default=50.0)
    args = parser.parse_args()
    data = hashlib.shake_256(b"bench").digest(args.size_mb << 20)
    hub, server = start_hub()
    hub.put_hf("bench/voices", "model.pth", data)
    url = hub.put_url("model.pth", data)
    work = Path(tempfile.mkdtemp())
    (work / "catalogues").mkdir()
    entries = [{"name": "via hub", "architecture": "rvc", "files": [
                   {"source": "huggingface", "repo": "bench/voices", "path": "model.pth", "save_as": "model.pth"}]},
               {"name": "via http", "architecture": "rvc", "files": [{"source": "url", "url": url, "save_as": "model.pth"}]}]
    (work / "catalogues" / "bench.json").write_text(json.dumps({"format": "voicegen-catalogue", "version": 1, "entries": entries}))
    manager = ModelManager(work, {"rvc": lambda folder: CharacterInfo()}, hf_endpoint=hub.url)
    print("| line | path | median time, %d MB | throughput | vs curl |" % args.size_mb)
    print("|---|---|---|---|---|")
    for line_mb_s in (None, args.line_mb_s):
        pace = Fault(delay_per_chunk_s=65536 / (line_mb_s * 1e6)) if line_mb_s else Fault()
        hub.faults["/files/model.pth"] = hub.faults["/bench/voices/resolve/main/model.pth"] = pace
        times: Dict[str, List[float]] = {"curl": [], "hub": [], "http": []}
        for _ in range(args.rounds):
            target = work / "curl.bin"
            started = time.perf_counter()
            subprocess.run(["curl", "-s", "-o", str(target), url], check=True)
            times["curl"].append(time.perf_counter() - started)
            target.unlink()
            times["hub"].append(timed_download(manager, "rvc/via hub"))
            times["http"].append(timed_download(manager, "rvc/via http"))
        curl = statistics.median(times["curl"])
        for name, label in (("curl", "curl (baseline)"), ("hub", "Hugging Face file (huggingface_hub resolves it) + sha256 + install"),
                            ("http", "HTTP Range fetcher + sha256 + install")):
            median = statistics.median(times[name])
            print("| %s | %s | %.2f s | %.0f MB/s | %+.0f%% |" % (
                "local, unpaced" if line_mb_s is None else "paced to %.0f MB/s" % line_mb_s, label, median,
                args.size_mb / median, 100 * (median / curl - 1)))
    server.shutdown()
    manager.close()

    files = sorted(SHIPPED_DIR.glob("*.json"))
    loads = []
    for _ in range(5):
        started = time.perf_counter()
        catalogue = load_catalogue(files)
        loads.append(time.perf_counter() - started)
    searches = []
    for query in ("twilight", "rainbow dash singing", "", "zzz"):
        started = time.perf_counter()
        catalogue.search(query, "")
        searches.append(time.perf_counter() - started)
    print()
    print("catalogue: %d entries from %d files, load median %.1f ms (target < 100 ms), search %.2f ms (max of 4 queries)"
          % (len(catalogue.entries), len(files), 1000 * statistics.median(loads), 1000 * max(searches)))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
