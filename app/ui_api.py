"""The named API endpoints: one table (``endpoint_table``), registered by one function (``register_endpoints``).

An endpoint's parameters are its function's own (names, order, defaults; those Gradio fills in itself,
``gr.Request`` and ``gr.Progress``, aside): each parameter name has one hidden component (``PARAMETERS``),
so gradio_client sees the same parameters whatever the UI's layout. They are pinned by
tests/app/api_signatures.json. The functions live beside their areas (``app.ui_api_*``); the tabs' buttons call
the same ones as private events."""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Dict, List, NamedTuple, Tuple

import gradio as gr

from app.actions import Workstation
from app.tracing import traced_endpoint
from app.ui_api_generation import GenerationEndpoints
from app.ui_api_jobs import JobEndpoints
from app.ui_api_models import ModelEndpoints
from app.ui_api_runtimes import RuntimeEndpoints
from app.ui_api_voices import VoiceEndpoints

Factory = Callable[[], gr.components.Component]

# One hidden input per parameter name; a value here is the parameter's default for gradio_client.
PARAMETERS: Dict[str, Factory] = {
    "architecture": lambda: gr.Textbox(label="architecture"),
    "character": lambda: gr.Textbox(label="character"),
    "text": lambda: gr.Textbox(label="text"),
    "audio": lambda: gr.Audio(type="filepath", label="audio"),
    "options": lambda: gr.JSON(label="options"),
    "output_format": lambda: gr.Textbox(label="output_format", value="wav"),
    "preprocess": lambda: gr.JSON(label="preprocess"),
    "postprocess": lambda: gr.JSON(label="postprocess"),
    "use_cache": lambda: gr.Checkbox(label="use_cache", value=True),
    "speak_with": lambda: gr.JSON(label="speak_with"),
    "name": lambda: gr.Textbox(label="name"),
    "pinned": lambda: gr.Checkbox(label="pinned", value=True),
    "keep_alive_s": lambda: gr.Number(label="keep_alive_s"),
    "job_id": lambda: gr.Textbox(label="job_id"),
    "changes": lambda: gr.JSON(label="changes"),
    "query": lambda: gr.Textbox(label="query"),
    "state": lambda: gr.Textbox(label="state"),
    "limit": lambda: gr.Number(label="limit", value=50, precision=0),
    "offset": lambda: gr.Number(label="offset", value=0, precision=0),
    "lines": lambda: gr.Textbox(label="lines"),
    "files": lambda: gr.File(label="files", file_count="multiple", type="filepath"),
    "kind": lambda: gr.Textbox(label="kind", value="character"),
    "entry_id": lambda: gr.Textbox(label="id"),
    "item_id": lambda: gr.Textbox(label="id"),
    "file": lambda: gr.File(label="file"),
    "path": lambda: gr.Textbox(label="path"),
    "license_name": lambda: gr.Textbox(label="license"),
    "url": lambda: gr.Textbox(label="url"),
    "owner": lambda: gr.Textbox(label="owner"),
    "key_id": lambda: gr.Textbox(label="key_id"),
    "transcript": lambda: gr.Textbox(label="transcript"),
    "voice_id": lambda: gr.Textbox(label="voice_id"),
    "cover": lambda: gr.JSON(label="cover"),
}

RESULTS: Dict[str, Factory] = {
    "result": lambda: gr.JSON(label="result"),
    "message": lambda: gr.Textbox(label="message"),
    "audio": lambda: gr.Audio(type="filepath", label="audio"),
    "file": lambda: gr.File(label="file"),
    "generated": lambda: gr.Audio(type="filepath", label="result"),
    "info": lambda: gr.JSON(label="info"),
    "preview": lambda: gr.Audio(type="filepath", label="preview"),
    "presets": lambda: gr.JSON(label="presets"),
    "defaults": lambda: gr.JSON(label="defaults"),
    "architectures": lambda: gr.JSON(label="architectures"),
    "characters": lambda: gr.JSON(label="characters"),
    "workers": lambda: gr.JSON(label="workers"),
    "assets": lambda: gr.JSON(label="assets"),
    "files": lambda: gr.Files(label="files"),
}


class Endpoints(NamedTuple):
    """The functions behind the endpoints, by area; built once, shared by the tabs and the table."""

    generation: GenerationEndpoints
    jobs: JobEndpoints
    runtimes: RuntimeEndpoints
    models: ModelEndpoints
    voices: VoiceEndpoints

    @classmethod
    def of(cls, station: Workstation) -> Endpoints:
        return cls(GenerationEndpoints(station), JobEndpoints(station), RuntimeEndpoints(station), ModelEndpoints(station),
                   VoiceEndpoints(station))


class Endpoint(NamedTuple):
    name: str
    fn: Callable[..., Any]
    results: Tuple[str, ...]
    """Keys of ``RESULTS``, one per value the function returns."""
    queued_by_jobs: bool = False
    """No Gradio concurrency limit: the job service queues (per architecture, fair between clients)."""


