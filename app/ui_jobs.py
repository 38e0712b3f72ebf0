"""The History and Batch tabs and the job endpoints (submit, job, cancel_job, retry_job, regenerate, history,
history_item, delete_history_item, export, batch). Thin wiring over ``app.job_actions``."""

from __future__ import annotations

import json
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import gradio as gr

from app import job_actions as actions
from app.actions import Workstation, output_formats
from app.identity import client_identity, owner_of
from app.job_actions import HISTORY_COLUMNS
from app.ui_errors import shown_to_person
from app.ui_processing import parse_json_object
from jobs.schema import STATES
from jobs.spec import JobSpec

PRIVATE: Dict[str, Any] = {"api_visibility": "private"}


def request_owner(request: Optional[gr.Request], browser: Optional[str] = None) -> Tuple[str, str, str]:
    """(owner, session, client) of a Gradio call (``app.identity``)."""
    session = str(getattr(request, "session_hash", "") or "")
    username = getattr(request, "username", None)
    address = str(getattr(getattr(request, "client", None), "host", "") or "")
    return owner_of(username, session, browser), session, client_identity(username, browser, address)


def parsed_spec(architecture: str, character: str, text: Optional[str], audio: Optional[str], options: Any, output_format: str,
                preprocess: Any, postprocess: Any, use_cache: bool, speak_with: Any) -> JobSpec:
    return JobSpec(architecture, character, text or "", audio, parse_json_object(options, "options") or {}, output_format or "wav",
                   parse_json_object(preprocess, "preprocess"), parse_json_object(postprocess, "postprocess"),
                   True if use_cache is None else bool(use_cache), parse_json_object(speak_with, "speak_with"))


class RequestInputs(NamedTuple):
    """The hidden inputs of a generation request (``/generate``, ``/submit``, ``/batch``, ...): one set, shared."""

    architecture: gr.Textbox
    character: gr.Textbox
    text: gr.Textbox
    audio: gr.Audio
    options: gr.JSON
    output_format: gr.Textbox
    preprocess: gr.JSON
    postprocess: gr.JSON
    use_cache: gr.Checkbox
    speak_with: gr.JSON


def request_inputs() -> RequestInputs:
    """Made inside an invisible group: stable API parameters (their labels are the parameter names)."""
    return RequestInputs(
        gr.Textbox(label="architecture"), gr.Textbox(label="character"), gr.Textbox(label="text"),
        gr.Audio(type="filepath", label="audio"), gr.JSON(label="options"), gr.Textbox(label="output_format", value="wav"),
        gr.JSON(label="preprocess"), gr.JSON(label="postprocess"), gr.Checkbox(label="use_cache", value=True),
        gr.JSON(label="speak_with"),
    )


