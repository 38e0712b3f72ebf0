"""What the History and Batch tabs and the job endpoints do: plain functions over the Workstation's job
service. Every answer names files, never server paths; another owner's job reads as one that does not exist."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import uuid
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

from app.actions import Generation, ProgressFn, Workstation
from app.errors import UserFacingError
from app.keeping import kept
from app.public_errors import redact
from jobs.artifacts import local_path
from jobs.errors import JobError
from jobs.spec import JobSpec
from pipeline.audio_io import OUTPUT_FORMATS, decode, encode
from pipeline.errors import PipelineError

T = TypeVar("T")
HISTORY_COLUMNS = ["time", "state", "architecture", "character", "text", "duration_s", "job_id"]


def _translated(call: Callable[[], T]) -> T:
    try:
        return call()
    except JobError as exc:
        raise UserFacingError(str(exc)) from None


def _when(epoch_s: Optional[float]) -> Optional[str]:
    return datetime.fromtimestamp(epoch_s).isoformat(timespec="seconds") if epoch_s else None


def kept_file(station: Workstation, value: Optional[str]) -> Optional[Path]:
    """A row's file (a key in the artifact store, or a path written before keys) as a local file, if it is still kept."""
    if not value:
        return None
    try:
        path = local_path(station.jobs.artifacts, value)
    except JobError:  # gone from the store (retention, or a delete)
        return None
    return path if path.is_file() else None


def public_record(row: Dict[str, Any], full: bool = False, kept: Optional[Path] = None) -> Dict[str, Any]:
    """A job as a person or a script sees it: no server paths. ``kept``: its output file, if still kept."""
    output = Path(row["output_path"]) if row.get("output_path") else None
    record: Dict[str, Any] = {
        "job_id": row["id"], "state": row["state"], "created": _when(row["created_at"]), "finished": _when(row.get("finished_at")),
        "architecture": row["architecture"], "character": row["character"], "text": row["text"], "input": row.get("input_name"),
        "duration_s": round(row["duration_s"], 3) if row.get("duration_s") is not None else None, "sample_rate": row.get("sample_rate"),
        "file": output.name if output else None, "file_kept": kept is not None, "cached": bool(row.get("cached")),
        "attempts": row.get("attempts"), "error": row.get("error"), "timings_s": row.get("timings") or {}, "batch_id": row.get("batch_id"),
    }
    if full:
        record["request"] = row.get("request")
        record["provenance"] = row.get("provenance")
        record["input_sha256"] = row.get("input_sha256")
    return record


def editable_settings(record: Dict[str, Any]) -> Dict[str, Any]:
    """What a person may change for another take of a job (its whole request; not its input recording)."""
    request = dict(record.get("request") or {})
    request.pop("use_cache", None)  # another take is never answered from the cache
    return {"text": record.get("text") or "", "character": record.get("character"), **request}


def submit(station: Workstation, owner: str, session: str, spec: JobSpec, client: Optional[str] = None) -> Dict[str, Any]:
    job_id = station.submit(spec, owner, session, client=client)
    return station.jobs.status(job_id, owner)


def status(station: Workstation, job_id: str, owner: str) -> Dict[str, Any]:
    return _translated(lambda: station.jobs.status((job_id or "").strip(), owner))


def cancel(station: Workstation, job_id: str, owner: str) -> str:
    row = _translated(lambda: station.jobs.get((job_id or "").strip(), owner))
    if not station.jobs.cancel(row["id"], owner):
        raise UserFacingError("job %s has already ended (%s)" % (row["id"], row["state"]))
    return "cancelling job %s" % row["id"]


def retry(station: Workstation, job_id: str, owner: str) -> Dict[str, Any]:
    row = _translated(lambda: station.jobs.get((job_id or "").strip(), owner))
    station.require_cloning_for(JobSpec.from_row(row), owner)
    retried = _translated(lambda: station.jobs.retry(row["id"], owner))
    return station.jobs.status(retried, owner)


