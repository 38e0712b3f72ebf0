"""The Generate tab: architecture, character, text or a recording (or text spoken first), options, processing,
presets; the result with its spectrograms and this session's outputs. Thin wiring over ``app.ui_api_generation``."""

from __future__ import annotations

import html
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

import gradio as gr

from app.actions import Workstation, output_formats
from app.spectrogram import spectrogram_image
from app.tracing import traced_endpoint
from app.ui_api_generation import GenerationEndpoints
from app.ui_api_voices import VoiceEndpoints
from app.ui_errors import as_operator, shown_to_person
from app.ui_options import build_option_controls
from app.ui_processing import build_processing_controls
from app.ui_voices import VoicePanel, licence_text

HISTORY_HEADERS = ["time", "architecture", "character", "text", "duration (s)", "file"]
PRIVATE: Dict[str, Any] = {"api_visibility": "private"}


def character_choices(station: Workstation, architecture: str) -> List[Tuple[str, str]]:
    return [(c.label, c.id) for c in station.characters(architecture)]


def first_usable(station: Workstation, architecture: str) -> Optional[str]:
    """The character a list opens on: never one that cannot be used (it stays listed, with why)."""
    characters = station.characters(architecture)
    usable = [c for c in characters if c.info.usable]
    return (usable or characters)[0].id if characters else None


def takes_recording(entry: Mapping[str, Any]) -> bool:
    """The recording input is shown: a conversion's input, or a text-to-speech architecture's reference."""
    return bool(entry["needs_audio"] or entry.get("reference"))


def recording_label(entry: Mapping[str, Any]) -> str:
    """A conversion's input, or the reference's own label with whether it is needed and its length range."""
    reference = entry.get("reference")
    if not reference:
        return "Input audio (upload or record)"
    low, high = reference.get("min_s") or 0, reference.get("max_s") or 0
    length = "%g-%g s" % (low, high) if low and high else "at least %g s" % low if low else "up to %g s" % high if high else ""
    return "%s (%s%s)" % (reference["label"], "required" if reference["required"] else "optional", ", " + length if length else "")


def ensure_browser_id(token: Optional[str]) -> str:
    return token if token and len(token) == 32 else uuid.uuid4().hex


class GenerateTab(NamedTuple):
    cancel_button: gr.Button
    runs: List[Any]
    """The Generate and New take events, which Cancel stops."""


def live_player_html(job_id: str) -> str:
    """A player for a take being made: the browser plays the stream (mp3: every browser plays it as it arrives)."""
    return ('<audio controls autoplay preload="auto" src="live/%s?response_format=mp3" aria-label="Playing as it is spoken">'
            '</audio>' % html.escape(job_id))


