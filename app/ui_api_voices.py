"""The functions behind /save_voice, /voices, /delete_voice and /cover (named in ``app.ui_api``); the Voices and Covers
controls call them too. Thin wiring over ``app.actions``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import gradio as gr

from app.actions import Workstation
from app.ui_caller import request_owner
from app.ui_errors import shown_to_person
from app.ui_processing import parse_json_object


class VoiceEndpoints:
    def __init__(self, station: Workstation) -> None:
        self.station = station

    def save_voice(self, name: str, audio: Optional[str], transcript: Optional[str] = None,
                   request: gr.Request = None) -> Dict[str, Any]:  # type: ignore[assignment]  # gradio fills it in
        """Save a recording (3-30 s of one person speaking; silence at its ends is trimmed) as a voice every zero-shot
        architecture lists as a character. ``transcript``: what it says (F5-TTS needs it; typed here, or transcribed
        when its speech-recognition asset is installed). Returns the saved voice (id, architectures, ...)."""
        return self.save_for(name, audio, transcript, request, None)

    def save_for(self, name: str, audio: Optional[str], transcript: Optional[str], request: Optional[gr.Request],
                 browser_id: Optional[str]) -> Dict[str, Any]:
        """/save_voice for a caller: the Voices panel's browser (its id makes it the voice's maker across visits)."""
        owner, _, _ = request_owner(request, browser_id)
        source = "upload %s" % Path(audio).name if audio else ""
        return shown_to_person(lambda: self.station.save_voice(name or "", audio, transcript or "", owner, source).to_dict())

    def voices(self) -> List[Dict[str, Any]]:
        """The saved voices: name, transcript, who made it, from what, when, length, and the architectures listing it."""
        return [voice.to_dict() for voice in self.station.list_voices()]

    def delete_voice(self, voice_id: str, request: gr.Request = None) -> str:  # type: ignore[assignment]  # gradio fills it in
        """Delete a saved voice (its maker or an operator)."""
        return self.delete_for(voice_id, request, None)

    def delete_for(self, voice_id: str, request: Optional[gr.Request], browser_id: Optional[str]) -> str:
        owner, _, _ = request_owner(request, browser_id)
        return shown_to_person(lambda: self.station.delete_voice(voice_id or "", owner))

    def cover(
        self,
        audio: Optional[str],
        architecture: str,
        character: str,
        options: Any = None,
        cover: Any = None,
        output_format: str = "wav",
        use_cache: bool = True,
        progress: gr.Progress = gr.Progress(),
        request: gr.Request = None,  # type: ignore[assignment]  # gradio fills it in
    ) -> Tuple[str, List[str], Dict[str, Any]]:
        """A song cover: ``audio`` (the song) separated into vocals and accompaniment, the vocals converted by a conversion
        ``architecture`` and ``character`` with its ``options``, remixed. ``cover``: {"separator", "separator_model",
        "separator_options", "remix": {"vocals_gain_db", "accompaniment_gain_db", "backing_vocals": convert|keep,
        "backing_gain_db", "reverb_wet", "match_loudness"}}. Returns the mix, the stems (vocals, accompaniment, converted
        vocals) and the details (``cover.stems_reused``: the song's stems were separated before and reused)."""
        return self.cover_for(audio, architecture, character, options, cover, output_format, use_cache, progress, request, None)

    def cover_for(self, audio: Optional[str], architecture: str, character: str, options: Any, cover: Any, output_format: str,
                  use_cache: bool, progress: gr.Progress, request: Optional[gr.Request],
                  browser_id: Optional[str]) -> Tuple[str, List[str], Dict[str, Any]]:
        """/cover for a caller: the Covers tab's browser (its History lists the cover)."""
        owner, session, client = request_owner(request, browser_id)
        parsed = shown_to_person(lambda: parse_json_object(options, "options")) or {}
        settings = shown_to_person(lambda: parse_json_object(cover, "cover")) or {}
        generation = shown_to_person(lambda: self.station.cover(
            architecture, character, audio, parsed, settings, output_format or "wav",
            lambda fraction, message: progress(fraction, desc=message), session, owner, bool(use_cache), client))
        info = generation.info()
        stems = [str(self.station.jobs.artifacts.path_for(key)) for key in (info.get("cover") or {}).get("stems", {}).values()]
        return str(generation.path), stems, info
