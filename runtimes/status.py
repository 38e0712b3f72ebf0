"""The rows of the Runtimes panel and ``/runtime_status``: one per live worker, with the characters it
holds, plus one per architecture or character that is failed or cooling down."""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional

from runtimes.backoff import CrashPolicy
from runtimes.memory import MIB
from runtimes.policy import KeepAlivePolicy
from runtimes.states import WorkerState
from runtimes.workers import WorkerTable

BOOT = "*boot*"
"""Crash records of a whole architecture (its workers' start-up) sit under this character key."""


def status_rows(table: WorkerTable, policy: KeepAlivePolicy, crashes: CrashPolicy) -> List[Dict[str, Any]]:
    now = time.monotonic()
    rows = []
    with table.lock:
        workers = table.live()
        snapshot = [(w, list(w.characters.values()), len(w.waiting) + (w.holder is not None)) for w in workers]
    for worker, slots, line in snapshot:
        idle_s = now - worker.last_used if worker.state == WorkerState.READY else 0.0
        loaded = []
        for slot in slots:
            key = (worker.architecture, slot.key)
            keep_alive = policy.keep_alive_s(key)
            slot_idle_s = now - slot.last_used
            loaded.append({
                "id": slot.character,
                "memory_mb": round(slot.bytes / MIB, 1),
                "measured": slot.measured,
                "pinned": policy.pinned(key),
                "idle_s": round(slot_idle_s, 1),
                "keep_alive_left_s": None if keep_alive < 0 else round(max(0.0, keep_alive - slot_idle_s), 1),
                "load_s": round(slot.load_s, 3),
                "details": slot.details,
            })
        lefts: List[Optional[float]] = [c["keep_alive_left_s"] for c in loaded]  # type: ignore[misc]
        default_left = None if policy.default_s < 0 else round(max(0.0, policy.default_s - idle_s), 1)
        worker_left = default_left if not lefts else None if None in lefts else max(x for x in lefts if x is not None)
        rows.append({
            "name": worker.name,
            "architecture": worker.architecture,
            "kind": worker.spec.kind,
            "characters": [slot.character for slot in slots],
            "character": ", ".join(slot.character for slot in slots),
            "loaded": loaded,
            "state": worker.state.value,
            "activity": worker.activity,
            "jobs_in_line": line,
            "device": worker.device,
            "pid": worker.process.handle.main_pid,
            "memory_mb": round(worker.accounted_bytes / MIB, 1),
            "base_memory_mb": round(worker.base_bytes / MIB, 1),
            "measured_peak_mb": round(worker.peak_bytes / MIB, 1) if worker.peak_bytes else None,
            "idle_s": round(idle_s, 1),
            "keep_alive_left_s": worker_left,
            "pinned": any(c["pinned"] for c in loaded),
            "load_s": round(worker.start_s, 3),
            "spawn_s": round(worker.spawn_s, 3),
            "last_error": worker.last_error,
            "log_tail": list(worker.process.log_tail)[-10:],
        })
    live = {row["architecture"] for row in rows}
    for key, record in crashes.snapshot().items():
        if (key[1] == BOOT and key[0] in live) or (not record.failed and record.retry_at <= now):
            continue
        state = WorkerState.FAILED if record.failed else WorkerState.BACKOFF
        rows.append({
            "name": "",
            "architecture": key[0],
            "characters": [] if key[1] == BOOT else [os.path.basename(key[1])],  # a folder's name, not its path
            "character": "" if key[1] == BOOT else os.path.basename(key[1]),
            "state": state.value,
            "device": "",
            "pid": None,
            "retry_after_s": None if record.failed else round(max(0.0, record.retry_at - now), 1),
            "crashes_in_a_row": record.consecutive,
            "last_error": record.failed or record.last_error,
        })
    return rows