def register_job_endpoints(station: Workstation, request_in: RequestInputs) -> None:
    """Named endpoints over hidden components: stable parameters for gradio_client, whatever the layout."""
    architecture_in, character_in, options_in, format_in = request_in.architecture, request_in.character, request_in.options, \
        request_in.output_format
    pre_in, post_in, speak_in = request_in.preprocess, request_in.postprocess, request_in.speak_with
    with gr.Group(visible=False):
        job_in = gr.Textbox(label="job_id")
        changes_in = gr.JSON(label="changes")
        query_in = gr.Textbox(label="query")
        state_in = gr.Textbox(label="state")
        limit_in = gr.Number(label="limit", value=50, precision=0)
        offset_in = gr.Number(label="offset", value=0, precision=0)
        lines_in = gr.Textbox(label="lines")
        files_in = gr.File(label="files", file_count="multiple", type="filepath")
        json_out = gr.JSON(label="result")
        text_out = gr.Textbox(label="message")
        audio_out = gr.Audio(type="filepath", label="audio")
        file_out = gr.File(label="file")
        buttons = [gr.Button() for _ in range(10)]

    def submit(architecture: str, character: str, text: Optional[str] = None, audio: Optional[str] = None, options: Any = None,
               output_format: str = "wav", preprocess: Any = None, postprocess: Any = None, use_cache: bool = True,
               speak_with: Any = None, request: gr.Request = None) -> Dict[str, Any]:  # type: ignore[assignment]
        """Queue a job and return at once: {"job_id", "state", "queue_position", ...}. Same parameters as /generate."""
        owner, session, client = request_owner(request)
        return shown_to_person(lambda: actions.submit(station, owner, session, parsed_spec(
            architecture, character, text, audio, options, output_format, preprocess, postprocess, use_cache, speak_with), client))

    def job(job_id: str, request: gr.Request) -> Dict[str, Any]:
        """A job's state (queued, running, succeeded, failed, cancelled, interrupted), place in line, progress, timings, error."""
        return shown_to_person(lambda: actions.status(station, job_id, request_owner(request)[0]))

    def cancel_job(job_id: str, request: gr.Request) -> str:
        """Cancel one of your queued or running jobs."""
        return shown_to_person(lambda: actions.cancel(station, job_id, request_owner(request)[0]))

    def retry_job(job_id: str, request: gr.Request) -> Dict[str, Any]:
        """Run a failed, cancelled or interrupted job again with the same settings."""
        return shown_to_person(lambda: actions.retry(station, job_id, request_owner(request)[0]))

    def regenerate(job_id: str, changes: Any = None, request: gr.Request = None) -> Dict[str, Any]:  # type: ignore[assignment]
        """A new take of an earlier job, with its settings edited by ``changes`` (e.g. {"text": "...", "options": {...}})."""
        owner, session, client = request_owner(request)

        def run() -> Dict[str, Any]:
            new_id = actions.regenerate(station, job_id, owner, session, parse_json_object(changes, "changes"), client)
            return station.jobs.status(new_id, owner)

        return shown_to_person(run)

    def history(query: Optional[str] = None, architecture: Optional[str] = None, state: Optional[str] = None, limit: float = 50,
                offset: float = 0,
                request: gr.Request = None) -> List[Dict[str, Any]]:  # type: ignore[assignment]
        """Your jobs, newest first; ``query`` searches text and character; filters by architecture and state."""
        return shown_to_person(lambda: actions.history(station, request_owner(request)[0], query or "", architecture or "", state or "",
                                                       int(limit or 50), int(offset or 0)))

    def history_item(job_id: str, request: gr.Request) -> Tuple[Optional[str], Dict[str, Any]]:
        """One of your jobs: its output (if kept) and its whole record: request, timings, provenance."""
        return shown_to_person(lambda: actions.item(station, job_id, request_owner(request)[0]))

    def delete_history_item(job_id: str, request: gr.Request) -> str:
        """Delete one of your ended jobs and its files."""
        return shown_to_person(lambda: actions.delete(station, job_id, request_owner(request)[0]))

    def export(job_id: str, output_format: str = "wav", request: gr.Request = None) -> str:  # type: ignore[assignment]
        """One of your results in another format (wav, wav24, wav-float, flac, flac24, ogg, opus, mp3), from its lossless master."""
        return shown_to_person(lambda: actions.export(station, job_id, request_owner(request)[0], output_format))

    def batch(architecture: str, character: str, lines: Optional[str] = None, files: Optional[List[str]] = None, options: Any = None,
              output_format: str = "wav", preprocess: Any = None, postprocess: Any = None, speak_with: Any = None,
              progress: gr.Progress = gr.Progress(),
              request: gr.Request = None) -> Tuple[str, List[Dict[str, Any]]]:  # type: ignore[assignment]
        """Many lines of text (one output each) or many recordings: a zip of the outputs with manifest.json/.csv, and the manifest."""
        owner, session, client = request_owner(request)
        return shown_to_person(lambda: actions.batch(
            station, owner, session, architecture, character, lines or "", files, parse_json_object(options, "options"),
            output_format or "wav",
            parse_json_object(preprocess, "preprocess"), parse_json_object(postprocess, "postprocess"),
            parse_json_object(speak_with, "speak_with"), lambda fraction, message: progress(fraction, desc=message), client))

    generate_inputs = list(request_in)
    endpoints: List[Tuple[Any, List[Any], Any, str]] = [
        (submit, generate_inputs, json_out, "submit"),
        (job, [job_in], json_out, "job"),
        (cancel_job, [job_in], text_out, "cancel_job"),
        (retry_job, [job_in], json_out, "retry_job"),
        (regenerate, [job_in, changes_in], json_out, "regenerate"),
        (history, [query_in, architecture_in, state_in, limit_in, offset_in], json_out, "history"),
        (history_item, [job_in], [audio_out, json_out], "history_item"),
        (delete_history_item, [job_in], text_out, "delete_history_item"),
        (export, [job_in, format_in], file_out, "export"),
        (batch, [architecture_in, character_in, lines_in, files_in, options_in, format_in, pre_in, post_in, speak_in],
         [file_out, json_out], "batch"),
    ]
    for button, (function, inputs, output, name) in zip(buttons, endpoints, strict=True):
        button.click(function, inputs=inputs, outputs=output, api_name=name, concurrency_limit=None)


