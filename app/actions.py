"""What the UI and the API do, as plain functions over one ``Workstation``. No gradio here."""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from app.characters import Character, list_characters
from app.errors import UserFacingError
from app.settings import Settings
from pipeline.audio_io import OUTPUT_FORMATS, decode, encode
from pipeline.errors import PipelineError
from pipeline.stages import Chain, default_post_chain, default_pre_chain
from runtimes.environments import EnvSpec
from runtimes.errors import (
    ArchitectureUnavailableError,
    BadRequestError,
    EnvironmentBuildError,
    JobCancelledError,
    JobTimeoutError,
    RemoteError,
    RuntimeLayerError,
    WorkerBootError,
    WorkerCrashedError,
)
from runtimes.manifest import Manifest
from runtimes.supervisor import JobRequest, Supervisor

logger = logging.getLogger(__name__)

ProgressFn = Callable[[Optional[float], str], None]


def output_formats() -> List[str]:
    return list(OUTPUT_FORMATS)


def _no_progress(fraction: Optional[float], message: str) -> None:
    pass


@dataclass(frozen=True)
class Generation:
    path: Path
    architecture: str
    character: str
    text: str
    sample_rate: int
    duration_s: float
    cold: bool
    timings_s: Dict[str, float]

    def info(self) -> Dict[str, Any]:
        return {
            "architecture": self.architecture,
            "character": self.character,
            "sample_rate": self.sample_rate,
            "duration_s": round(self.duration_s, 3),
            "cold_start": self.cold,
            "timings_s": {key: round(value, 4) for key, value in self.timings_s.items()},
            "file": self.path.name,
        }


