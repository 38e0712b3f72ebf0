"""The Gradio Blocks UI and the named API endpoints. Thin wiring over ``app.actions``."""

from __future__ import annotations

import logging
import tempfile
import uuid
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, TypeVar

import gradio as gr

from app.actions import Generation, Workstation, output_formats
from app.public_errors import set_private_roots
from app.spectrogram import spectrogram_image
from app.ui_errors import as_operator, shown_to_person
from app.ui_jobs import build_batch_tab, build_history_tab, register_job_endpoints, request_inputs, request_owner
from app.ui_models import build_models_tab
from app.ui_processing import build_processing_controls, parse_json_object

logger = logging.getLogger(__name__)

T = TypeVar("T")
RUNTIME_HEADERS = ["name", "architecture", "character", "state", "activity", "jobs_in_line", "device", "memory_mb", "idle_s",
                   "keep_alive_left_s", "pinned", "last_error"]
ASSET_HEADERS = ["architecture", "asset", "what", "present", "size_mb", "needed_for", "get_it_from"]
QUEUE_HEADERS = ["architecture", "running", "queued", "owners_waiting"]
HISTORY_HEADERS = ["time", "architecture", "character", "text", "duration (s)", "file"]


def _slider_or_input(option: Dict[str, Any]) -> gr.components.Component:
    """The input that fits an option of a manifest (see ``Workstation.architectures``)."""
    kind, label, default, info = option["kind"], option["label"], option["default"], option["help"] or None
    if kind in ("float", "int") and option["minimum"] is not None and option["maximum"] is not None:
        step = option["step"] or (1 if kind == "int" else 0.01)
        return gr.Slider(minimum=option["minimum"], maximum=option["maximum"], value=default, step=step, label=label, info=info)
    if kind == "bool":
        return gr.Checkbox(value=bool(default), label=label, info=info)
    if kind == "choice":
        return gr.Dropdown(choices=list(option["choices"]), value=default, label=label, info=info)
    return gr.Textbox(value=str(default), label=label, info=info)


def available_option(option: Dict[str, Any], value: Any, gaps: Mapping[str, str]) -> Any:
    """The update that shows an option as usable, disabled with why, or with its usable choices only."""
    name, help_text = option["name"], option["help"] or ""
    if name in gaps:
        return gr.update(interactive=False, info="Unavailable: %s" % gaps[name])
    if option["kind"] != "choice":
        return gr.update(interactive=True, info=help_text or None)
    missing = {choice: gaps["%s=%s" % (name, choice)] for choice in option["choices"] if "%s=%s" % (name, choice) in gaps}
    choices = [choice for choice in option["choices"] if choice not in missing]
    if not choices:
        return gr.update(interactive=False, info="Unavailable: %s" % "; ".join("%s: %s" % item for item in missing.items()))
    notes = [help_text] + ["%s unavailable: %s" % item for item in missing.items()]
    chosen = value if value in choices else option["default"] if option["default"] in choices else choices[0]
    return gr.update(interactive=True, choices=choices, value=chosen, info=" · ".join(n for n in notes if n) or None)


def _session(request: Optional[gr.Request]) -> str:
    """Jobs are cancelled per session: a browser tab, or one gradio_client Client."""
    return str(getattr(request, "session_hash", "") or "")


