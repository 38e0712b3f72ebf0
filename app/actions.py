"""What the UI and the API do, over one ``Workstation``: a small front over the parts that do the work (no gradio here).

* ``app.catalog.Catalog``: architectures, characters, shared assets, unavailable options
* ``app.request_checks.RequestChecks``: a person's request -> a prepared job (the one checked decoder), the preview
* ``app.runner.JobRunner``: one job through cache, pre, worker(s), post, encode; ``JobServiceRunner`` for the job service
* ``app.provenance.Provenance``: how a result was made; the output cache's fingerprints
* ``app.preferences.Preferences``: a character's saved defaults, the presets
* ``app.runtime_controls.RuntimeControls``: warm, pin, unload, stop, status, memory samples
* the job service (``jobs``) and retention, built in ``app.bootstrap`` and handed in."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from app.access import Access
from app.catalog import Catalog
from app.characters import Character
from app.errors import UserFacingError
from app.generation import Generation, ProgressFn, minutes, no_progress, output_formats
from app.live import LiveTakes
from app.metrics import Metrics
from app.preferences import Preferences
from app.request_checks import PreparedJob, RequestChecks
from app.runner import JobServiceRunner
from app.runtime_controls import RuntimeControls
from app.settings import Settings
from app.voices import SavedVoice, VoiceLibrary
from jobs.artifacts import local_path
from jobs.errors import JobError, UnknownJobError
from jobs.queue import JobQueue
from jobs.retention import RetentionLoop
from jobs.spec import JobSpec
from models.manager import ModelManager
from pipeline.cache import AudioCache
from runtimes.environments import EnvSpec
from runtimes.manifest import Manifest
from runtimes.supervisor import Supervisor

if TYPE_CHECKING:  # only with a broker: its imports (Redis, Celery) stay out of a desktop app's start
    from app.remote_downloads import FrontDownloads

def username_of_owner(owner: str) -> Optional[str]:
    """The login behind an owner (``app.identity``: ``user:<name>``); None for a browser or session."""
    return owner[5:] if owner.startswith("user:") else None


logger = logging.getLogger(__name__)
__all__ = ["Generation", "ProgressFn", "Workstation", "minutes", "output_formats"]


@dataclass
class Workstation:
    """The app's core, one per app process."""

    settings: Settings
    catalog: Catalog
    checks: RequestChecks
    service_runner: JobServiceRunner
    preferences: Preferences
    controls: RuntimeControls
    jobs: JobQueue
    retention: RetentionLoop
    supervisor: Supervisor
    cache: AudioCache
    models: ModelManager
    access: Access
    voices: VoiceLibrary
    """Saved voices of the zero-shot architectures (``app.voices``)."""
    metrics: Metrics = field(default_factory=Metrics)
    """What /metrics reads (``app.metrics``)."""
    remote_downloads: Optional[FrontDownloads] = None
    """Beyond one host: model downloads run on ``download.io`` hosts (``app.remote_downloads``); None: here."""

    @property
    def live(self) -> LiveTakes:
        """Takes being made, for the jobs that stream (``app.live``)."""
        return self.service_runner.runner.live

    @property
    def specs(self) -> Dict[str, EnvSpec]:
        return self.catalog.specs

    @property
    def manifests(self) -> Dict[str, Manifest]:
        return self.catalog.manifests

    # what can be used
    def architectures(self) -> List[Dict[str, Any]]:
        return self.catalog.architectures()

    def unavailable_options(self, architecture: str, character_id: Optional[str]) -> Dict[str, str]:
        return self.catalog.unavailable_options(architecture, character_id)

    def assets(self) -> List[Dict[str, Any]]:
        return self.catalog.assets()

    def manifest(self, architecture: str) -> Manifest:
        return self.catalog.manifest(architecture)

    def characters(self, architecture: str) -> List[Character]:
        return self.catalog.characters(architecture)

    def character(self, architecture: str, character_id: str) -> Character:
        return self.catalog.character(architecture, character_id)

    # generation: every request is a job (stored, scheduled fairly, recoverable)
    def generate(self, architecture: str, character_id: str, text: str = "", audio_path: Optional[str] = None,
                 options: Optional[Dict[str, Any]] = None, output_format: str = "wav", progress: ProgressFn = no_progress,
                 session: str = "", preprocess: Optional[Dict[str, Any]] = None, postprocess: Optional[Dict[str, Any]] = None,
                 use_cache: bool = True, speak_with: Optional[Dict[str, Any]] = None, owner: Optional[str] = None,
                 client: Optional[str] = None) -> Generation:
        """Submit a job and wait for it. ``speak_with`` ({"architecture", "character", "options"}): for a
        conversion architecture given text and no recording, the TTS that speaks the text first (default: the
        default architecture). ``owner``: whose history it joins (default: the session)."""
        spec = JobSpec(architecture, character_id, text or "", audio_path, dict(options or {}), output_format, preprocess, postprocess,
                       bool(use_cache), speak_with)
        return self.wait(self.submit(spec, session if owner is None else owner, session, client=client), progress)

    def submit(self, spec: JobSpec, owner: str, session: str = "", batch_id: Optional[str] = None, client: Optional[str] = None) -> str:
        """Validate and queue a job; its id at once (a mistake in the request is raised here, not recorded). ``client``:
        the stable identity its quotas and turn count against (``app.identity``)."""
        self.require_cloning_for(spec, owner)
        try:
            return self.jobs.submit(spec, owner, session, batch_id, client=client)
        except JobError as exc:
            raise UserFacingError(str(exc)) from None

    def require_cloning_for(self, spec: JobSpec, owner: str) -> None:
        """A request that speaks or converts in a cloned voice (its architecture, or the one that speaks its text first, is
        zero-shot) is allowed for ``owner`` by the ``voice_cloning`` setting now: checked on every submit and every Retry
        (the setting may have changed since the job was made)."""
        first = (spec.speak_with or {}).get("architecture") if isinstance(spec.speak_with, dict) else None
        for name in (spec.architecture, first):
            manifest = self.catalog.manifests.get(str(name)) if name else None
            if manifest is not None and manifest.zero_shot:
                self.voices.require_cloning(username_of_owner(owner))

    def wait(self, job_id: str, progress: ProgressFn = no_progress) -> Generation:
        try:
            generation: Generation = self.jobs.wait(job_id, progress)
        except UnknownJobError:  # it ended long enough ago to leave the service's memory: the store has it
            return self._ended(job_id)
        except JobError as exc:
            raise UserFacingError(str(exc)) from None
        return generation

    def _ended(self, job_id: str) -> Generation:
        row = self.jobs.store.get(job_id)
        if row is None or row["state"] != "succeeded" or not row.get("output_path"):
            raise UserFacingError((row or {}).get("error") or "job %s did not succeed" % job_id)
        return Generation(local_path(self.jobs.artifacts, row["output_path"]), row["architecture"], row["character"], row["text"],
                          int(row["sample_rate"] or 0),
                          float(row["duration_s"] or 0.0), False, dict(row["timings"] or {}), bool(row["cached"]), job_id=job_id)

    def cover(self, architecture: str, character_id: str, song_path: Optional[str], options: Optional[Dict[str, Any]] = None,
              cover: Optional[Dict[str, Any]] = None, output_format: str = "wav", progress: ProgressFn = no_progress, session: str = "",
              owner: Optional[str] = None, use_cache: bool = True, client: Optional[str] = None) -> Generation:
        """A song cover in a character's voice (``app.covers``): submitted as a job and waited for."""
        spec = JobSpec(architecture, character_id, "", song_path, dict(options or {}), output_format, None, None, bool(use_cache),
                       None, cover=dict(cover or {}))
        return self.wait(self.submit(spec, session if owner is None else owner, session, client=client), progress)

    # saved voices
    def save_voice(self, name: str, recording_path: Optional[str], transcript: str, owner: str, source: str = "") -> SavedVoice:
        saved = self.voices.save(name, recording_path, transcript, made_by=owner, source=source, username=username_of_owner(owner))
        self._unload_voice(saved)  # a worker may still hold an earlier voice of this name (removed from disk by hand)
        return saved

    def list_voices(self) -> List[SavedVoice]:
        return self.voices.list()

    def delete_voice(self, voice_id: str, owner: str) -> str:
        voice = self.voices.delete(voice_id, owner, username_of_owner(owner))
        self._unload_voice(voice)  # a warm worker keeps characters by folder: a new voice of this name must not find the old one
        return "deleted voice %s" % voice.id

    def _unload_voice(self, voice: SavedVoice) -> None:
        for architecture in self.voices.architectures():
            try:
                self.supervisor.unload(architecture, voice.id, str(self.voices.folder(architecture, voice.id)))
            except Exception:  # a worker that is gone or failing holds nothing
                logger.warning("could not unload voice %s from %s's worker", voice.id, architecture, exc_info=True)

    def cancel(self, session: str) -> int:
        """Cancel the queued and running jobs of one session (a browser tab, or one gradio_client); returns how many."""
        return self.jobs.cancel_session(session)

    def prepare(self, spec: JobSpec) -> PreparedJob:
        return self.service_runner.prepare(spec)

    def execute(self, prepared: Any, job_id: str, progress: ProgressFn, cancel: threading.Event,
                client: str = "") -> Tuple[Generation, Dict[str, Any]]:
        return self.service_runner.execute(prepared, job_id, progress, cancel, client)

    def preview_preprocess(self, architecture: str, audio_path: Optional[str], preprocess: Optional[Dict[str, Any]]) -> Path:
        return self.checks.preview_preprocess(architecture, audio_path, preprocess)

    # saved choices
    def character_defaults(self, architecture: str, character_id: str) -> Dict[str, Any]:
        return self.preferences.character_defaults(architecture, character_id)

    def save_character_defaults(self, architecture: str, character_id: str, options: Optional[Dict[str, Any]]) -> str:
        return self.preferences.save_character_defaults(architecture, character_id, options)

    def default_processing(self) -> Dict[str, Dict[str, Any]]:
        return self.preferences.default_processing()

    def presets(self) -> List[str]:
        return self.preferences.presets()

    def save_preset(self, name: str, preprocess: Optional[Dict[str, Any]], postprocess: Optional[Dict[str, Any]]) -> str:
        return self.preferences.save_preset(name, preprocess, postprocess)

    def load_preset(self, name: str) -> Dict[str, Dict[str, Any]]:
        return self.preferences.load_preset(name)

    # runtime controls
    def prewarm_configured(self) -> None:
        self.controls.prewarm_configured()

    def pin_configured(self) -> None:
        self.controls.pin_configured()

    def runtime_status(self, username: Optional[str] = None) -> List[Dict[str, Any]]:
        return self.controls.runtime_status(username)

    def start_memory_sampler(self, interval_s: float = 2.0) -> None:
        self.controls.start_memory_sampler(interval_s)

    def memory_history(self) -> List[Dict[str, Any]]:
        return self.controls.memory_history()

    def memory_note(self) -> str:
        return self.controls.memory_note()

    def prewarm(self, architecture: str, character_id: str) -> str:
        return self.controls.prewarm(architecture, character_id)

    def pin(self, architecture: str, character_id: str, pinned: bool) -> str:
        return self.controls.pin(architecture, character_id, pinned)

    def set_keep_alive(self, architecture: str, character_id: str, keep_alive_s: Optional[float]) -> str:
        return self.controls.set_keep_alive(architecture, character_id, keep_alive_s)

    def stop_worker(self, name: str) -> str:
        return self.controls.stop_worker(name)

    def unload(self, architecture: str, character_id: str) -> str:
        return self.controls.unload(architecture, character_id)

    def close(self) -> None:
        self.controls.close()
        self.retention.stop()
        self.jobs.close()
        if self.remote_downloads is not None:
            self.remote_downloads.close()
        self.models.close()
        self.supervisor.shutdown()
        self.cache.close()
