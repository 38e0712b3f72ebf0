"""The Gradio Blocks UI: the named API endpoints (``app.ui_api``) and one module per tab, assembled here."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from app.actions import Workstation
from app.public_errors import set_private_roots
from app.ui_api import Endpoints, register_endpoints
from app.ui_covers import build_covers_tab
from app.ui_generate import build_generate_tab, ensure_browser_id
from app.ui_jobs import build_batch_tab, build_history_tab
from app.ui_models import build_models_tab
from app.ui_runtimes import build_runtimes_tab


def build_ui(station: Workstation) -> gr.Blocks:
    settings = station.settings
    set_private_roots([settings.data_dir, settings.project_root, settings.temp_dir, Path.home(), Path(tempfile.gettempdir())])
    catalogue = {entry["id"]: entry for entry in station.architectures()}
    default_arch = settings.default_architecture if settings.default_architecture in catalogue else next(iter(catalogue))
    arch_choices = [(entry["name"], arch) for arch, entry in catalogue.items() if "separate" not in entry["capabilities"]]
    calls = Endpoints.of(station)

    # Gradio's own copies of uploads and results: hourly, those older than our outputs' retention go
    with gr.Blocks(title="Voice workstation", delete_cache=(3600, int(settings.outputs_max_age_h * 3600))) as demo:
        gr.Markdown("# Voice workstation\nPick an architecture and a character, type text or give a recording, press Generate.")
        if settings.announcement.strip():  # the operator's word to everyone on a shared server (maintenance, rules)
            gr.Markdown(settings.announcement, elem_id="announcement", sanitize_html=True)
        browser = gr.BrowserState("", storage_key="voicegen-browser")  # this browser's history id, kept across visits
        register_endpoints(calls)  # first: the tabs' private events would take the names
        generate = build_generate_tab(station, calls.generation, demo, browser, catalogue, default_arch, calls.voices)
        build_covers_tab(station, calls.voices, catalogue, browser)
        build_history_tab(station, browser, arch_choices)
        build_batch_tab(station, browser, arch_choices, default_arch)
        runtime_message = build_runtimes_tab(station, calls.runtimes, demo, catalogue, default_arch)
        build_models_tab(station, calls.models, demo)
        demo.load(ensure_browser_id, inputs=browser, outputs=browser, api_visibility="private")
        generate.cancel_button.click(calls.generation.cancel, outputs=runtime_message, cancels=generate.runs, api_visibility="private")

    blocks: gr.Blocks = demo
    return blocks