def build_ui(station: Workstation) -> gr.Blocks:
    settings = station.settings
    set_private_roots([settings.data_dir, settings.project_root, settings.temp_dir, Path.home(), Path(tempfile.gettempdir())])
    catalogue = {entry["id"]: entry for entry in station.architectures()}
    architectures = list(catalogue)
    default_arch = settings.default_architecture if settings.default_architecture in architectures else architectures[0]
    operator_note = " (operator only: shared by everyone)" if station.access.restricted else ""

    def character_choices(architecture: str) -> List[Tuple[str, str]]:
        return [(c.label, c.id) for c in station.characters(architecture)]

    def first_usable(architecture: str) -> Optional[str]:
        """The character a list opens on: never one that cannot be used (it stays listed, with why)."""
        characters = station.characters(architecture)
        usable = [c for c in characters if c.info.usable]
        return (usable or characters)[0].id if characters else None

    def ensure_browser_id(token: Optional[str]) -> str:
        return token if token and len(token) == 32 else uuid.uuid4().hex

    def run_generation(
        architecture: str,
        character: str,
        text: str,
        audio_path: Optional[str],
        options: Dict[str, Any],
        output_format: str,
        progress: gr.Progress,
        request: Optional[gr.Request],
        processing: Mapping[str, Optional[Dict[str, Any]]],
        use_cache: bool,
        speak_with: Optional[Dict[str, Any]] = None,
        browser_id: Optional[str] = None,
    ) -> Generation:
        owner, session, client = request_owner(request, browser_id)
        return shown_to_person(
            lambda: station.generate(
                architecture,
                character,
                text=text,
                audio_path=audio_path,
                options=options,
                output_format=output_format,
                progress=lambda fraction, message: progress(fraction, desc=message),
                session=session,
                owner=owner,
                preprocess=processing.get("preprocess"),
                postprocess=processing.get("postprocess"),
                use_cache=use_cache,
                speak_with=speak_with,
                client=client,
            )
        )

    # Gradio's own copies of uploads and results: hourly, those older than our outputs' retention go
    with gr.Blocks(title="Voice workstation", delete_cache=(3600, int(settings.outputs_max_age_h * 3600))) as demo:
        gr.Markdown("# Voice workstation\nPick an architecture and a character, type text or give a recording, press Generate.")
        browser = gr.BrowserState("", storage_key="voicegen-browser")  # this browser's history id, kept across visits
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=3):
                    architecture = gr.Dropdown(
                        choices=[(catalogue[a]["name"], a) for a in architectures],
                        value=default_arch,
                        label="Architecture",
                    )
                    first_characters = character_choices(default_arch)
                    character = gr.Dropdown(
                        choices=first_characters,
                        value=first_usable(default_arch),
                        label="Character",
                    )
                    takes_text = bool(catalogue[default_arch]["needs_text"])
                    converts = bool(catalogue[default_arch]["needs_audio"])
                    text = gr.Textbox(label="Text", lines=4, placeholder="Type what the voice should say", visible=takes_text)
                    audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Input audio (upload or record)",
                                        visible=converts)
                    speakers = [a for a in architectures if "tts" in catalogue[a]["capabilities"]]
                    with gr.Accordion("No recording? Type text to speak first", open=False, visible=converts) as speak_box:
                        speak_text = gr.Textbox(label="Text to speak first", lines=3,
                                                placeholder="spoken by a text-to-speech voice, then converted")
                        with gr.Row():
                            speak_arch = gr.Dropdown(
                                choices=[(catalogue[a]["name"], a) for a in speakers], value=speakers[0] if speakers else None,
                                label="No recording? Speak the text first with",
                            )
                            first_speakers = character_choices(speakers[0]) if speakers else []
                            speak_char = gr.Dropdown(choices=first_speakers, value=first_usable(speakers[0]) if speakers else None,
                                                     label="Voice that speaks it")
                    with gr.Row():  # right under the inputs: the one thing every visit does
                        generate_button = gr.Button("Generate", variant="primary", scale=2)
                        new_take_button = gr.Button("New take", scale=1)
                        cancel_button = gr.Button("Cancel", variant="stop", scale=1)
                    option_components: List[Tuple[str, str, gr.components.Component]] = []
                    option_specs: List[Dict[str, Any]] = []
                    option_groups: Dict[str, gr.Group] = {}
                    with gr.Accordion("Options", open=False):
                        for arch in architectures:
                            with gr.Group(visible=arch == default_arch) as group:
                                for option in catalogue[arch]["options"]:
                                    option_components.append((arch, option["name"], _slider_or_input(option)))
                                    option_specs.append(option)
                            option_groups[arch] = group
                        with gr.Row():
                            save_defaults_button = gr.Button("Save as this character's defaults" + operator_note, size="sm")
                            defaults_message = gr.Markdown()
                    processing = build_processing_controls(station.default_processing()["preprocess"],
                                                           station.default_processing()["postprocess"], show_pre=converts)
                    with processing.pre_box:
                        with gr.Row():
                            preview_button = gr.Button("Preview preprocessing")
                            preview_audio = gr.Audio(type="filepath", label="What the model will get", interactive=False)
                    with gr.Accordion("Output format, cache and presets", open=False):
                        output_format = gr.Dropdown(choices=output_formats(), value=settings.default_output_format,
                                                    label="Output format")
                        use_cache = gr.Checkbox(value=True, label="Reuse the result of an identical earlier request")
                        with gr.Row():
                            preset_choice = gr.Dropdown(choices=station.presets(), label="Preset", allow_custom_value=False)
                            preset_load = gr.Button("Load preset")
                            preset_name = gr.Textbox(label="Save current settings as", placeholder="preset name")
                            preset_save = gr.Button("Save preset" + operator_note)
                        preset_message = gr.Markdown()
                with gr.Column(scale=2):
                    audio_out = gr.Audio(type="filepath", label="Result", interactive=False, buttons=["download"])
                    spectrogram_out = gr.Image(label="Result: spectrogram", interactive=False, height=200)
                    spectrogram_in = gr.Image(label="Input: spectrogram", interactive=False, height=200, visible=converts)
                    info_out = gr.JSON(label="Details")
                    history_table = gr.Dataframe(headers=HISTORY_HEADERS, label="This session's outputs", interactive=False)
                    history_files = gr.Files(label="Downloads", interactive=False)
            history_state = gr.State([])

        arch_choices = [(catalogue[a]["name"], a) for a in architectures]
        build_history_tab(station, browser, arch_choices)
        build_batch_tab(station, browser, arch_choices, default_arch)

        with gr.Tab("Runtimes"):
            gr.Markdown(station.memory_note())
            workers_table = gr.Dataframe(headers=RUNTIME_HEADERS, label="Workers", interactive=False)
            queue_table = gr.Dataframe(headers=QUEUE_HEADERS, label="Job queue (all sessions; at most %d at once, %d per architecture)"
                                       % (settings.max_concurrent_jobs, settings.max_jobs_per_architecture), interactive=False)
            with gr.Column() as runtime_controls:  # the operator's; hidden for others on a shared server
                with gr.Row():
                    worker_name = gr.Dropdown(choices=[], label="Worker", allow_custom_value=True)
                    stop_button = gr.Button("Stop worker", variant="stop")
                with gr.Row():
                    runtime_arch = gr.Dropdown(
                        choices=[(catalogue[a]["name"], a) for a in architectures], value=default_arch, label="Architecture"
                    )
                    runtime_char = gr.Dropdown(
                        choices=first_characters, value=first_usable(default_arch), label="Character"
                    )
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
            memory_plot = gr.LinePlot(x="time", y="memory_mb", color="worker", title="Memory per worker (MB), last 30 minutes",
                                      height=220)
            with gr.Accordion("Shared pretrained assets (data folder's assets/)", open=False):
                assets_table = gr.Dataframe(headers=ASSET_HEADERS, label="Assets", interactive=False)
            refresh_button = gr.Button("Refresh")
            runtime_timer = gr.Timer(2.0)

        build_models_tab(station, demo)

        demo.load(ensure_browser_id, inputs=browser, outputs=browser, api_visibility="private")

        # API-only components: stable parameters for gradio_client, independent of the UI layout
        with gr.Group(visible=False):
            request_in = request_inputs()
            (api_architecture, api_character, api_text, api_audio, api_options, api_format, api_pre, api_post, api_use_cache,
             api_speak_with) = request_in
            api_preview_out = gr.Audio(type="filepath", label="preview")
            api_presets_out = gr.JSON(label="presets")
            api_preset_name = gr.Textbox(label="name")
            api_preview_button = gr.Button()
            api_presets_button = gr.Button()
            api_save_preset_button = gr.Button()
            api_load_preset_button = gr.Button()
            api_audio_out = gr.Audio(type="filepath", label="result")
            api_info_out = gr.JSON(label="info")
            api_button = gr.Button()
            api_list_button = gr.Button()
            api_arch_list = gr.JSON(label="architectures")
            api_char_button = gr.Button()
            api_char_list = gr.JSON(label="characters")
            api_status_button = gr.Button()
            api_status_out = gr.JSON(label="workers")
            api_assets_button = gr.Button()
            api_assets_out = gr.JSON(label="assets")
            api_name_in = gr.Textbox(label="name")
            api_flag_in = gr.Checkbox(label="pinned", value=True)
            api_message_out = gr.Textbox(label="message")
            api_stop_button = gr.Button()
            api_number_in = gr.Number(label="keep_alive_s")
            api_keep_alive_button = gr.Button()
            api_prewarm_button = gr.Button()
            api_pin_button = gr.Button()
            api_unload_button = gr.Button()
            api_defaults_button = gr.Button()
            api_save_defaults_button = gr.Button()
            api_defaults_out = gr.JSON(label="defaults")

        # wiring
        def on_architecture(arch: str) -> List[Any]:
            """Controls follow the architecture: the text box for text-to-speech, the recording (and its
            preprocessing, its spectrogram, the speak-first path) for conversion; its own options."""
            choices = character_choices(arch)
            converts = bool(catalogue[arch]["needs_audio"])
            updates: List[Any] = [gr.update(choices=choices, value=first_usable(arch))]
            updates += [gr.update(visible=name == arch) for name in architectures]
            updates += [gr.update(visible=bool(catalogue[arch]["needs_text"])), gr.update(visible=converts),
                        gr.update(visible=converts), gr.update(visible=converts), gr.update(visible=converts)]
            return updates

        architecture.change(
            on_architecture,
            inputs=architecture,
            outputs=[character] + [option_groups[a] for a in architectures]
            + [text, audio_in, speak_box, processing.pre_box, spectrogram_in],
            api_visibility="private",
        )

        def on_speak_architecture(arch: str) -> Any:
            choices = character_choices(arch)
            return gr.update(choices=choices, value=first_usable(arch))

        def on_character(arch: str, char: Optional[str], *values: Any) -> List[Any]:
            """Options follow the character: its saved defaults, and what it and the shared assets allow
            (unusable ones disabled with the reason, unusable choices out of the list and named in its help)."""
            gaps = shown_to_person(lambda: station.unavailable_options(arch, char)) if arch else {}
            saved = station.character_defaults(arch, char) if arch and char else {}
            updates = []
            for (owner, name, _), option, _current in zip(option_components, option_specs, values, strict=True):
                if owner != arch:
                    updates.append(gr.update())
                    continue
                update = available_option(option, saved.get(name, option["default"]), gaps)
                if "value" not in update:
                    update["value"] = saved.get(name, option["default"])
                updates.append(update)
            return updates

        option_inputs = [architecture, character] + [c for _, _, c in option_components]

        def save_defaults(request: gr.Request, arch: str, char: str, *values: Any) -> str:  # Gradio injects a request only before *values
            chosen = {name: value for (owner, name, _), value in zip(option_components, values, strict=True) if owner == arch}
            return as_operator(station.access, request, lambda: station.save_character_defaults(arch, char, chosen))

        save_defaults_button.click(save_defaults, inputs=option_inputs, outputs=defaults_message, api_visibility="private")
        character.change(on_character, inputs=option_inputs, outputs=[c for _, _, c in option_components], api_visibility="private")
        demo.load(on_character, inputs=option_inputs, outputs=[c for _, _, c in option_components], api_visibility="private")

        speak_arch.change(on_speak_architecture, inputs=speak_arch, outputs=speak_char, api_visibility="private")

        def on_generate(
            arch: str, char: str, typed: str, audio_path: Optional[str], fmt: str, cache_ok: bool, history: List[Dict[str, Any]],
            first_arch: Optional[str], first_char: Optional[str], first_text: str, browser_id: Optional[str],
            request: gr.Request,
            progress: gr.Progress = gr.Progress(),
            *values: Any,  # after the special arguments: gradio fills in only positional ones (a keyword-only one stays unset)
        ) -> Tuple[Any, ...]:
            # a Generate before the page's load event gave this browser its id: give it one now (its history is kept)
            browser_id = ensure_browser_id(browser_id)
            # text-to-speech takes the text box; a conversion its recording, or else the text to speak first
            converts = bool(catalogue[arch]["needs_audio"]) if arch in catalogue else False
            text_value = (first_text if not audio_path else "") if converts else typed
            option_values = values[: len(option_components)]
            options = {name: value for (owner, name, _), value in zip(option_components, option_values, strict=True) if owner == arch}
            chosen = processing.to_dicts(list(values[len(option_components):]))
            speak_with = {"architecture": first_arch, "character": first_char} if first_arch and first_char else None
            generation = run_generation(arch, char, text_value, audio_path, options, fmt, progress, request, chosen, cache_ok,
                                        speak_with, browser_id)
            row = [
                generation.path.stem.split("-")[0],
                arch,
                char,
                (text_value or "")[:60],
                round(generation.duration_s, 2),
                generation.path.name,
            ]
            # each entry keeps its own full path: a day's folder changes at midnight, and retention may remove old ones
            history = [{"row": row, "path": str(generation.path)}, *history][: settings.history_size]
            kept = [entry for entry in history if Path(entry["path"]).is_file()]
            return (str(generation.path), generation.info(), [e["row"] for e in kept], kept, [e["path"] for e in kept],
                    spectrogram_image(str(generation.path)), spectrogram_image(audio_path) if converts else None, browser_id)

        generate_inputs = ([architecture, character, text, audio_in, output_format, use_cache, history_state, speak_arch, speak_char,
                            speak_text, browser] + [c for _, _, c in option_components] + processing.components)
        generate_outputs = [audio_out, info_out, history_table, history_state, history_files, spectrogram_out, spectrogram_in, browser]
        generate_event = generate_button.click(on_generate, inputs=generate_inputs, outputs=generate_outputs, api_visibility="private",
                                               concurrency_limit=None)

        def on_new_take(arch: str, char: str, typed: str, audio_path: Optional[str], fmt: str, cache_ok: bool,
                        history: List[Dict[str, Any]], first_arch: Optional[str], first_char: Optional[str], first_text: str,
                        browser_id: Optional[str], request: gr.Request, progress: gr.Progress = gr.Progress(),
                        *values: Any) -> Tuple[Any, ...]:
            """The same request made afresh (no cache): another take of the same line."""
            return on_generate(arch, char, typed, audio_path, fmt, False, history, first_arch, first_char, first_text, browser_id,
                               request, progress, *values)

        new_take_event = new_take_button.click(on_new_take, inputs=generate_inputs, outputs=generate_outputs, concurrency_limit=None,
                                               api_visibility="private")
        def cancel_jobs(request: gr.Request) -> str:
            """Cancel this session's running jobs."""
            count = station.cancel(_session(request))
            return "cancelled %d job(s)" % count

        cancel_button.click(cancel_jobs, outputs=runtime_message, cancels=[generate_event, new_take_event], api_name="cancel")

        def api_generate(
            architecture: str,
            character: str,
            text: Optional[str] = None,
            audio: Optional[str] = None,
            options: Any = None,
            output_format: str = "wav",
            preprocess: Any = None,
            postprocess: Any = None,
            use_cache: bool = True,
            speak_with: Any = None,
            progress: gr.Progress = gr.Progress(),
            request: gr.Request = None,  # type: ignore[assignment]  # gradio fills it in
        ) -> Tuple[str, Dict[str, Any]]:
            """Generate speech (TTS) or convert audio with the chosen architecture and character; returns the audio and
            its details (job_id, timings, ...). Only architecture and character are required. For a conversion
            architecture, text without audio is spoken first by ``speak_with`` ({"architecture", "character",
            "options"}; default: the default TTS voice)."""
            parsed = shown_to_person(lambda: parse_json_object(options, "options")) or {}
            chosen = shown_to_person(lambda: {
                "preprocess": parse_json_object(preprocess, "preprocess"),
                "postprocess": parse_json_object(postprocess, "postprocess"),
            })
            first = shown_to_person(lambda: parse_json_object(speak_with, "speak_with"))
            generation = run_generation(
                architecture, character, text or "", audio, parsed, output_format or "wav", progress, request, chosen, bool(use_cache),
                first,
            )
            return str(generation.path), generation.info()

        api_button.click(
            api_generate,
            inputs=[api_architecture, api_character, api_text, api_audio, api_options, api_format, api_pre, api_post, api_use_cache,
                    api_speak_with],
            outputs=[api_audio_out, api_info_out],
            api_name="generate",
            concurrency_limit=None,  # the job service queues (per architecture, fair between sessions)
        )
        register_job_endpoints(station, request_in)  # /submit, /job, /history, /batch, ... over the same inputs

        def api_list_architectures() -> List[Dict[str, Any]]:
            """Architectures with their capabilities and option schema."""
            return station.architectures()

        api_list_button.click(api_list_architectures, outputs=api_arch_list, api_name="list_architectures")

        def api_list_characters(architecture: str) -> List[Dict[str, Any]]:
            """Characters available for an architecture."""
            characters = shown_to_person(lambda: station.characters(architecture))
            return [c.to_dict() for c in characters]

        api_char_button.click(api_list_characters, inputs=api_architecture, outputs=api_char_list, api_name="list_characters")

        def list_assets() -> List[Dict[str, Any]]:
            """Shared pretrained assets of every architecture: present or missing, size, where to get them."""
            return station.assets()

        api_assets_button.click(list_assets, outputs=api_assets_out, api_name="list_assets")

        def runtime_status(request: gr.Request) -> List[Dict[str, Any]]:
            """Live workers: state, pid, idle time, keep-alive left, last error, log tail (on a shared server, for
            anyone but the operator: which models are warm and how long their lines are)."""
            return station.runtime_status(getattr(request, "username", None))

        api_status_button.click(runtime_status, outputs=api_status_out, api_name="runtime_status")

        def refresh_runtimes(request: gr.Request) -> Tuple[Any, Any, Any, Any]:
            rows = station.runtime_status(getattr(request, "username", None))
            table = [[row.get(h) for h in RUNTIME_HEADERS] for row in rows]
            names = [row["name"] for row in rows if row.get("name")]
            queue = [[row[h] for h in QUEUE_HEADERS] for row in station.jobs.queue_summary()]
            return table, gr.update(choices=names), rows, queue

        refresh_outputs = [workers_table, worker_name, status_table, queue_table]
        runtime_timer.tick(refresh_runtimes, outputs=refresh_outputs, api_visibility="private")

        def memory_frame() -> Any:
            import pandas  # gradio's own dependency: its plots take data frames

            rows = station.memory_history()
            return pandas.DataFrame(rows, columns=["time", "worker", "memory_mb"])

        runtime_timer.tick(memory_frame, outputs=memory_plot, api_visibility="private")
        demo.load(memory_frame, outputs=memory_plot, api_visibility="private")
        refresh_button.click(refresh_runtimes, outputs=refresh_outputs, api_visibility="private")

        def refresh_assets() -> List[List[Any]]:
            return [[row[h] for h in ASSET_HEADERS] for row in station.assets()]

        refresh_button.click(refresh_assets, outputs=assets_table, api_visibility="private")
        demo.load(refresh_runtimes, outputs=refresh_outputs, api_visibility="private")
        demo.load(refresh_assets, outputs=assets_table, api_visibility="private")
        def controls_for(request: gr.Request) -> Any:
            return gr.update(visible=station.access.is_admin(getattr(request, "username", None)))

        demo.load(controls_for, outputs=runtime_controls, api_visibility="private")


        def set_keep_alive(architecture: str, character: str, keep_alive_s: float, request: gr.Request) -> str:
            """Idle seconds before a character is unloaded (-1 = forever, 0 = after each job). Operator only on a shared server."""
            return as_operator(station.access, request, lambda: station.set_keep_alive(architecture, character, keep_alive_s))

        def stop_worker(name: str, request: gr.Request) -> str:
            """Stop a worker by name (see /runtime_status). Operator only on a shared server."""
            return as_operator(station.access, request, lambda: station.stop_worker(name))

        def prewarm(architecture: str, character: str, request: gr.Request) -> str:
            """Load a character now (starting its architecture's worker if needed); also Retry after a failure. Operator only."""
            return as_operator(station.access, request, lambda: station.prewarm(architecture, character))

        def unload(architecture: str, character: str, request: gr.Request) -> str:
            """Unload one character from its worker (the worker keeps its other characters). Operator only."""
            return as_operator(station.access, request, lambda: station.unload(architecture, character))

        def pin(architecture: str, character: str, pinned: bool, request: gr.Request) -> str:
            """Pin (never unload) or unpin a character. Operator only on a shared server."""
            return as_operator(station.access, request, lambda: station.pin(architecture, character, pinned))

        def pin_on(architecture: str, character: str, request: gr.Request) -> str:
            return pin(architecture, character, True, request)

        def pin_off(architecture: str, character: str, request: gr.Request) -> str:
            return pin(architecture, character, False, request)

        # preprocessing preview and presets (UI and API)
        def preview(architecture: str, audio: Optional[str], preprocess: Any = None) -> str:
            """The input recording after preprocessing: what the model will get."""
            def run() -> str:
                return str(station.preview_preprocess(architecture, audio, parse_json_object(preprocess, "preprocess")))

            return shown_to_person(run)

        def list_presets() -> List[str]:
            """Names of saved processing presets."""
            return station.presets()

        def save_preset(name: str, preprocess: Any = None, postprocess: Any = None,
                        request: gr.Request = None) -> str:  # type: ignore[assignment]
            """Save pre/post-processing settings under a name (presets are shared: on a shared server, the operator's)."""
            def run() -> str:
                return station.save_preset(name, parse_json_object(preprocess, "preprocess"), parse_json_object(postprocess, "postprocess"))

            return as_operator(station.access, request, run)

        def load_preset(name: str) -> Dict[str, Any]:
            """A saved preset's settings: {"preprocess": {...}, "postprocess": {...}}."""
            return shown_to_person(lambda: station.load_preset(name))

        api_preview_button.click(preview, inputs=[api_architecture, api_audio, api_pre], outputs=api_preview_out,
                                 api_name="preview_preprocess")
        api_presets_button.click(list_presets, outputs=api_presets_out, api_name="list_presets")
        api_save_preset_button.click(save_preset, inputs=[api_preset_name, api_pre, api_post], outputs=api_message_out,
                                     api_name="save_preset")
        api_load_preset_button.click(load_preset, inputs=api_preset_name, outputs=api_presets_out, api_name="load_preset")

        def ui_preview(architecture_value: str, audio: Optional[str], *values: Any) -> str:
            return preview(architecture_value, audio, processing.to_dicts(list(values))["preprocess"])

        preview_button.click(ui_preview, inputs=[architecture, audio_in, *processing.components], outputs=preview_audio,
                             api_visibility="private")

        def ui_save_preset(request: gr.Request, name: str, *values: Any) -> Tuple[str, Any]:
            chosen = processing.to_dicts(list(values))
            message = save_preset(name, chosen["preprocess"], chosen["postprocess"], request)
            return message, gr.update(choices=station.presets(), value=name)

        preset_save.click(ui_save_preset, inputs=[preset_name, *processing.components], outputs=[preset_message, preset_choice],
                          api_visibility="private")

        def ui_load_preset(name: str) -> List[Any]:
            if not name:
                raise gr.Error("pick a preset to load", print_exception=False)
            loaded = load_preset(name)
            return processing.from_dicts(loaded["preprocess"], loaded["postprocess"])

        preset_load.click(ui_load_preset, inputs=preset_choice, outputs=processing.components, api_visibility="private")

        def on_runtime_architecture(arch: str) -> Any:
            choices = character_choices(arch)
            return gr.update(choices=choices, value=first_usable(arch))

        # the same actions as API endpoints (registered before the UI's private events, which would take the names)
        api_keep_alive_button.click(set_keep_alive, inputs=[api_architecture, api_character, api_number_in], outputs=api_message_out,
                                    api_name="set_keep_alive")
        api_stop_button.click(stop_worker, inputs=api_name_in, outputs=api_message_out, api_name="stop_worker")
        api_prewarm_button.click(prewarm, inputs=[api_architecture, api_character], outputs=api_message_out, api_name="prewarm")
        api_pin_button.click(pin, inputs=[api_architecture, api_character, api_flag_in], outputs=api_message_out, api_name="pin")
        api_unload_button.click(unload, inputs=[api_architecture, api_character], outputs=api_message_out, api_name="unload")

        def character_defaults(architecture: str, character: str) -> Dict[str, Any]:
            """A character's saved option defaults (only those that differ from the architecture's)."""
            def run() -> Dict[str, Any]:
                station.character(architecture, character)  # an unknown name is an error, not an empty answer
                return station.character_defaults(architecture, character)

            return shown_to_person(run)

        def save_character_defaults(architecture: str, character: str, options: Any, request: gr.Request) -> str:
            """Save options as a character's defaults: the UI opens on them and /generate fills them in (shared by everyone:
            on a shared server, the operator's)."""
            return as_operator(station.access, request, lambda: station.save_character_defaults(
                architecture, character, parse_json_object(options, "options")))

        api_defaults_button.click(character_defaults, inputs=[api_architecture, api_character], outputs=api_defaults_out,
                                  api_name="character_defaults")
        api_save_defaults_button.click(save_character_defaults, inputs=[api_architecture, api_character, api_options],
                                       outputs=api_message_out, api_name="save_character_defaults")
        unload_button.click(unload, inputs=[runtime_arch, runtime_char], outputs=runtime_message, api_visibility="private").then(
            refresh_runtimes, outputs=refresh_outputs, api_visibility="private"
        )
        runtime_arch.change(on_runtime_architecture, inputs=runtime_arch, outputs=runtime_char, api_visibility="private")
        stop_button.click(stop_worker, inputs=worker_name, outputs=runtime_message, api_visibility="private").then(
            refresh_runtimes, outputs=refresh_outputs, api_visibility="private"
        )
        prewarm_button.click(prewarm, inputs=[runtime_arch, runtime_char], outputs=runtime_message, api_visibility="private").then(
            refresh_runtimes, outputs=refresh_outputs, api_visibility="private"
        )
        pin_button.click(pin_on, inputs=[runtime_arch, runtime_char], outputs=runtime_message,
                         api_visibility="private").then(refresh_runtimes, outputs=refresh_outputs, api_visibility="private")
        keep_alive_button.click(set_keep_alive, inputs=[runtime_arch, runtime_char, keep_alive_value], outputs=runtime_message,
                                api_visibility="private").then(refresh_runtimes, outputs=refresh_outputs, api_visibility="private")
        unpin_button.click(pin_off, inputs=[runtime_arch, runtime_char], outputs=runtime_message,
                           api_visibility="private").then(refresh_runtimes, outputs=refresh_outputs, api_visibility="private")

    blocks: gr.Blocks = demo
    return blocks
