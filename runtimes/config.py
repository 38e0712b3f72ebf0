"""The supervisor's settings: one frozen object, built once by the app and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from runtimes.memory import MIB


@dataclass(frozen=True)
class SupervisorSettings:
    project_root: Path
    run_dir: Path
    """Holds the record of live workers (so a restarted app can reap what a crashed one left) and
    the measured memory peaks."""
    boot_timeout_s: float = 60.0
    load_timeout_s: float = 600.0
    job_timeout_s: float = 600.0
    heartbeat_timeout_s: float = 10.0
    progress_stall_s: float = 300.0
    keep_alive_s: float = 300.0
    """Idle time before a character is unloaded (and a worker with none left stopped); negative keeps
    forever, 0 unloads right after each job."""
    max_characters_per_worker: int = 8
    graceful_stop_s: float = 3.0
    monitor_interval_s: float = 0.5
    memory_reserve_bytes: int = 512 * MIB
    ram_budget_bytes: Optional[int] = None
    """Treat the machine as having this much RAM (system RAM policy); for small shared servers and tests."""
    default_need_bytes: int = 512 * MIB
    """A worker's own memory need before it was ever measured."""
    admission_timeout_s: float = 120.0
    release_timeout_s: float = 5.0
    allow_cpu_fallback: bool = False
    crash_backoff_base_s: float = 1.0
    crash_backoff_max_s: float = 60.0
    crash_retry_limit: int = 5
    assets_dir: Optional[Path] = None
    """Shared pretrained assets (content encoders, pitch extractors): workers find them here, offline."""
    conditioning_dir: Optional[Path] = None
    """Where zero-shot workers keep the conditioning they compute from voices (``runtimes.conditioning``), a folder per
    architecture, the only folder a worker writes; None: kept in memory only."""
    conditioning_architectures: Tuple[str, ...] = ()
    """The zero-shot architectures: only their workers get a conditioning folder."""
    model_roots: Tuple[Path, ...] = ()
    """Folders holding a folder per architecture whose files requests name (characters, shared models): a worker
    whose kind does not share the host's files (a container) is given its architecture's folder of each."""
