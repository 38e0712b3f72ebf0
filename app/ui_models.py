"""The Models tab (catalogue, downloads, installed models and disk use, import) and its API endpoints.
Thin wiring over ``app.model_actions``."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

import gradio as gr

from app import model_actions as actions
from app.actions import Workstation
from app.ui_errors import as_operator, shown_to_person

T = TypeVar("T")


def build_models_tab(station: Workstation, demo: gr.Blocks) -> None:
    """Call inside the app's ``gr.Blocks``: adds the tab and the endpoints. Downloads, deletions, imports and
    catalogue changes fill or empty the server's disk: on a shared server they are the operator's."""

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

    # API endpoints (stable names for gradio_client) on hidden components, after the tab: a hidden block between
    # two tabs would split them into two tab bars
    with gr.Group(visible=False):
        query_in = gr.Textbox(label="query")
        architecture_in = gr.Textbox(label="architecture")
        kind_in = gr.Textbox(label="kind", value="character")
        id_in = gr.Textbox(label="id")
        file_in = gr.File(label="file")
        path_in = gr.Textbox(label="path")
        name_in = gr.Textbox(label="name")
        license_in = gr.Textbox(label="license")
        url_in = gr.Textbox(label="url")
        json_out = gr.JSON(label="result")
        text_out = gr.Textbox(label="message")
        buttons = [gr.Button() for _ in range(10)]

    def api_catalogue(query: str, architecture: str, kind: str) -> List[Dict[str, Any]]:
        """Search the catalogue (query words in name or creator; architecture and kind filters, "" = all)."""
        return shown_to_person(lambda: actions.catalogue(station, query, architecture, kind))

    def api_download(entry_id: str, request: gr.Request) -> Dict[str, Any]:
        """Start downloading a catalogue entry (id or unique name) and what it depends on; returns its progress."""
        return as_operator(station.access, request, lambda: actions.download(station, entry_id))

    def api_downloads() -> List[Dict[str, Any]]:
        """Every download of this app run: state, bytes, speed, time left, per file."""
        return actions.downloads(station)

    def api_cancel(entry_id: str, request: gr.Request) -> str:
        """Cancel a download; nothing of it stays."""
        return as_operator(station.access, request, lambda: actions.cancel_download(station, entry_id))

    def api_installed() -> List[Dict[str, Any]]:
        """Installed characters, shared models and assets with their size, license and source."""
        return actions.installed(station)

    def api_disk_usage() -> Dict[str, Any]:
        """Disk used by models, in total and per architecture (MB)."""
        return actions.disk_usage(station)

    def api_delete(item_id: str, request: gr.Request) -> Dict[str, Any]:
        """Delete an installed model by id (see /installed_models); returns the space freed."""
        return as_operator(station.access, request, lambda: actions.delete(station, item_id))

    def api_import(file: Optional[str], path: str, name: str, license_name: str, architecture: str,
                   request: gr.Request) -> Dict[str, str]:
        """Import a zip (file) or a folder or zip on the server (path) as a character named ``name``."""
        return as_operator(station.access, request,
                           lambda: actions.import_model(station, file or path or None, name, license_name, architecture or None))

    def api_add_catalogue(file: Optional[str], request: gr.Request) -> Dict[str, Any]:
        """Add a catalogue file (ours, or the established app's <architecture>.character_models.json as it is)."""
        return as_operator(station.access, request, lambda: actions.add_catalogue(station, file))

    def api_refresh(url: str, request: gr.Request) -> Dict[str, Any]:
        """Fetch a catalogue from a URL and keep it in the data folder."""
        return as_operator(station.access, request, lambda: actions.refresh_catalogue(station, url))

    endpoints: List[Tuple[Callable[..., Any], List[Any], Any, str]] = [
        (api_catalogue, [query_in, architecture_in, kind_in], json_out, "catalogue"),
        (api_download, [id_in], json_out, "download_model"),
        (api_downloads, [], json_out, "downloads"),
        (api_cancel, [id_in], text_out, "cancel_download"),
        (api_installed, [], json_out, "installed_models"),
        (api_disk_usage, [], json_out, "disk_usage"),
        (api_delete, [id_in], json_out, "delete_model"),
        (api_import, [file_in, path_in, name_in, license_in, architecture_in], json_out, "import_model"),
        (api_add_catalogue, [file_in], json_out, "add_catalogue"),
        (api_refresh, [url_in], json_out, "refresh_catalogue"),
    ]
    for button, (function, inputs, output, name) in zip(buttons, endpoints, strict=True):
        button.click(function, inputs=inputs, outputs=output, api_name=name)

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
        summary = as_operator(station.access, request, lambda: actions.download(station, entry_id))
        return "Downloading **%s** (%s)" % (summary["id"], summary["state"])

    download_button.click(start, inputs=chosen, outputs=message, **private)
    cancel_button.click(api_cancel, inputs=chosen, outputs=message, **private)

    def remove(item_id: str, request: gr.Request) -> str:
        result = as_operator(station.access, request, lambda: actions.delete(station, item_id))
        return "Deleted **%s**: %.1f MB freed" % (result["deleted"], result["freed_mb"])

    delete_button.click(remove, inputs=delete_id, outputs=message, **private).then(
        refresh_all, inputs=[search, only], outputs=all_outputs, **private)

    def do_import(file: Optional[str], folder: Optional[List[str]], name: str, license_name: str, architecture: str,
                  request: gr.Request) -> str:
        if file:
            result = as_operator(station.access, request, lambda: actions.import_model(station, file, name, license_name,
                                                                                       architecture or None))
        else:
            result = as_operator(station.access, request, lambda: actions.import_folder_files(station, folder or [], name,
                                                                                              license_name, architecture or None))
        return "Imported **%s** (%s%s): choose it on the Generate tab" % (
            result["name"], result["architecture"], " v" + result["version"] if result["version"] else "")

    import_button.click(do_import, inputs=[upload, upload_folder, import_name, import_license, import_arch], outputs=message,
                        **private).then(
        refresh_all, inputs=[search, only], outputs=all_outputs, **private)

    def add_file(file: Optional[str], request: gr.Request) -> str:
        result = as_operator(station.access, request, lambda: actions.add_catalogue(station, file))
        return "Added %s: %d entries, %d skipped" % (result["file"], result["entries"], len(result["skipped"]))

    catalogue_file.upload(add_file, inputs=catalogue_file, outputs=message, **private).then(
        refresh_all, inputs=[search, only], outputs=all_outputs, **private)

    def fetch(url: str, request: gr.Request) -> str:
        result = as_operator(station.access, request, lambda: actions.refresh_catalogue(station, url))
        return "Fetched %s: %d entries, %d skipped" % (result["file"], result["entries"], len(result["skipped"]))

    refresh_button.click(fetch, inputs=catalogue_url, outputs=message, **private).then(
        refresh_all, inputs=[search, only], outputs=all_outputs, **private)

    def tick() -> List[List[Any]]:
        return actions.downloads_table(station)

    gr.Timer(1.0).tick(tick, outputs=[progress_table], **private)
    gr.Timer(5.0).tick(lambda: (actions.installed_table(station), actions.disk_usage_text(station)),  # a disk walk: less often
                       outputs=[installed_table, usage], **private)
    demo.load(refresh_all, inputs=[search, only], outputs=all_outputs, **private)