def endpoint_table(calls: Endpoints) -> List[Endpoint]:
    generation, jobs, runtimes, models, voices = calls
    return [
        # generation, listings, presets and defaults
        Endpoint("generate", generation.generate, ("generated", "info"), queued_by_jobs=True),
        Endpoint("generate_stream", generation.generate_stream, ("generated", "info"), queued_by_jobs=True),
        Endpoint("cancel", generation.cancel, ("message",)),
        Endpoint("list_architectures", generation.list_architectures, ("architectures",)),
        Endpoint("list_characters", generation.list_characters, ("characters",)),
        Endpoint("preview_preprocess", generation.preview_preprocess, ("preview",)),
        Endpoint("list_presets", generation.list_presets, ("presets",)),
        Endpoint("save_preset", generation.save_preset, ("message",)),
        Endpoint("load_preset", generation.load_preset, ("presets",)),
        Endpoint("character_defaults", generation.character_defaults, ("defaults",)),
        Endpoint("save_character_defaults", generation.save_character_defaults, ("message",)),
        # zero-shot voices and song covers
        Endpoint("save_voice", voices.save_voice, ("result",)),
        Endpoint("voices", voices.voices, ("result",)),
        Endpoint("delete_voice", voices.delete_voice, ("message",)),
        Endpoint("cover", voices.cover, ("generated", "files", "info"), queued_by_jobs=True),
        # jobs and history
        Endpoint("submit", jobs.submit, ("result",), queued_by_jobs=True),
        Endpoint("job", jobs.job, ("result",), queued_by_jobs=True),
        Endpoint("cancel_job", jobs.cancel_job, ("message",), queued_by_jobs=True),
        Endpoint("retry_job", jobs.retry_job, ("result",), queued_by_jobs=True),
        Endpoint("regenerate", jobs.regenerate, ("result",), queued_by_jobs=True),
        Endpoint("history", jobs.history, ("result",), queued_by_jobs=True),
        Endpoint("history_item", jobs.history_item, ("audio", "result"), queued_by_jobs=True),
        Endpoint("delete_history_item", jobs.delete_history_item, ("message",), queued_by_jobs=True),
        Endpoint("export", jobs.export, ("file",), queued_by_jobs=True),
        Endpoint("batch", jobs.batch, ("file", "result"), queued_by_jobs=True),
        # runtimes
        Endpoint("runtime_status", runtimes.runtime_status, ("workers",)),
        Endpoint("list_assets", runtimes.list_assets, ("assets",)),
        Endpoint("set_keep_alive", runtimes.set_keep_alive, ("message",)),
        Endpoint("stop_worker", runtimes.stop_worker, ("message",)),
        Endpoint("prewarm", runtimes.prewarm, ("message",)),
        Endpoint("pin", runtimes.pin, ("message",)),
        Endpoint("unload", runtimes.unload, ("message",)),
        Endpoint("api_keys", runtimes.api_keys, ("result",)),
        Endpoint("create_api_key", runtimes.create_api_key, ("result",)),
        Endpoint("revoke_api_key", runtimes.revoke_api_key, ("message",)),
        # models
        Endpoint("catalogue", models.catalogue, ("result",)),
        Endpoint("download_model", models.download_model, ("result",)),
        Endpoint("downloads", models.downloads, ("result",)),
        Endpoint("cancel_download", models.cancel_download, ("message",)),
        Endpoint("installed_models", models.installed_models, ("result",)),
        Endpoint("disk_usage", models.disk_usage, ("result",)),
        Endpoint("delete_model", models.delete_model, ("result",)),
        Endpoint("import_model", models.import_model, ("result",)),
        Endpoint("add_catalogue", models.add_catalogue, ("result",)),
        Endpoint("refresh_catalogue", models.refresh_catalogue, ("result",)),
    ]


def api_parameters(fn: Callable[..., Any]) -> List[str]:
    """The parameters a caller gives: all but those Gradio fills in (``gr.Request``, ``gr.Progress``)."""
    hints = typing.get_type_hints(fn)

    def filled_in(name: str) -> bool:
        hint = hints.get(name)
        return any(kind in (hint, *typing.get_args(hint)) for kind in (gr.Request, gr.Progress))

    return [name for name in inspect.signature(fn).parameters if not filled_in(name)]


def register_endpoints(calls: Endpoints) -> None:
    """Call inside the app's ``gr.Blocks`` before any other event: a private event takes its function's name, and
    a named endpoint registered after it would get another (``unload_1``). The hidden group goes before the tabs
    (one between two tabs would split them into two tab bars)."""
    made: Dict[Tuple[str, str], gr.components.Component] = {}

    def component(kind: str, key: str) -> gr.components.Component:
        if (kind, key) not in made:
            made[kind, key] = (PARAMETERS if kind == "in" else RESULTS)[key]()
        return made[kind, key]

    with gr.Group(visible=False):
        for endpoint in endpoint_table(calls):
            inputs = [component("in", name) for name in api_parameters(endpoint.fn)]
            outputs = [component("out", key) for key in endpoint.results]
            limit: Dict[str, Any] = {"concurrency_limit": None} if endpoint.queued_by_jobs else {}
            fn = traced_endpoint(endpoint.name, endpoint.fn, lambda: calls.generation.station.settings.telemetry)
            gr.Button().click(fn, inputs=inputs, outputs=outputs, api_name=endpoint.name, **limit)
