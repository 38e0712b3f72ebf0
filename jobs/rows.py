"""A job's row as callers read it, the same for every job-queue implementation: owned or not there, its kept recording
as a local path, and the status record a poller shows."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Dict, Optional

from jobs import retention
from jobs.artifacts import ArtifactStore, local_path
from jobs.errors import JobError, MissingArtifactError, UnknownJobError
from jobs.schema import ACTIVE_STATES
from jobs.store import JobStore


def owned_row(store: JobStore, job_id: str, owner: Optional[str]) -> Dict[str, Any]:
    """A job's row as stored (files by key); another owner's job is reported exactly like a job that does not exist."""
    row = store.get(job_id) if job_id else None
    if row is None or (owner is not None and row["owner"] != owner):
        raise UnknownJobError("no job %r in your history" % job_id)
    return row


def with_local_input(row: Dict[str, Any], artifacts: ArtifactStore) -> Dict[str, Any]:
    """The row with its kept recording (``input_path``) as a local path to read, or None where it is no longer kept."""
    if row.get("input_path"):
        try:
            row["input_path"] = str(local_path(artifacts, row["input_path"]))
        except MissingArtifactError:
            row["input_path"] = None
    return row


def status_record(row: Dict[str, Any], queue_position: Optional[int], fraction: Optional[float], message: str) -> Dict[str, Any]:
    """State, place in line, progress, times, error: what a poller shows."""
    return {
        "job_id": row["id"], "state": row["state"], "queue_position": queue_position,
        "progress": fraction, "message": message, "architecture": row["architecture"], "character": row["character"],
        "created_at": row["created_at"], "started_at": row["started_at"], "finished_at": row["finished_at"],
        "attempts": row["attempts"], "timings_s": row["timings"], "error": row["error"], "batch_id": row["batch_id"],
        "file": PurePosixPath(row["output_path"]).name if row.get("output_path") else None, "host": row.get("host"),
    }


def delete_ended(store: JobStore, artifacts: ArtifactStore, row: Dict[str, Any]) -> None:
    """Remove an ended job and its files that no other job names; a queued or running one is refused."""
    if row["state"] in ACTIVE_STATES:
        raise JobError("job %s is %s: cancel it first" % (row["id"], row["state"]))
    retention.remove_jobs(store, [row], places=[(artifacts, "")])
