"""The Generate tab's voice panel, for zero-shot architectures: the recording above it (recorded or uploaded, trimmed in
its own editor) saved as a voice with its transcript, the saved voices listed, one deleted. Thin wiring over
``app.ui_api_voices``."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import gradio as gr

from app.actions import Workstation
from app.ui_api_voices import VoiceEndpoints

PRIVATE: Dict[str, Any] = {"api_visibility": "private"}
VOICE_HEADERS = ["voice", "name", "seconds", "transcript", "made by", "made"]


def licence_text(entry: Mapping[str, Any]) -> str:
    """What a person should know before using an architecture's weights: their licence and any watermark."""
    parts = []
    if entry.get("licence"):
        parts.append("**Licence:** %s" % entry["licence"])
    if entry.get("watermark"):
        parts.append("**Watermark:** %s" % entry["watermark"])
    if entry.get("zero_shot"):
        parts.append("Speaks in the voice of a recording: use only voices you have the right to use, with their owner's consent.")
    return "  \n".join(parts)


def voice_rows(station: Workstation) -> List[List[Any]]:
    return [[v.id, v.name, round(v.duration_s, 1), v.transcript[:60], v.made_by, v.created_at] for v in station.list_voices()]


class VoicePanel:
    def __init__(self, station: Workstation, calls: VoiceEndpoints, visible: bool) -> None:
        self.station, self.calls = station, calls
        with gr.Accordion("Save the recording above as a voice (for every zero-shot architecture)", open=False,
                          visible=visible) as self.box:
            gr.Markdown("3-30 s of one person speaking, clear and unclipped; trim it with the recording's scissors. Silence at its "
                        "ends is cut; a recording where two people clearly take turns is refused (two similar voices are not told "
                        "apart: keep it to one person). It is saved with who made it and from what.")
            with gr.Row():
                self.name = gr.Textbox(label="Voice name", placeholder="e.g. Ann, calm")
                self.transcript = gr.Textbox(label="What the recording says (F5-TTS needs it)", lines=2)
            with gr.Row():
                self.save_button = gr.Button("Save voice", variant="primary")
                self.message = gr.Markdown()
            self.table = gr.Dataframe(headers=VOICE_HEADERS, value=voice_rows(station), label="Saved voices", interactive=False)
            with gr.Row():
                self.doomed = gr.Dropdown(choices=[v.id for v in station.list_voices()], label="Voice to delete")
                self.delete_button = gr.Button("Delete voice", variant="stop")

    def wire(self, audio_in: gr.Audio, architecture: gr.Dropdown, character: gr.Dropdown,
             character_choices: Any, browser: gr.BrowserState) -> None:
        def save(name: str, audio: Optional[str], transcript: str, arch: str, browser_id: Optional[str],
                 request: gr.Request) -> Tuple[Any, ...]:
            saved = self.calls.save_for(name, audio, transcript, request, browser_id)
            choices = [v.id for v in self.station.list_voices()]
            new_character = gr.update(choices=character_choices(self.station, arch), value=saved["id"]) \
                if arch in saved["architectures"] else gr.update()
            return ("Saved voice **%s** (%.1f s) for %s." % (saved["id"], saved["duration_s"], ", ".join(saved["architectures"])),
                    voice_rows(self.station), gr.update(choices=choices), new_character)

        self.save_button.click(save, inputs=[self.name, audio_in, self.transcript, architecture, browser],
                               outputs=[self.message, self.table, self.doomed, character], **PRIVATE)

        def delete(voice_id: Optional[str], arch: str, browser_id: Optional[str], request: gr.Request) -> Tuple[Any, ...]:
            if not voice_id:
                raise gr.Error("choose the voice to delete", print_exception=False)
            message = self.calls.delete_for(voice_id, request, browser_id)
            return (message, voice_rows(self.station), gr.update(choices=[v.id for v in self.station.list_voices()], value=None),
                    gr.update(choices=character_choices(self.station, arch)))

        self.delete_button.click(delete, inputs=[self.doomed, architecture, browser],
                                 outputs=[self.message, self.table, self.doomed, character],
                                 **PRIVATE)