@dataclass
class Workstation:
    """The app's core: architectures, characters, generation. One per app process."""

    settings: Settings
    specs: Dict[str, EnvSpec]
    manifests: Dict[str, Manifest]
    supervisor: Supervisor
    post_chain: Chain = field(default_factory=default_post_chain)
    _running: Dict[str, List[threading.Event]] = field(default_factory=dict)
    _running_lock: threading.Lock = field(default_factory=threading.Lock)

    # catalogue
    def architectures(self) -> List[Dict[str, Any]]:
        return [
            {
                "id": name,
                "name": manifest.display_name,
                "capabilities": list(manifest.capabilities),
                "needs_text": manifest.needs_text,
                "needs_audio": manifest.needs_audio,
                "options": manifest.to_dict()["options"],
            }
            for name, manifest in self.manifests.items()
        ]

    def manifest(self, architecture: str) -> Manifest:
        try:
            return self.manifests[architecture]
        except KeyError:
            raise UserFacingError(
                "unknown architecture %r (available: %s)" % (architecture, ", ".join(self.manifests) or "none")
            ) from None

    def characters(self, architecture: str) -> List[Character]:
        return list_characters(self.manifest(architecture), self.settings.characters_dir)

    def character(self, architecture: str, character_id: str) -> Character:
        characters = self.characters(architecture)
        for character in characters:
            if character.id == character_id or character.label == character_id:
                return character
        raise UserFacingError(
            "unknown character %r for %s (available: %s)"
            % (character_id, architecture, ", ".join(c.id for c in characters) or "none")
        )

    # generation
    def generate(
        self,
        architecture: str,
        character_id: str,
        text: str = "",
        audio_path: Optional[str] = None,
        options: Optional[Dict[str, Any]] = None,
        output_format: str = "wav",
        progress: ProgressFn = _no_progress,
        session: str = "",
    ) -> Generation:
        cancel = threading.Event()
        with self._running_lock:
            self._running.setdefault(session, []).append(cancel)
        try:
            return self._generate(architecture, character_id, text, audio_path, options, output_format, progress, cancel)
        finally:
            with self._running_lock:
                self._running[session].remove(cancel)
                if not self._running[session]:
                    del self._running[session]

    def cancel(self, session: str) -> int:
        """Cancel the running jobs of one session (a browser tab, or one gradio_client); returns how many."""
        with self._running_lock:
            events = list(self._running.get(session, []))
        for event in events:
            event.set()
        return len(events)

    def _generate(
        self,
        architecture: str,
        character_id: str,
        text: str,
        audio_path: Optional[str],
        options: Optional[Dict[str, Any]],
        output_format: str,
        progress: ProgressFn,
        cancel: threading.Event,
    ) -> Generation:
        manifest = self.manifest(architecture)
        character = self.character(architecture, character_id)
        text = (text or "").strip()
        if output_format not in OUTPUT_FORMATS:
            raise UserFacingError("unknown output format %r (choose one of %s)" % (output_format, ", ".join(OUTPUT_FORMATS)))
        if manifest.needs_text and not text:
            raise UserFacingError("%s needs text: type what it should say" % manifest.display_name)
        if text and not manifest.needs_text and "tts" not in manifest.capabilities:
            raise UserFacingError("%s converts recordings and takes no text: upload or record audio instead" % manifest.display_name)
        if len(text) > self.settings.max_text_chars:
            raise UserFacingError("the text is %d characters long; the limit is %d" % (len(text), self.settings.max_text_chars))
        if manifest.needs_audio and not audio_path:
            raise UserFacingError("%s needs input audio: upload or record a recording" % manifest.display_name)
        try:
            resolved = manifest.resolve_options(options)
        except ValueError as exc:
            raise UserFacingError(str(exc)) from exc

        audio: Optional[np.ndarray] = None
        audio_rate: Optional[int] = None
        if audio_path and manifest.needs_audio:
            progress(None, "reading the input audio")
            try:
                decoded = decode(Path(audio_path))
                target = manifest.input_sample_rate or decoded.sample_rate
                audio, audio_rate = default_pre_chain(target).apply(decoded.audio, decoded.sample_rate)
            except PipelineError as exc:
                raise UserFacingError(str(exc)) from exc

        request = JobRequest(
            architecture=architecture,
            character=character.id,
            character_path=str(character.path) if character.path else None,
            text=text,
            audio=audio,
            audio_sample_rate=audio_rate,
            options=resolved,
        )
        try:
            result = self.supervisor.generate(request, progress=progress, cancel=cancel)
        except BadRequestError as exc:
            raise UserFacingError(exc.message) from exc
        except RemoteError as exc:
            raise UserFacingError("%s failed: %s: %s" % (manifest.display_name, exc.error_type, exc.message)) from exc
        except (WorkerCrashedError, WorkerBootError, JobTimeoutError, EnvironmentBuildError) as exc:
            raise UserFacingError(str(exc)) from exc
        except ArchitectureUnavailableError as exc:
            raise UserFacingError(str(exc)) from exc
        except JobCancelledError as exc:
            raise UserFacingError("the job was cancelled") from exc
        except RuntimeLayerError as exc:
            raise UserFacingError("%s: %s" % (manifest.display_name, exc)) from exc

        progress(None, "post-processing")
        started = time.perf_counter()
        try:
            out_audio, out_rate = self.post_chain.apply(result.audio, result.sample_rate)
            path = encode(out_audio, out_rate, self._output_path(architecture, character.id), output_format)
        except PipelineError as exc:
            raise UserFacingError(str(exc)) from exc
        timings = dict(result.timings_s, post_s=time.perf_counter() - started)
        duration_s = out_audio.shape[-1] / float(out_rate)
        return Generation(path, architecture, character.id, text, out_rate, duration_s, result.cold, timings)

    def _output_path(self, architecture: str, character_id: str) -> Path:
        folder = self.settings.outputs_dir / datetime.now().strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", character_id)[:40]
        stamp = datetime.now().strftime("%H%M%S-%f")
        return folder / ("%s-%s-%s.wav" % (stamp, architecture, slug))

    def prewarm_default(self) -> None:
        """Start the default architecture's worker with its first character (failures are only logged)."""
        architecture = self.settings.default_architecture
        if architecture not in self.manifests:
            return
        characters = self.characters(architecture)
        if not characters:
            return
        first = characters[0]
        try:
            self.supervisor.prewarm(architecture, first.id, str(first.path) if first.path else None)
        except RuntimeLayerError as exc:
            logger.warning("could not prewarm %s: %s", architecture, exc)

    def runtime_status(self) -> List[Dict[str, Any]]:
        return self.supervisor.status()

    def memory_note(self) -> str:
        return self.supervisor.memory_note()

    def _worker_key(self, architecture: str, character_id: str) -> str:
        character = self.character(architecture, character_id)
        return str(character.path) if character.path else character.id

    def prewarm(self, architecture: str, character_id: str) -> str:
        """Start (or retry) a character's worker now."""
        character = self.character(architecture, character_id)
        try:
            self.supervisor.prewarm(architecture, character.id, str(character.path) if character.path else None)
        except RemoteError as exc:
            raise UserFacingError("%s could not load %s: %s" % (architecture, character.id, exc.message)) from exc
        except RuntimeLayerError as exc:
            raise UserFacingError(str(exc)) from exc
        return "%s / %s is warm" % (architecture, character.id)

    def pin(self, architecture: str, character_id: str, pinned: bool) -> str:
        self.supervisor.pin(architecture, self._worker_key(architecture, character_id), pinned)
        return "%s / %s %s" % (architecture, character_id, "pinned: never evicted" if pinned else "unpinned")

    def stop_worker(self, name: str) -> str:
        if not self.supervisor.stop(name):
            raise UserFacingError("no running worker named %r" % name)
        return "stopped %s" % name

    def close(self) -> None:
        self.supervisor.shutdown()