def build_history_tab(station: Workstation, browser: gr.BrowserState, architectures: List[Tuple[str, str]]) -> None:
    """Search and filter your jobs; play, export, compare two takes, re-generate, retry, cancel, delete."""
    with gr.Tab("History") as tab:
        with gr.Row():
            search = gr.Textbox(label="Search text or character", scale=3)
            only_arch = gr.Dropdown(choices=[("all", ""), *architectures], value="", label="Architecture", scale=1)
            only_state = gr.Dropdown(choices=[("all", ""), *[(s, s) for s in STATES]], value="", label="State", scale=1)
            refresh = gr.Button("Refresh list", scale=1)
        table = gr.Dataframe(headers=HISTORY_COLUMNS, label="Your jobs (newest first; click one)", interactive=False)
        chosen = gr.Textbox(label="Job", interactive=False)
        with gr.Row():
            with gr.Column():
                take_a = gr.Audio(type="filepath", label="Take A (the job you clicked)", interactive=False, buttons=["download"])
                compare = gr.Button("Keep as take B, to compare")
            take_b = gr.Audio(type="filepath", label="Take B", interactive=False, buttons=["download"])
        with gr.Row():
            regenerate_button = gr.Button("Another take (settings below)", variant="primary")
            retry_button = gr.Button("Retry (failed / interrupted)")
            cancel_button = gr.Button("Cancel", variant="stop")
            delete_button = gr.Button("Delete", variant="stop")
        with gr.Row():
            export_format = gr.Dropdown(choices=output_formats(), value="mp3", label="Export as")
            export_button = gr.Button("Export")
            exported = gr.File(label="Exported file", interactive=False)
        edited = gr.Code(language="json", label="Settings for another take: the job's own; edit any (text, character, options, "
                         "preprocess, postprocess, output_format, speak_with)", lines=6)
        message = gr.Markdown()
        details = gr.JSON(label="How it was made (request, timings, provenance)")

    def rows(query: str, architecture: str, state: str, token: Optional[str], request: gr.Request) -> List[List[Any]]:
        return actions.history_table(station, request_owner(request, token)[0], query, architecture, state)

    filters = [search, only_arch, only_state, browser]
    gr.on([tab.select, refresh.click, search.submit, only_arch.change, only_state.change], rows, inputs=filters, outputs=table, **PRIVATE)

    def on_select(event: gr.SelectData, token: Optional[str], request: gr.Request) -> Tuple[str, Optional[str], Dict[str, Any], str]:
        row = event.row_value if isinstance(event.row_value, list) else []
        job_id = str(row[-1]) if row else ""
        audio, record = shown_to_person(lambda: actions.item(station, job_id, request_owner(request, token)[0]))
        return job_id, audio, record, json.dumps(actions.editable_settings(record), indent=1)

    table.select(on_select, inputs=browser, outputs=[chosen, take_a, details, edited], **PRIVATE)
    compare.click(lambda audio: audio, inputs=take_a, outputs=take_b, **PRIVATE)

    def act(kind: str, job_id: str, token: Optional[str], settings: str, previous: Optional[str], request: gr.Request,
            progress: gr.Progress = gr.Progress()) -> Tuple[str, Any, Any]:
        owner, session, client = request_owner(request, token)
        if not job_id:
            raise gr.Error("click a job in the list first", print_exception=False)
        if kind == "regenerate":
            def run() -> Tuple[str, Any, Any]:
                changes = parse_json_object(settings, "the settings") if (settings or "").strip() else None
                new_id = actions.regenerate(station, job_id, owner, session, changes, client)
                generation = station.wait(new_id, lambda fraction, text_: progress(fraction, desc=text_))
                # the new take in A, the one it came from in B: ready to compare
                return "new take: job %s (take B is the one it came from)" % new_id, str(generation.path), previous

            return shown_to_person(run)
        if kind == "retry":
            status = shown_to_person(lambda: actions.retry(station, job_id, owner))
            return "job %s is %s again" % (job_id, status["state"]), gr.update(), gr.update()
        if kind == "cancel":
            return shown_to_person(lambda: actions.cancel(station, job_id, owner)), gr.update(), gr.update()
        return shown_to_person(lambda: actions.delete(station, job_id, owner)), None, gr.update()

    def acting(kind: str) -> Any:
        def on_click(job_id: str, token: Optional[str], settings: str, previous: Optional[str], request: gr.Request,
                     progress: gr.Progress = gr.Progress()) -> Tuple[str, Any, Any]:
            return act(kind, job_id, token, settings, previous, request, progress)

        return on_click

    for button, kind in ((regenerate_button, "regenerate"), (retry_button, "retry"), (cancel_button, "cancel"), (delete_button, "delete")):
        button.click(acting(kind), inputs=[chosen, browser, edited, take_a], outputs=[message, take_a, take_b], **PRIVATE).then(
            rows, inputs=filters, outputs=table, **PRIVATE)

    def do_export(job_id: str, fmt: str, token: Optional[str], request: gr.Request) -> str:
        if not job_id:
            raise gr.Error("click a job in the list first", print_exception=False)
        return shown_to_person(lambda: actions.export(station, job_id, request_owner(request, token)[0], fmt))

    export_button.click(do_export, inputs=[chosen, export_format, browser], outputs=exported, **PRIVATE)