def build_generate_tab(station: Workstation, calls: GenerationEndpoints, demo: gr.Blocks, browser: gr.BrowserState,
                       catalogue: Mapping[str, Dict[str, Any]], default_arch: str, voice_calls: VoiceEndpoints) -> GenerateTab:
    settings = station.settings
    architectures = [a for a in catalogue if "separate" not in catalogue[a]["capabilities"]]  # separators serve covers
    operator_note = " (operator only: shared by everyone)" if station.access.restricted else ""
    with gr.Tab("Generate"):
        with gr.Row():
            with gr.Column(scale=3):
                architecture = gr.Dropdown(choices=[(catalogue[a]["name"], a) for a in architectures], value=default_arch,
                                           label="Architecture")
                licence_note = gr.Markdown(licence_text(catalogue[default_arch]), elem_id="licence-note")
                character = gr.Dropdown(choices=character_choices(station, default_arch), value=first_usable(station, default_arch),
                                        label="Character")
                takes_text = bool(catalogue[default_arch]["needs_text"])
                converts = bool(catalogue[default_arch]["needs_audio"])
                text = gr.Textbox(label="Text", lines=4, placeholder="Type what the voice should say", visible=takes_text)
                audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label=recording_label(catalogue[default_arch]),
                                    visible=takes_recording(catalogue[default_arch]))
                voice_panel = VoicePanel(station, voice_calls, bool(catalogue[default_arch].get("zero_shot")))
                speakers = [a for a in architectures if "tts" in catalogue[a]["capabilities"]]
                with gr.Accordion("No recording? Type text to speak first", open=False, visible=converts) as speak_box:
                    speak_text = gr.Textbox(label="Text to speak first", lines=3,
                                            placeholder="spoken by a text-to-speech voice, then converted")
                    first_speaker = speakers[0] if speakers else None
                    with gr.Row():
                        speak_arch = gr.Dropdown(choices=[(catalogue[a]["name"], a) for a in speakers], value=first_speaker,
                                                 label="No recording? Speak the text first with")
                        speak_char = gr.Dropdown(choices=character_choices(station, first_speaker) if first_speaker else [],
                                                 value=first_usable(station, first_speaker) if first_speaker else None,
                                                 label="Voice that speaks it")
                with gr.Row():  # right under the inputs: the one thing every visit does
                    generate_button = gr.Button("Generate", variant="primary", scale=2)
                    new_take_button = gr.Button("New take", scale=1)
                    cancel_button = gr.Button("Cancel", variant="stop", scale=1)
                with gr.Accordion("Options", open=False):
                    options = build_option_controls(catalogue, default_arch)
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
                    output_format = gr.Dropdown(choices=output_formats(), value=settings.default_output_format, label="Output format")
                    use_cache = gr.Checkbox(value=True, label="Reuse the result of an identical earlier request")
                    with gr.Row():
                        preset_choice = gr.Dropdown(choices=station.presets(), label="Preset", allow_custom_value=False)
                        preset_load = gr.Button("Load preset")
                        preset_name = gr.Textbox(label="Save current settings as", placeholder="preset name")
                        preset_save = gr.Button("Save preset" + operator_note)
                    preset_message = gr.Markdown()
            with gr.Column(scale=2):
                live_player = gr.HTML(elem_id="live-player")
                audio_out = gr.Audio(type="filepath", label="Result", interactive=False, buttons=["download"])
                spectrogram_out = gr.Image(label="Result: spectrogram", interactive=False, height=200)
                spectrogram_in = gr.Image(label="Input: spectrogram", interactive=False, height=200, visible=converts)
                info_out = gr.JSON(label="Details")
                history_table = gr.Dataframe(headers=HISTORY_HEADERS, label="This session's outputs", interactive=False)
                history_files = gr.Files(label="Downloads", interactive=False)
        history_state = gr.State([])

    def on_architecture(arch: str) -> List[Any]:
        """Controls follow the architecture: the text box for text-to-speech (with the recording input, under its
        reference's label, for one that takes a reference), the recording (and its preprocessing, its spectrogram, the
        speak-first path) for conversion; its own options."""
        converts = bool(catalogue[arch]["needs_audio"])
        updates: List[Any] = [gr.update(choices=character_choices(station, arch), value=first_usable(station, arch))]
        updates += [gr.update(visible=name == arch) for name in architectures]
        updates += [gr.update(visible=bool(catalogue[arch]["needs_text"])),
                    gr.update(visible=takes_recording(catalogue[arch]), label=recording_label(catalogue[arch])),
                    gr.update(visible=converts), gr.update(visible=converts), gr.update(visible=converts),
                    licence_text(catalogue[arch]), gr.update(visible=bool(catalogue[arch].get("zero_shot")))]
        return updates

    architecture.change(on_architecture, inputs=architecture,
                        outputs=[character] + [options.groups[a] for a in architectures]
                        + [text, audio_in, speak_box, processing.pre_box, spectrogram_in, licence_note, voice_panel.box], **PRIVATE)
    voice_panel.wire(audio_in, architecture, character, character_choices, browser)

    def on_speak_architecture(arch: str) -> Any:
        return gr.update(choices=character_choices(station, arch), value=first_usable(station, arch))

    def on_character(arch: str, char: Optional[str], *values: Any) -> List[Any]:
        """Options follow the character: its saved defaults, and what it and the shared assets allow
        (unusable ones disabled with the reason, unusable choices out of the list and named in its help)."""
        gaps = shown_to_person(lambda: station.unavailable_options(arch, char)) if arch else {}
        saved = station.character_defaults(arch, char) if arch and char else {}
        return options.follow_character(arch, saved, gaps)

    option_inputs = [architecture, character, *options.components]

    def save_defaults(request: gr.Request, arch: str, char: str, *values: Any) -> str:  # Gradio injects a request only before *values
        chosen = options.chosen(arch, values)
        return as_operator(station.access, request, lambda: station.save_character_defaults(arch, char, chosen))

    save_defaults_button.click(save_defaults, inputs=option_inputs, outputs=defaults_message, **PRIVATE)
    character.change(on_character, inputs=option_inputs, outputs=options.components, **PRIVATE)
    demo.load(on_character, inputs=option_inputs, outputs=options.components, **PRIVATE)
    speak_arch.change(on_speak_architecture, inputs=speak_arch, outputs=speak_char, **PRIVATE)

    def on_generate(
        arch: str, char: str, typed: str, audio_path: Optional[str], fmt: str, cache_ok: bool, history: List[Dict[str, Any]],
        first_arch: Optional[str], first_char: Optional[str], first_text: str, browser_id: Optional[str],
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),
        *values: Any,  # after the special arguments: gradio fills in only positional ones (a keyword-only one stays unset)
    ) -> Iterator[Tuple[Any, ...]]:
        # a Generate before the page's load event gave this browser its id: give it one now (its history is kept)
        browser_id = ensure_browser_id(browser_id)
        # text-to-speech takes the text box (and its reference, if it takes one); a conversion its recording, or else the
        # text to speak first
        converts = bool(catalogue[arch]["needs_audio"]) if arch in catalogue else False
        text_value = (first_text if not audio_path else "") if converts else typed
        audio_path = audio_path if arch in catalogue and takes_recording(catalogue[arch]) else None  # a hidden one is not sent
        count = len(options.entries)
        chosen_options = options.chosen(arch, values[:count])
        chosen = processing.to_dicts(list(values[count:]))
        speak_with = {"architecture": first_arch, "character": first_char} if first_arch and first_char else None
        if streams(arch):  # text to speech plays while it is spoken: the live player follows the take as it is made
            job_id = calls.start(arch, char, text_value, audio_path, chosen_options, fmt, request, chosen, cache_ok, speak_with, browser_id)
            yield (*[gr.skip()] * (len(generate_outputs) - 1), live_player_html(job_id))
            generation = calls.finish(job_id, progress)
        else:
            generation = calls.run(arch, char, text_value, audio_path, chosen_options, fmt, progress, request, chosen, cache_ok,
                                   speak_with, browser_id)
        row = [generation.path.stem.split("-")[0], arch, char, (text_value or "")[:60], round(generation.duration_s, 2),
               generation.path.name]
        # each entry keeps its own full path: a day's folder changes at midnight, and retention may remove old ones
        history = [{"row": row, "path": str(generation.path)}, *history][: settings.history_size]
        kept = [entry for entry in history if Path(entry["path"]).is_file()]
        yield (str(generation.path), generation.info(), [e["row"] for e in kept], kept, [e["path"] for e in kept],
               spectrogram_image(str(generation.path)), spectrogram_image(audio_path) if converts else None, browser_id, gr.skip())

    def streams(arch: str) -> bool:
        return arch in catalogue and bool(catalogue[arch]["needs_text"]) and not bool(catalogue[arch]["needs_audio"])

    generate_inputs = [architecture, character, text, audio_in, output_format, use_cache, history_state, speak_arch, speak_char,
                       speak_text, browser, *options.components, *processing.components]
    generate_outputs = [audio_out, info_out, history_table, history_state, history_files, spectrogram_out, spectrogram_in, browser,
                        live_player]
    def traced() -> bool:  # the button's call is the root of its job's trace
        return bool(station.settings.telemetry)

    generate_event = generate_button.click(traced_endpoint("generate_tab", on_generate, traced, "gradio Generate"), inputs=generate_inputs,
                                           outputs=generate_outputs, concurrency_limit=None, **PRIVATE)

    def on_new_take(arch: str, char: str, typed: str, audio_path: Optional[str], fmt: str, cache_ok: bool,
                    history: List[Dict[str, Any]], first_arch: Optional[str], first_char: Optional[str], first_text: str,
                    browser_id: Optional[str], request: gr.Request, progress: gr.Progress = gr.Progress(),
                    *values: Any) -> Iterator[Tuple[Any, ...]]:
        """The same request made afresh (no cache): another take of the same line."""
        yield from on_generate(arch, char, typed, audio_path, fmt, False, history, first_arch, first_char, first_text, browser_id,
                           request, progress, *values)

    new_take_event = new_take_button.click(traced_endpoint("new_take_tab", on_new_take, traced, "gradio New take"), inputs=generate_inputs,
                                           outputs=generate_outputs, concurrency_limit=None, **PRIVATE)

    def ui_preview(architecture_value: str, audio: Optional[str], *values: Any) -> str:
        return calls.preview_preprocess(architecture_value, audio, processing.to_dicts(list(values))["preprocess"])

    preview_button.click(ui_preview, inputs=[architecture, audio_in, *processing.components], outputs=preview_audio, **PRIVATE)

    def ui_save_preset(request: gr.Request, name: str, *values: Any) -> Tuple[str, Any]:  # a request only before *values
        chosen = processing.to_dicts(list(values))
        message = calls.save_preset(name, chosen["preprocess"], chosen["postprocess"], request)
        return message, gr.update(choices=station.presets(), value=name)

    preset_save.click(ui_save_preset, inputs=[preset_name, *processing.components], outputs=[preset_message, preset_choice], **PRIVATE)

    def ui_load_preset(name: str) -> List[Any]:
        if not name:
            raise gr.Error("pick a preset to load", print_exception=False)
        loaded = calls.load_preset(name)
        return processing.from_dicts(loaded["preprocess"], loaded["postprocess"])

    preset_load.click(ui_load_preset, inputs=preset_choice, outputs=processing.components, **PRIVATE)
    return GenerateTab(cancel_button, [generate_event, new_take_event])
