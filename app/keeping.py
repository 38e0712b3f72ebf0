"""Files the app serves beside the results (previews, exports, batch archives): made in a scratch folder, then kept in
the artifact store under ``outputs/...``, which writes all or nothing and makes its folder again if retention removed
it meanwhile (a folder goes with its last file)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

from jobs.artifacts import ArtifactStore


def kept(artifacts: ArtifactStore, temp_dir: Path, key: str, make: Callable[[Path], Path]) -> Path:
    """``make(scratch file)`` writes the file (and returns where it wrote it: an encoder may change the suffix); it is
    kept under ``key`` (its suffix following the file's); the stored file to serve."""
    temp_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=temp_dir))
    try:
        made = make(scratch / key.rsplit("/", 1)[-1])
        key = key.rsplit(".", 1)[0] + made.suffix
        artifacts.put(key, made)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return artifacts.path_for(key)
