"""The Models tab: catalogue, downloads, installed models and disk use, import. Thin wiring over
``app.model_actions`` (its endpoints: ``app.ui_api_models``)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import gradio as gr

from app import model_actions as actions
from app.actions import Workstation
from app.ui_api_models import ModelEndpoints
from app.ui_errors import as_operator


def build_models_tab(station: Workstation, calls: ModelEndpoints, demo: gr.Blocks) -> None:
    """Call inside the app's ``gr.Blocks``. Downloads, deletions, imports and catalogue changes fill or empty the
    server's disk: on a shared server they are the operator's."""

    architectures = sorted({row["architecture"] for row in actions.catalogue(station, kind="")})

    with gr.Tab("Models"):
        usage = gr.Markdown()
        with gr.Row():
            search = gr.Textbox(label="Search the catalogue", placeholder="character or creator name", scale=3)
            only = gr.Dropdown(choices=[("all architectures", "")] + [(a, a) for a in architectures], value="", label="Architecture")
        table = gr.Dataframe(headers=actions.CATALOGUE_COLUMNS, label="Catalogue (click a row to choose it)", interactive=False,
                             max_height=360)
        with gr.Row():
            chosen = gr.Textbox(label="Chosen entry (id)", scale=3)
            download_button = gr.Button("Download", variant="primary")
            cancel_button = gr.Button("Cancel download", variant="stop")
        message = gr.Markdown()
        progress_table = gr.Dataframe(headers=actions.DOWNLOAD_COLUMNS, label="Downloads", interactive=False)
        with gr.Accordion("Installed models and disk use", open=False):
            installed_table = gr.Dataframe(headers=actions.INSTALLED_COLUMNS, label="Installed", interactive=False)
            with gr.Row():
                delete_id = gr.Textbox(label="Installed id to delete", scale=3)
                delete_button = gr.Button("Delete", variant="stop")
        with gr.Accordion("Import your own model", open=False):
            with gr.Row():
                upload = gr.File(label="A zip of the model's files", file_types=[".zip"], elem_id="import-zip")
                upload_folder = gr.File(label="or its folder", file_count="directory")
            with gr.Row():
                import_name = gr.Textbox(label="Character name")
                import_license = gr.Textbox(label="License", placeholder="e.g. cc-by-4.0, or unspecified")
                import_arch = gr.Dropdown(choices=[("detect from the files", "")] + [(a, a) for a in station.specs], value="",
                                          label="Architecture")
            import_button = gr.Button("Import")
        with gr.Accordion("Catalogues", open=False):
            catalogue_file = gr.File(label="Add a catalogue file (ours, or the established app's <architecture>.character_models.json)")
            with gr.Row():
                catalogue_url = gr.Textbox(label="Or fetch one from a URL", scale=3)
                refresh_button = gr.Button("Fetch")
            problems = gr.JSON(label="Entries skipped (by file and name)")

    def refresh_all(query: str, architecture: str) -> Tuple[Any, ...]:
        return (actions.catalogue_table(station, query, architecture), actions.downloads_table(station),
                actions.installed_table(station), actions.disk_usage_text(station), actions.catalogue_problems(station))

    all_outputs = [table, progress_table, installed_table, usage, problems]
    private: Dict[str, Any] = {"api_visibility": "private"}
    gr.on([search.submit, only.change], refresh_all, inputs=[search, only], outputs=all_outputs, **private)

    def on_select(event: gr.SelectData) -> str:
        row = event.row_value if isinstance(event.row_value, list) else []
        return str(row[0]) if row else ""

    table.select(on_select, outputs=chosen, **private)
    installed_table.select(on_select, outputs=delete_id, **private)

    def start(entry_id: str, request: gr.Request) -> str:
        summary = calls.download_model(entry_id, request)
        return "Downloading **%s** (%s)" % (summary["id"], summary["state"])

    download_button.click(start, inputs=chosen, outputs=message, **private)
    cancel_button.click(calls.cancel_download, inputs=chosen, outputs=message, **private)

    def remove(item_id: str, request: gr.Request) -> str:
        result = calls.delete_model(item_id, request)
        return "Deleted **%s**: %.1f MB freed" % (result["deleted"], result["freed_mb"])

    delete_button.click(remove, inputs=delete_id, outputs=message, **private).then(
        refresh_all, inputs=[search, only], outputs=all_outputs, **private)

    def do_import(file: Optional[str], folder: Optional[List[str]], name: str, license_name: str, architecture: str,
                  request: gr.Request) -> str:
        if file:
            result = calls.import_model(file, "", name, license_name, architecture, request)
        else:
            result = as_operator(station.access, request, lambda: actions.import_folder_files(station, folder or [], name,
                                                                                              license_name, architecture or None))
        return "Imported **%s** (%s%s): choose it on the Generate tab" % (
            result["name"], result["architecture"], " v" + result["version"] if result["version"] else "")

    import_button.click(do_import, inputs=[upload, upload_folder, import_name, import_license, import_arch], outputs=message,
                        **private).then(
        refresh_all, inputs=[search, only], outputs=all_outputs, **private)

    def add_file(file: Optional[str], request: gr.Request) -> str:
        result = calls.add_catalogue(file, request)
        return "Added %s: %d entries, %d skipped" % (result["file"], result["entries"], len(result["skipped"]))

    catalogue_file.upload(add_file, inputs=catalogue_file, outputs=message, **private).then(
        refresh_all, inputs=[search, only], outputs=all_outputs, **private)

    def fetch(url: str, request: gr.Request) -> str:
        result = calls.refresh_catalogue(url, request)
        return "Fetched %s: %d entries, %d skipped" % (result["file"], result["entries"], len(result["skipped"]))

    refresh_button.click(fetch, inputs=catalogue_url, outputs=message, **private).then(
        refresh_all, inputs=[search, only], outputs=all_outputs, **private)

    def tick() -> List[List[Any]]:
        return actions.downloads_table(station)

    gr.Timer(1.0).tick(tick, outputs=[progress_table], **private)
    gr.Timer(5.0).tick(lambda: (actions.installed_table(station), actions.disk_usage_text(station)),  # a disk walk: less often
                       outputs=[installed_table, usage], **private)
    demo.load(refresh_all, inputs=[search, only], outputs=all_outputs, **private)