def regenerate(station: Workstation, job_id: str, owner: str, session: str, changes: Optional[Dict[str, Any]] = None,
               client: Optional[str] = None) -> str:
    """A new job with an earlier job's settings (edited by ``changes``), never answered from the cache: a new take."""
    row = _translated(lambda: station.jobs.get((job_id or "").strip(), owner))
    spec = JobSpec.from_row(row)
    if row.get("input_name") and not spec.audio_path:
        raise UserFacingError("job %s's input recording was not kept: give it again" % row["id"])
    try:
        spec = spec.edited({"use_cache": False, **(changes or {})})
    except ValueError as exc:
        raise UserFacingError(str(exc)) from None
    return station.submit(spec, owner, session, client=client)


def history(station: Workstation, owner: str, query: str = "", architecture: str = "", state: str = "", limit: int = 50,
            offset: int = 0) -> List[Dict[str, Any]]:
    rows = station.jobs.store.page(owner, (query or "").strip(), architecture or "", state or "", max(1, min(int(limit or 50), 1000)),
                                   max(0, int(offset or 0)))
    return [public_record(row, kept=kept_file(station, row.get("output_path"))) for row in rows]


def history_table(station: Workstation, owner: str, query: str = "", architecture: str = "", state: str = "") -> List[List[Any]]:
    return [[(r["created"] or "").replace("T", " "), r["state"], r["architecture"], r["character"], (r["text"] or r["input"] or "")[:60],
             r["duration_s"], r["job_id"]] for r in history(station, owner, query, architecture, state, limit=200)]


def item(station: Workstation, job_id: str, owner: str) -> Tuple[Optional[str], Dict[str, Any]]:
    """A job's output (if still kept) and its whole record, provenance included."""
    row = _translated(lambda: station.jobs.get((job_id or "").strip(), owner))
    output = kept_file(station, row.get("output_path"))
    return (str(output) if output else None), public_record(row, full=True, kept=output)


def stem_files(station: Workstation, record: Dict[str, Any]) -> List[str]:
    """A cover's stems still kept (vocals, accompaniment, converted vocals), as files to download; empty for other jobs."""
    stems = ((record.get("provenance") or {}).get("cover") or {}).get("stems") or {}
    found = [kept_file(station, key) for key in stems.values() if isinstance(key, str) and key.startswith("stems/")]
    return [str(path) for path in found if path is not None]


def delete(station: Workstation, job_id: str, owner: str) -> str:
    _translated(lambda: station.jobs.delete((job_id or "").strip(), owner))
    return "deleted job %s and its files" % job_id.strip()


def export(station: Workstation, job_id: str, owner: str, output_format: str) -> str:
    """The job's result in another format, re-encoded from its lossless master (never from a lossy copy)."""
    row = _translated(lambda: station.jobs.get((job_id or "").strip(), owner))
    if output_format not in OUTPUT_FORMATS:
        raise UserFacingError("unknown output format %r (choose one of %s)" % (output_format, ", ".join(OUTPUT_FORMATS)))
    source = kept_file(station, row.get("master_path")) or kept_file(station, row.get("output_path"))
    if source is None:
        raise UserFacingError("job %s has no output kept (%s)" % (row["id"], row["state"]))
    try:
        decoded = decode(source)
        # served like the outputs; swept an hour later (no job names it); each export its own file
        key = "outputs/exports/%s/%s-%s.wav" % (uuid.uuid4().hex[:12], Path(row["output_path"]).name.split(".")[0], output_format)
        tags = {"title": (row["text"] or "conversion")[:120], "artist": row["character"], "album": row["architecture"],
                "software": "voice workstation"}
        return str(kept(station.jobs.artifacts, station.settings.temp_dir, key,
                        lambda scratch: encode(decoded.audio, decoded.sample_rate, scratch, output_format, tags)))
    except PipelineError as exc:
        raise UserFacingError(str(exc)) from exc