def build_batch_tab(station: Workstation, browser: gr.BrowserState, architectures: List[Tuple[str, str]], default_arch: str) -> None:
    with gr.Tab("Batch"):
        gr.Markdown("One output per line of text, or per recording; one bad item is reported and the rest go on.")
        with gr.Row():
            architecture = gr.Dropdown(choices=architectures, value=default_arch, label="Architecture")
            first = station.characters(default_arch)
            character = gr.Dropdown(choices=[(c.label, c.id) for c in first], value=first[0].id if first else None, label="Character")
            fmt = gr.Dropdown(choices=output_formats(), value=station.settings.default_output_format, label="Output format")
        lines = gr.Textbox(label="Lines of text (one output each)", lines=8)
        files = gr.File(label="…or recordings (one output each)", file_count="multiple", type="filepath")
        run = gr.Button("Run batch", variant="primary")
        result = gr.File(label="All outputs (zip with manifest.json and manifest.csv)", interactive=False)
        manifest = gr.Dataframe(headers=["item", "text", "input", "file", "state", "error", "job_id", "duration_s", "sample_rate"],
                                label="Items", interactive=False)

    def on_architecture(arch: str) -> Any:
        characters = station.characters(arch)
        return gr.update(choices=[(c.label, c.id) for c in characters], value=characters[0].id if characters else None)

    architecture.change(on_architecture, inputs=architecture, outputs=character, **PRIVATE)

    def on_run(arch: str, char: str, text: str, paths: Optional[List[str]], output_format: str, token: Optional[str],
               request: gr.Request, progress: gr.Progress = gr.Progress()) -> Tuple[str, List[List[Any]]]:
        owner, session, client = request_owner(request, token)
        path, items = shown_to_person(lambda: actions.batch(station, owner, session, arch, char, text, paths, None, output_format,
                                                            progress=lambda fraction, message: progress(fraction, desc=message),
                                                            client=client))
        return path, [[item[k] for k in ("item", "text", "input", "file", "state", "error", "job_id", "duration_s", "sample_rate")]
                      for item in items]

    run.click(on_run, inputs=[architecture, character, lines, files, fmt, browser], outputs=[result, manifest], **PRIVATE)
