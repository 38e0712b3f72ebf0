"""The Covers tab: a song, a separation model, a conversion architecture and character with its options, the remix's
gains; the cover and each stem to download. Thin wiring over ``app.ui_api_voices`` (``/cover``)."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import gradio as gr

from app.actions import Workstation, output_formats
from app.covers import BACKING_CHOICES
from app.ui_api_voices import VoiceEndpoints
from app.ui_generate import character_choices, first_usable
from app.ui_options import build_option_controls

PRIVATE: Dict[str, Any] = {"api_visibility": "private"}


def separator_choices(station: Workstation, catalogue: Mapping[str, Dict[str, Any]]) -> List[Tuple[str, str]]:
    """Every separation model of every separator architecture, as "architecture/model"."""
    return [("%s: %s" % (catalogue[arch]["name"], c.label), "%s/%s" % (arch, c.id))
            for arch in catalogue if "separate" in catalogue[arch]["capabilities"] for c in station.characters(arch)]


def build_covers_tab(station: Workstation, calls: VoiceEndpoints, catalogue: Mapping[str, Dict[str, Any]],
                     browser: gr.BrowserState) -> None:
    converters = {a: e for a, e in catalogue.items() if e["needs_audio"] and "convert" in e["capabilities"]}
    separators = separator_choices(station, catalogue)
    with gr.Tab("Covers"):
        if not converters or not separators:
            gr.Markdown("A cover needs a separation model (e.g. Demucs) and a conversion architecture (RVC, so-vits-svc, Seed-VC): "
                        "install them in the Models tab.")
            return
        first = next(iter(converters))
        with gr.Row():
            with gr.Column(scale=3):
                song = gr.Audio(sources=["upload"], type="filepath", label="Song (any length up to the server's limit)",
                                elem_id="cover-song")
                separator = gr.Dropdown(choices=separators, value=separators[0][1], label="Separation model")
                architecture = gr.Dropdown(choices=[(e["name"], a) for a, e in converters.items()], value=first,
                                           label="Conversion architecture")
                character = gr.Dropdown(choices=character_choices(station, first), value=first_usable(station, first), label="Character")
                with gr.Accordion("Conversion options (e.g. pitch for a singer of another range)", open=False):
                    options = build_option_controls(converters, first)
                with gr.Accordion("Mix", open=True):
                    with gr.Row():
                        vocals_gain = gr.Slider(-24, 12, value=0, step=0.5, label="Vocals gain (dB)")
                        accompaniment_gain = gr.Slider(-24, 12, value=0, step=0.5, label="Accompaniment gain (dB)")
                    with gr.Row():
                        backing = gr.Radio(list(BACKING_CHOICES), value="convert", label="Backing vocals",
                                           info="convert: the vocal stem's centre is converted, its wide part dropped; keep: the "
                                                "wide part (where backing vocals usually are) stays as sung")
                        backing_gain = gr.Slider(-24, 12, value=0, step=0.5, label="Kept backing vocals gain (dB)")
                    with gr.Row():
                        reverb = gr.Slider(0, 1, value=0, step=0.05, label="Reverb on the converted vocals")
                        match = gr.Checkbox(value=True, label="Match the song's loudness")
                output_format = gr.Dropdown(choices=output_formats(), value="wav", label="Output format")
                make_button = gr.Button("Make cover", variant="primary")
            with gr.Column(scale=2):
                mix_out = gr.Audio(type="filepath", label="Cover", interactive=False, buttons=["download"])
                stems_out = gr.Files(label="Stems: vocals, accompaniment, converted vocals", interactive=False)
                info_out = gr.JSON(label="Details")

    def on_architecture(arch: str) -> List[Any]:
        return [gr.update(choices=character_choices(station, arch), value=first_usable(station, arch))] + [
            gr.update(visible=name == arch) for name in converters]

    architecture.change(on_architecture, inputs=architecture, outputs=[character] + [options.groups[a] for a in converters], **PRIVATE)

    def make(song_path: Optional[str], chosen_separator: str, arch: str, char: str, fmt: str, vocals_db: float,
             accompaniment_db: float, backing_vocals: str, backing_db: float, reverb_wet: float, match_loudness: bool,
             browser_id: Optional[str], request: gr.Request, progress: gr.Progress = gr.Progress(), *values: Any) -> Tuple[Any, ...]:
        if not song_path:
            raise gr.Error("upload the song first", print_exception=False)
        separator_arch, _, model = (chosen_separator or "").partition("/")
        cover = {"separator": separator_arch, "separator_model": model,
                 "remix": {"vocals_gain_db": vocals_db, "accompaniment_gain_db": accompaniment_db, "backing_vocals": backing_vocals,
                           "backing_gain_db": backing_db, "reverb_wet": reverb_wet, "match_loudness": bool(match_loudness)}}
        mix, stems, info = calls.cover_for(song_path, arch, char, options.chosen(arch, values), cover, fmt, True, progress, request,
                                           browser_id)
        return mix, stems, info

    make_button.click(make, inputs=[song, separator, architecture, character, output_format, vocals_gain, accompaniment_gain, backing,
                                    backing_gain, reverb, match, browser, *options.components],
                      outputs=[mix_out, stems_out, info_out], concurrency_limit=None, **PRIVATE)
