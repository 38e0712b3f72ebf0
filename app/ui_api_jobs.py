"""The functions behind the job endpoints (/submit, /job, /cancel_job, /retry_job, /regenerate, /history,
/history_item, /delete_history_item, /export, /batch; named in ``app.ui_api``). Thin wiring over
``app.job_actions``."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import gradio as gr

from app import job_actions as actions
from app.actions import Workstation
from app.ui_caller import request_owner
from app.ui_errors import shown_to_person
from app.ui_processing import parse_json_object
from jobs.spec import JobSpec


def parsed_spec(architecture: str, character: str, text: Optional[str], audio: Optional[str], options: Any, output_format: str,
                preprocess: Any, postprocess: Any, use_cache: bool, speak_with: Any) -> JobSpec:
    return JobSpec(architecture, character, text or "", audio, parse_json_object(options, "options") or {}, output_format or "wav",
                   parse_json_object(preprocess, "preprocess"), parse_json_object(postprocess, "postprocess"),
                   True if use_cache is None else bool(use_cache), parse_json_object(speak_with, "speak_with"))


class JobEndpoints:
    def __init__(self, station: Workstation) -> None:
        self.station = station

    def submit(self, architecture: str, character: str, text: Optional[str] = None, audio: Optional[str] = None, options: Any = None,
               output_format: str = "wav", preprocess: Any = None, postprocess: Any = None, use_cache: bool = True,
               speak_with: Any = None, request: gr.Request = None) -> Dict[str, Any]:  # type: ignore[assignment]
        """Queue a job and return at once: {"job_id", "state", "queue_position", ...}. Same parameters as /generate."""
        owner, session, client = request_owner(request)
        return shown_to_person(lambda: actions.submit(self.station, owner, session, parsed_spec(
            architecture, character, text, audio, options, output_format, preprocess, postprocess, use_cache, speak_with), client))

    def job(self, job_id: str, request: gr.Request) -> Dict[str, Any]:
        """A job's state (queued, running, succeeded, failed, cancelled, interrupted), place in line, progress, timings, error."""
        return shown_to_person(lambda: actions.status(self.station, job_id, request_owner(request)[0]))

    def cancel_job(self, job_id: str, request: gr.Request) -> str:
        """Cancel one of your queued or running jobs."""
        return shown_to_person(lambda: actions.cancel(self.station, job_id, request_owner(request)[0]))

    def retry_job(self, job_id: str, request: gr.Request) -> Dict[str, Any]:
        """Run a failed, cancelled or interrupted job again with the same settings."""
        return shown_to_person(lambda: actions.retry(self.station, job_id, request_owner(request)[0]))

    def regenerate(self, job_id: str, changes: Any = None, request: gr.Request = None) -> Dict[str, Any]:  # type: ignore[assignment]
        """A new take of an earlier job, with its settings edited by ``changes`` (e.g. {"text": "...", "options": {...}})."""
        owner, session, client = request_owner(request)

        def run() -> Dict[str, Any]:
            new_id = actions.regenerate(self.station, job_id, owner, session, parse_json_object(changes, "changes"), client)
            return self.station.jobs.status(new_id, owner)

        return shown_to_person(run)

    def history(self, query: Optional[str] = None, architecture: Optional[str] = None, state: Optional[str] = None, limit: float = 50,
                offset: float = 0,
                request: gr.Request = None) -> List[Dict[str, Any]]:  # type: ignore[assignment]
        """Your jobs, newest first; ``query`` searches text and character; filters by architecture and state."""
        return shown_to_person(lambda: actions.history(self.station, request_owner(request)[0], query or "", architecture or "",
                                                       state or "", int(limit or 50), int(offset or 0)))

    def history_item(self, job_id: str, request: gr.Request) -> Tuple[Optional[str], Dict[str, Any]]:
        """One of your jobs: its output (if kept) and its whole record: request, timings, provenance."""
        return shown_to_person(lambda: actions.item(self.station, job_id, request_owner(request)[0]))

    def delete_history_item(self, job_id: str, request: gr.Request) -> str:
        """Delete one of your ended jobs and its files."""
        return shown_to_person(lambda: actions.delete(self.station, job_id, request_owner(request)[0]))

    def export(self, job_id: str, output_format: str = "wav", request: gr.Request = None) -> str:  # type: ignore[assignment]
        """One of your results in another format (wav, wav24, wav-float, flac, flac24, ogg, opus, mp3), from its lossless master."""
        return shown_to_person(lambda: actions.export(self.station, job_id, request_owner(request)[0], output_format))

    def batch(self, architecture: str, character: str, lines: Optional[str] = None, files: Optional[List[str]] = None,
              options: Any = None, output_format: str = "wav", preprocess: Any = None, postprocess: Any = None, speak_with: Any = None,
              progress: gr.Progress = gr.Progress(),
              request: gr.Request = None) -> Tuple[str, List[Dict[str, Any]]]:  # type: ignore[assignment]
        """Many lines of text (one output each) or many recordings: a zip of the outputs with manifest.json/.csv, and the manifest."""
        owner, session, client = request_owner(request)
        return shown_to_person(lambda: actions.batch(
            self.station, owner, session, architecture, character, lines or "", files, parse_json_object(options, "options"),
            output_format or "wav",
            parse_json_object(preprocess, "preprocess"), parse_json_object(postprocess, "postprocess"),
            parse_json_object(speak_with, "speak_with"), lambda fraction, message: progress(fraction, desc=message), client))
