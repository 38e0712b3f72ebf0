"""The functions behind /generate, /cancel, the listings, the preprocessing preview, presets and a character's
defaults (named in ``app.ui_api``); the Generate tab calls them too. Thin wiring over ``app.actions``."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import gradio as gr

from app.actions import Generation, Workstation
from app.stream_encoding import pcm16
from app.ui_caller import request_owner, session_of
from app.ui_errors import as_operator, shown_to_person
from app.ui_processing import parse_json_object
from jobs.spec import JobSpec


class GenerationEndpoints:
    def __init__(self, station: Workstation) -> None:
        self.station = station

    def run(
        self,
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
        """One generation for the person asking (the Generate tab's and /generate's)."""
        owner, session, client = request_owner(request, browser_id)
        return shown_to_person(
            lambda: self.station.generate(
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

    def start(
        self,
        architecture: str,
        character: str,
        text: str,
        audio_path: Optional[str],
        options: Dict[str, Any],
        output_format: str,
        request: Optional[gr.Request],
        processing: Mapping[str, Optional[Dict[str, Any]]],
        use_cache: bool,
        speak_with: Optional[Dict[str, Any]] = None,
        browser_id: Optional[str] = None,
    ) -> str:
        """Queue a generation whose take streams (the Generate tab's live player follows it); its job id."""
        owner, session, client = request_owner(request, browser_id)
        spec = JobSpec(architecture, character, text or "", audio_path, dict(options or {}), output_format, processing.get("preprocess"),
                       processing.get("postprocess"), bool(use_cache), speak_with, stream=True)
        return shown_to_person(lambda: self.station.submit(spec, owner, session, client=client))

    def finish(self, job_id: str, progress: gr.Progress) -> Generation:
        """Wait for a job ``start`` queued."""
        return shown_to_person(lambda: self.station.wait(job_id, lambda fraction, message: progress(fraction, desc=message)))

    def generate(
        self,
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
        "options"}; default: the default TTS voice). For a TTS architecture that speaks in the voice of a recording
        (its ``reference`` in /list_architectures: required or optional, with min_s/max_s), ``audio`` is that reference
        recording, given with the text; one that is missing but required, silent, or out of range is refused before queuing."""
        parsed = shown_to_person(lambda: parse_json_object(options, "options")) or {}
        chosen = shown_to_person(lambda: {
            "preprocess": parse_json_object(preprocess, "preprocess"),
            "postprocess": parse_json_object(postprocess, "postprocess"),
        })
        first = shown_to_person(lambda: parse_json_object(speak_with, "speak_with"))
        generation = self.run(
            architecture, character, text or "", audio, parsed, output_format or "wav", progress, request, chosen, bool(use_cache),
            first,
        )
        return str(generation.path), generation.info()

    def generate_stream(
        self,
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
        request: gr.Request = None,  # type: ignore[assignment]  # gradio fills it in
    ) -> Iterator[Tuple[Any, Dict[str, Any]]]:
        """As /generate, with the take in pieces as they are made: each piece (a sentence, for text to speech) comes as
        a wav with {"job_id", "piece", "sample_rate", "final": false} as soon as it is spoken, post-processed on the stream;
        the last value is the whole stored take with its details ("final": true). Iterate a ``gradio_client`` job for
        them; cancelling the job (or leaving) cancels the generation."""
        owner = request_owner(request)[0]
        parsed = shown_to_person(lambda: {name: parse_json_object(value, name) for name, value in
                                          (("options", options), ("preprocess", preprocess), ("postprocess", postprocess),
                                           ("speak_with", speak_with))})
        job_id = self.start(architecture, character, text or "", audio, parsed["options"] or {}, output_format or "wav", request, parsed,
                            bool(use_cache), parsed["speak_with"])
        take = self.station.live.open(job_id)
        take.watch(lambda: self.station.wait(job_id))
        done = False
        sent = 0
        try:
            while not (take.ended and sent >= len(take.pieces)):
                for piece in take.next_pieces(sent, 0.25):
                    sent += 1
                    # 16-bit as the stored wav is (Gradio writes integers as they are: a float array it would peak-normalise)
                    yield (piece.sample_rate, pcm16(piece.audio)), {"job_id": job_id, "piece": sent, "sample_rate": piece.sample_rate,
                                                                     "final": False}
            if take.error is not None:
                shown_to_person(lambda: _raise(take.error))
            generation: Generation = take.outcome
            done = True
            yield str(generation.path), dict(generation.info(), job_id=job_id, final=True)
        finally:
            if not done:  # the caller cancelled or went away: nobody wants the rest
                self.station.jobs.cancel(job_id, owner)

    def cancel(self, request: gr.Request) -> str:
        """Cancel this session's running jobs."""
        count = self.station.cancel(session_of(request))
        return "cancelled %d job(s)" % count

    def list_architectures(self) -> List[Dict[str, Any]]:
        """Architectures with their capabilities and option schema."""
        return self.station.architectures()

    def list_characters(self, architecture: str) -> List[Dict[str, Any]]:
        """Characters available for an architecture."""
        characters = shown_to_person(lambda: self.station.characters(architecture))
        return [c.to_dict() for c in characters]

    def preview_preprocess(self, architecture: str, audio: Optional[str], preprocess: Any = None) -> str:
        """The input recording after preprocessing: what the model will get."""
        def run() -> str:
            return str(self.station.preview_preprocess(architecture, audio, parse_json_object(preprocess, "preprocess")))

        return shown_to_person(run)

    def list_presets(self) -> List[str]:
        """Names of saved processing presets."""
        return self.station.presets()

    def save_preset(self, name: str, preprocess: Any = None, postprocess: Any = None,
                    request: gr.Request = None) -> str:  # type: ignore[assignment]
        """Save pre/post-processing settings under a name (presets are shared: on a shared server, the operator's)."""
        def run() -> str:
            return self.station.save_preset(name, parse_json_object(preprocess, "preprocess"),
                                            parse_json_object(postprocess, "postprocess"))

        return as_operator(self.station.access, request, run)

    def load_preset(self, name: str) -> Dict[str, Any]:
        """A saved preset's settings: {"preprocess": {...}, "postprocess": {...}}."""
        return shown_to_person(lambda: self.station.load_preset(name))

    def character_defaults(self, architecture: str, character: str) -> Dict[str, Any]:
        """A character's saved option defaults (only those that differ from the architecture's)."""
        def run() -> Dict[str, Any]:
            self.station.character(architecture, character)  # an unknown name is an error, not an empty answer
            return self.station.character_defaults(architecture, character)

        return shown_to_person(run)

    def save_character_defaults(self, architecture: str, character: str, options: Any, request: gr.Request) -> str:
        """Save options as a character's defaults: the UI opens on them and /generate fills them in (shared by everyone:
        on a shared server, the operator's)."""
        return as_operator(self.station.access, request, lambda: self.station.save_character_defaults(
            architecture, character, parse_json_object(options, "options")))


def _raise(error: Optional[BaseException]) -> None:
    if error is not None:
        raise error
