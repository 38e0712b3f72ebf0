"""The Runtimes tab: workers, the job queue, memory over time and shared assets for everyone; stop, prewarm,
pin, unload and keep-alive for the operator (hidden for others on a shared server). Thin wiring over
``app.ui_api_runtimes``."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

import gradio as gr

from app.actions import Workstation
from app.ui_api_runtimes import RuntimeEndpoints
from app.ui_caller import username_of
from app.ui_generate import character_choices, first_usable

RUNTIME_HEADERS = ["name", "architecture", "kind", "character", "state", "activity", "jobs_in_line", "device", "memory_mb", "idle_s",
                   "keep_alive_left_s", "pinned", "spawn_s", "last_error"]
ASSET_HEADERS = ["architecture", "asset", "what", "present", "size_mb", "needed_for", "get_it_from"]
QUEUE_HEADERS = ["architecture", "running", "queued", "owners_waiting"]
HOST_HEADERS = ["host", "queues", "slots", "running", "warm models"]
KEY_HEADERS = ["id", "owner", "created_at", "revoked_at"]
PRIVATE: Dict[str, Any] = {"api_visibility": "private"}


def build_runtimes_tab(station: Workstation, calls: RuntimeEndpoints, demo: gr.Blocks, catalogue: Mapping[str, Dict[str, Any]],
                       default_arch: str) -> gr.Markdown:
    """Adds the tab; returns its message line (the Generate tab's Cancel reports there too)."""
    settings = station.settings
    with gr.Tab("Runtimes"):
        gr.Markdown(station.memory_note())
        workers_table = gr.Dataframe(headers=RUNTIME_HEADERS, label="Workers", interactive=False)
        queue_table = gr.Dataframe(headers=QUEUE_HEADERS, label="Job queue (all sessions; at most %d at once, %d per architecture)"
                                   % (settings.max_concurrent_jobs, settings.max_jobs_per_architecture), interactive=False)
        # beyond one host: the worker hosts whose heartbeat the front hears (none listed on a single host)
        hosts_table = gr.Dataframe(headers=HOST_HEADERS, label="Worker hosts (jobs run there; the workers above are this "
                                   "machine's)", interactive=False, visible=bool(settings.broker_url))
        with gr.Column() as runtime_controls:  # the operator's; hidden for others on a shared server
            with gr.Row():
                worker_name = gr.Dropdown(choices=[], label="Worker", allow_custom_value=True)
                stop_button = gr.Button("Stop worker", variant="stop")
            with gr.Row():
                runtime_arch = gr.Dropdown(choices=[(catalogue[a]["name"], a) for a in catalogue], value=default_arch, label="Architecture")
                runtime_char = gr.Dropdown(choices=character_choices(station, default_arch), value=first_usable(station, default_arch),
                                           label="Character")
                prewarm_button = gr.Button("Prewarm / Retry")
                pin_button = gr.Button("Pin (never unload)")
                unpin_button = gr.Button("Unpin")
                unload_button = gr.Button("Unload character")
            with gr.Row():
                keep_alive_value = gr.Number(
                    value=settings.keep_alive_s, label="Keep-alive for this character (s; -1 = forever, 0 = unload after each job)"
                )
                keep_alive_button = gr.Button("Set keep-alive")
            runtime_message = gr.Markdown()
            status_table = gr.JSON(label="Details and log tails")
            with gr.Accordion("API keys for programs (HTTP routes: 'Authorization: Bearer <key>')", open=False):
                with gr.Row():
                    key_owner = gr.Textbox(label="Owner (whose history and quotas the key's jobs join)")
                    create_key_button = gr.Button("Create key")
                new_key = gr.JSON(label="New key: shown this once; keep it now (only its hash is stored)")
                keys_table = gr.Dataframe(headers=KEY_HEADERS, label="Keys", interactive=False)
                with gr.Row():
                    revoke_id = gr.Textbox(label="Key id to revoke")
                    revoke_key_button = gr.Button("Revoke key", variant="stop")
        memory_plot = gr.LinePlot(x="time", y="memory_mb", color="worker", title="Memory per worker (MB), last 30 minutes", height=220)
        with gr.Accordion("Shared pretrained assets (data folder's assets/)", open=False):
            assets_table = gr.Dataframe(headers=ASSET_HEADERS, label="Assets", interactive=False)
        refresh_button = gr.Button("Refresh")
        runtime_timer = gr.Timer(2.0)

    def refresh_runtimes(request: gr.Request) -> Tuple[Any, Any, Any, Any, Any]:
        rows = station.runtime_status(username_of(request))
        table = [[row.get(h) for h in RUNTIME_HEADERS] for row in rows]
        names = [row["name"] for row in rows if row.get("name")]
        queue = [[row[h] for h in QUEUE_HEADERS] for row in station.jobs.queue_summary()]
        hosts = [[row[h] for h in HOST_HEADERS] for row in station.jobs.hosts()]
        return table, gr.update(choices=names), rows, queue, hosts

    def memory_frame() -> Any:
        import pandas  # gradio's own dependency: its plots take data frames

        rows = station.memory_history()
        return pandas.DataFrame(rows, columns=["time", "worker", "memory_mb"])

    def refresh_assets() -> List[List[Any]]:
        return [[row[h] for h in ASSET_HEADERS] for row in station.assets()]

    def controls_for(request: gr.Request) -> Any:
        return gr.update(visible=station.access.is_admin(username_of(request)))

    def on_runtime_architecture(arch: str) -> Any:
        return gr.update(choices=character_choices(station, arch), value=first_usable(station, arch))

    refresh_outputs = [workers_table, worker_name, status_table, queue_table, hosts_table]
    runtime_timer.tick(refresh_runtimes, outputs=refresh_outputs, **PRIVATE)
    runtime_timer.tick(memory_frame, outputs=memory_plot, **PRIVATE)
    demo.load(memory_frame, outputs=memory_plot, **PRIVATE)
    refresh_button.click(refresh_runtimes, outputs=refresh_outputs, **PRIVATE)
    refresh_button.click(refresh_assets, outputs=assets_table, **PRIVATE)
    demo.load(refresh_runtimes, outputs=refresh_outputs, **PRIVATE)
    demo.load(refresh_assets, outputs=assets_table, **PRIVATE)
    demo.load(controls_for, outputs=runtime_controls, **PRIVATE)
    runtime_arch.change(on_runtime_architecture, inputs=runtime_arch, outputs=runtime_char, **PRIVATE)

    def list_keys(request: gr.Request) -> List[List[Any]]:
        if not station.access.is_admin(username_of(request)):
            return []
        return [[row[h] for h in KEY_HEADERS] for row in calls.api_keys(request)]

    demo.load(list_keys, outputs=keys_table, **PRIVATE)
    create_key_button.click(calls.create_api_key, inputs=key_owner, outputs=new_key, **PRIVATE).then(
        list_keys, outputs=keys_table, **PRIVATE)
    revoke_key_button.click(calls.revoke_api_key, inputs=revoke_id, outputs=runtime_message, **PRIVATE).then(
        list_keys, outputs=keys_table, **PRIVATE)

    one_character = [runtime_arch, runtime_char]
    for button, action, inputs in (
        (unload_button, calls.unload, one_character),
        (stop_button, calls.stop_worker, [worker_name]),
        (prewarm_button, calls.prewarm, one_character),
        (pin_button, calls.pin_on, one_character),
        (keep_alive_button, calls.set_keep_alive, [*one_character, keep_alive_value]),
        (unpin_button, calls.pin_off, one_character),
    ):
        button.click(action, inputs=inputs, outputs=runtime_message, **PRIVATE).then(refresh_runtimes, outputs=refresh_outputs, **PRIVATE)
    return runtime_message