def batch(
    station: Workstation,
    owner: str,
    session: str,
    architecture: str,
    character: str,
    lines: str = "",
    files: Optional[Sequence[str]] = None,
    options: Optional[Dict[str, Any]] = None,
    output_format: str = "wav",
    preprocess: Optional[Dict[str, Any]] = None,
    postprocess: Optional[Dict[str, Any]] = None,
    speak_with: Optional[Dict[str, Any]] = None,
    progress: ProgressFn = lambda fraction, message: None,
    client: Optional[str] = None,
) -> Tuple[str, List[Dict[str, Any]]]:
    """Many lines of text (one output each) or many recordings, each its own job; one bad item is reported in the
    manifest and does not stop the others. Returns a zip of the outputs with manifest.json and manifest.csv."""
    texts = [line.strip() for line in (lines or "").splitlines() if line.strip()]
    recordings = [str(f) for f in (files or []) if f]
    if not texts and not recordings:
        raise UserFacingError("a batch needs lines of text (one per output) or recordings")
    limit = station.settings.max_batch_items
    if len(texts) + len(recordings) > limit:
        raise UserFacingError("a batch takes up to %d items; this one has %d" % (limit, len(texts) + len(recordings)))
    batch_id = uuid.uuid4().hex
    items: List[Dict[str, Any]] = []
    for text in texts:
        items.append({"item": len(items) + 1, "text": text, "spec": JobSpec(architecture, character, text, None, dict(options or {}),
                                                                           output_format, preprocess, postprocess, True, speak_with)})
    for path in recordings:
        items.append({"item": len(items) + 1, "input": Path(path).name,
                      "spec": JobSpec(architecture, character, "", path, dict(options or {}), output_format, preprocess, postprocess,
                                      True, speak_with)})
    for entry in items:
        try:
            entry["job_id"] = station.submit(entry["spec"], owner, session, batch_id, client=client)
        except UserFacingError as exc:
            entry["error"] = redact(str(exc))  # it goes into a manifest a remote person reads
    done = [0]
    lock = threading.Lock()

    def collect(entry: Dict[str, Any]) -> None:
        try:
            generation: Generation = station.wait(entry["job_id"])
            entry["generation"] = generation
        except UserFacingError as exc:
            entry["error"] = redact(str(exc))  # it goes into a manifest a remote person reads
        with lock:
            done[0] += 1
            progress(done[0] / len(items), "item %d of %d done" % (done[0], len(items)))

    waiters = [threading.Thread(target=collect, args=(entry,), daemon=True) for entry in items if "job_id" in entry]
    done[0] = len(items) - len(waiters)
    for thread in waiters:
        thread.start()
    for thread in waiters:
        thread.join()
    return _zip_batch(station, batch_id, items)


def _zip_batch(station: Workstation, batch_id: str, items: List[Dict[str, Any]]) -> Tuple[str, List[Dict[str, Any]]]:
    manifest: List[Dict[str, Any]] = []
    key = "outputs/%s/batch-%s.zip" % (datetime.now().strftime("%Y-%m-%d"), batch_id)
    return str(kept(station.jobs.artifacts, station.settings.temp_dir, key, lambda scratch: _write_zip(scratch, batch_id, items,
                                                                                                      manifest))), manifest


def _write_zip(target: Path, batch_id: str, items: List[Dict[str, Any]], manifest: List[Dict[str, Any]]) -> Path:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:  # audio does not deflate
        for entry in items:
            generation: Optional[Generation] = entry.get("generation")
            name = None
            if generation is not None:
                slug = re.sub(r"[^A-Za-z0-9_-]+", "_", (entry.get("text") or Path(entry.get("input") or "item").stem))[:40].strip("_")
                name = "%03d-%s%s" % (entry["item"], slug or "item", generation.path.suffix)
                archive.write(generation.path, name)
            manifest.append({
                "item": entry["item"], "text": entry.get("text"), "input": entry.get("input"), "file": name,
                "state": "succeeded" if generation is not None else "failed", "error": entry.get("error"), "job_id": entry.get("job_id"),
                "duration_s": round(generation.duration_s, 3) if generation else None,
                "sample_rate": generation.sample_rate if generation else None,
            })
        archive.writestr("manifest.json", json.dumps({"batch_id": batch_id, "items": manifest}, indent=1))
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=list(manifest[0]))
        writer.writeheader()
        writer.writerows(manifest)
        archive.writestr("manifest.csv", table.getvalue())
    return target
