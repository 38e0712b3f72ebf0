"""The History and Batch tabs. Thin wiring over ``app.job_actions`` (their endpoints: ``app.ui_api_jobs``)."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

import gradio as gr

from app import job_actions as actions
from app.actions import Workstation, output_formats
from app.job_actions import HISTORY_COLUMNS
from app.ui_caller import request_owner
from app.ui_errors import shown_to_person
from app.ui_processing import parse_json_object
from jobs.schema import STATES

PRIVATE: Dict[str, Any] = {"api_visibility": "private"}


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
        stems = gr.Files(label="A cover's stems: vocals, accompaniment, converted vocals", interactive=False)
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

    def on_select(event: gr.SelectData, token: Optional[str], request: gr.Request) -> Tuple[str, Optional[str], Dict[str, Any], str, Any]:
        row = event.row_value if isinstance(event.row_value, list) else []
        job_id = str(row[-1]) if row else ""
        audio, record = shown_to_person(lambda: actions.item(station, job_id, request_owner(request, token)[0]))
        return job_id, audio, record, json.dumps(actions.editable_settings(record), indent=1), actions.stem_files(station, record)

    table.select(on_select, inputs=browser, outputs=[chosen, take_a, details, edited, stems], **PRIVATE)
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
