"""A job's input recording, kept in the artifact store by key so a queued job survives a restart (and can run on any
host that sees the store), and read back as the request a runner takes. Shared by every job-queue implementation."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from jobs.artifacts import ArtifactStore, local_path
from jobs.errors import JobError, MissingArtifactError
from jobs.spec import JobSpec


def sha256_of(path: Path) -> str:
    """The recording's sha256 (its provenance), read in 1 MB pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def keep_input(artifacts: ArtifactStore, prefix: str, max_bytes: int, job_id: str,
               audio_path: Optional[str]) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """(name, sha256, key) of the input recording, kept under ``<prefix>/<job id><suffix>`` if within ``max_bytes``;
    another take of a kept recording shares its stored copy."""
    if not audio_path:
        return None, None, None
    source = Path(audio_path)
    digest = sha256_of(source)
    if source.stat().st_size > max_bytes:
        return source.name, digest, None
    name = job_id + re.sub(r"[^a-z0-9.]", "", source.suffix.lower())[:8]
    key = "%s/%s" % (prefix, name) if prefix else name
    stored = artifacts.key_of(source)
    try:
        if stored is None:
            raise MissingArtifactError(key)
        artifacts.link(stored, key)
    except MissingArtifactError:  # not in the store, or gone meanwhile (retention): a copy of the file given
        artifacts.put(key, source)
    return source.name, digest, key


def spec_of(row: Dict[str, Any], artifacts: ArtifactStore, max_bytes: int) -> JobSpec:
    """The job's request as the runner reads it: its kept recording as a local path (a key, or a legacy path)."""
    spec = JobSpec.from_row(row)
    kept = row.get("input_path")
    if row.get("input_name") and not kept:
        raise JobError("job %s's input recording was not kept (over %d MB): submit it again" % (row["id"], max_bytes >> 20))
    if not kept:
        return spec
    try:
        return spec.with_input(str(local_path(artifacts, kept)))
    except MissingArtifactError:
        raise JobError("job %s's input recording is no longer kept: submit it again" % row["id"]) from None
