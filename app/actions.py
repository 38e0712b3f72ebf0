"""What the UI and the API do, as plain functions over one ``Workstation``. No gradio here."""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

from app.access import Access
from app.characters import Character, DescriptionMemo, files_signature, list_characters
from app.errors import UserFacingError
from app.public_errors import new_error_id, redact, unexpected
from app.settings import Settings
from app.version import app_version
from jobs.errors import JobError, UnknownJobError
from jobs.quotas import OwnerQuotas
from jobs.retention import RetentionLoop, RetentionPolicy
from jobs.service import JobService
from jobs.spec import JobSpec
from jobs.store import JobStore, sqlite_url
from models.manager import ModelManager
from models.store import FileHashes
from pipeline.atomic_file import write_text_atomic
from pipeline.audio_io import OUTPUT_FORMATS, DecodedAudio, decode, encode, output_sample_rate, probe
from pipeline.cache import AudioCache, audio_digest, key_of
from pipeline.errors import PipelineError
from pipeline.processing import PostOptions, PreOptions, PresetStore
from pipeline.stages import LoudnessNormalize, integrated_lufs
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
from runtimes.registry import adapter_class
from runtimes.supervisor import JobRequest, JobResult, Supervisor

logger = logging.getLogger(__name__)
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MIN_INPUT_S = 0.1
"""Shorter recordings give no voice to convert (and break pitch trackers)."""

LOSSLESS_FORMATS = ("wav", "wav24", "wav-float", "flac", "flac24")
ProgressFn = Callable[[Optional[float], str], None]


def minutes(seconds: float) -> str:
    return "%.0f s" % seconds if seconds < 120 else "%.0f min" % (seconds / 60)


def estimated_output_s(job: _Job) -> float:
    """A generous guess of the result's length before generating (TTS: ~0.1 s per character at normal speed),
    so that a request for an hour of audio is refused before it takes the memory. Which options lengthen it
    (a duration scale, pauses between sentences) each architecture's manifest says."""
    if job.decoded is not None:
        seconds = job.decoded.audio.shape[-1] / float(job.decoded.sample_rate)
    else:
        first = job.speak_first
        manifest, options = (first.manifest, first.options) if first is not None else (job.manifest, job.options)
        sentences = max(1, len(re.findall(r"[.!?;:]+", job.text)))
        seconds = 0.06 * len(job.text) * manifest.length_factor(options) + sentences * manifest.pause_s(options)
    if job.decoded is not None or job.speak_first is not None:  # the conversion's own duration option
        seconds *= job.manifest.length_factor(job.options)
    return float(seconds) / job.post.speed


def loudness_note(post: PostOptions, audio: np.ndarray, sample_rate: int, measured_lufs: Optional[float] = None) -> Dict[str, Any]:
    """The loudness the result reached; where it is not the target, why (a person asked for a number).
    ``measured_lufs``: what the loudness stage measured as it finished (else it is measured here)."""
    if post.loudness_lufs is None:
        return {}
    if audio.shape[-1] < LoudnessNormalize.MIN_SECONDS * sample_rate:
        return {"loudness": {"target_lufs": post.loudness_lufs, "reached_lufs": None,
                             "why": "too short to measure (under %.1f s): left as it was" % LoudnessNormalize.MIN_SECONDS}}
    reached = integrated_lufs(audio, sample_rate) if measured_lufs is None else measured_lufs
    note: Dict[str, Any] = {"target_lufs": post.loudness_lufs, "reached_lufs": round(reached, 2) if np.isfinite(reached) else None}
    if not np.isfinite(reached):
        note["why"] = "the result is silent"
    elif abs(reached - post.loudness_lufs) > 0.5:
        note["why"] = ("the true-peak ceiling of %.1f dBTP held it back: reaching the target would take more than %.0f dB of "
                       "limiting on the peaks" % (post.true_peak_db, LoudnessNormalize.MAX_LIMITING_DB))
    return {"loudness": note}


def _linked(existing: Path, new: Path) -> bool:
    """A second name for a file (same bytes on disk, each name removable on its own); False where links cannot be made."""
    try:
        os.link(existing, new)
    except OSError:
        return False
    return True


def output_formats() -> List[str]:
    return list(OUTPUT_FORMATS)


def _no_progress(fraction: Optional[float], message: str) -> None:
    pass


def _prefixed(progress: ProgressFn, prefix: str) -> ProgressFn:
    return lambda fraction, message: progress(fraction, prefix + message)


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
    cached: bool = False
    notes: Dict[str, Any] = field(default_factory=dict)
    """What the person should know about the result (e.g. a loudness target that could not be reached, and why)."""
    job_id: str = ""

    def info(self) -> Dict[str, Any]:
        return {
            **self.notes,
            "job_id": self.job_id,
            "architecture": self.architecture,
            "character": self.character,
            "sample_rate": self.sample_rate,
            "duration_s": round(self.duration_s, 3),
            "cold_start": self.cold,
            "cached": self.cached,
            "timings_s": {key: round(value, 4) for key, value in self.timings_s.items()},
            "file": self.path.name,
        }


@dataclass(frozen=True)
class _SpeakFirst:
    """Text to any voice: a TTS architecture speaks the text, then the conversion takes that speech."""

    manifest: Manifest
    character: Character
    options: Dict[str, Any]


@dataclass(frozen=True)
class _Job:
    manifest: Manifest
    character: Character
    text: str
    decoded: Optional[DecodedAudio]
    options: Dict[str, Any]
    output_format: str
    pre: PreOptions
    post: PostOptions
    speak_first: Optional[_SpeakFirst] = None
    use_cache: bool = True
    input_digest: Optional[str] = None
    """The decoded recording's content hash: the output cache key and the provenance both need it (hashed once)."""


@dataclass
class Workstation:
    """The app's core: architectures, characters, generation. One per app process."""

    settings: Settings
    specs: Dict[str, EnvSpec]
    manifests: Dict[str, Manifest]
    supervisor: Supervisor
    cache: AudioCache
    preset_store: PresetStore
    models: ModelManager
    access: Access = field(default_factory=Access)
    jobs: JobService = field(init=False)
    _hashes: FileHashes = field(default_factory=FileHashes)
    _descriptions: Dict[str, DescriptionMemo] = field(default_factory=dict)
    _memory_samples: Deque[Dict[str, Any]] = field(default_factory=lambda: collections.deque(maxlen=900))
    _closed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = JobStore(self.settings.jobs_database_url or sqlite_url(self.settings.data_dir / "jobs.sqlite3"))
        settings = self.settings
        inputs_dir = settings.data_dir / "jobs" / "inputs"
        quotas = OwnerQuotas(settings.max_queued_jobs_per_client, settings.max_kept_inputs_mb_per_client << 20)
        self.jobs = JobService(store, self, inputs_dir, settings.max_concurrent_jobs, settings.max_jobs_per_architecture,
                               settings.history_input_max_mb << 20, quotas)
        policy = RetentionPolicy(settings.outputs_keep, settings.outputs_max_mb << 20, settings.outputs_max_age_h * 3600,
                                 (settings.outputs_dir, inputs_dir))
        self._retention = RetentionLoop(store, policy, every_s=30.0)
        self._retention.start()

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
                "unavailable": self.unavailable_options(name, None),
            }
            for name, manifest in self.manifests.items()
        ]

    def _asset_files(self, name: str) -> List[Path]:
        path = self.settings.assets_dir / name
        return [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path] if path.is_file() else []

    def unavailable_options(self, architecture: str, character_id: Optional[str]) -> Dict[str, str]:
        """Options (``"name"``) and choices (``"name=value"``) that cannot be used now, with why: shared
        assets that are missing, and what the character's folder lacks (e.g. a cluster model)."""
        manifest = self.manifest(architecture)
        gaps = {option: "needs assets/%s, which is missing (%s)" % (asset.name, asset.source)
                for asset in manifest.assets if asset.needed_for and not self._asset_files(asset.name)
                for option in asset.needed_for.split(",")}
        if character_id:
            try:
                gaps.update(self.character(architecture, character_id).info.unavailable)
            except UserFacingError:
                pass  # an unknown character has no gaps of its own; generating with it says what is wrong
        return gaps

    def assets(self) -> List[Dict[str, Any]]:
        """Every architecture's shared assets: present or missing, and their size on disk."""
        rows = []
        for name, manifest in self.manifests.items():
            for asset in manifest.assets:
                files = self._asset_files(asset.name)
                rows.append({
                    "architecture": name, "asset": asset.name, "what": asset.label, "present": bool(files),
                    "size_mb": round(sum(p.stat().st_size for p in files) / (1 << 20), 1),
                    "needed_for": asset.needed_for or "every job", "get_it_from": asset.source,
                })
        return rows

    def manifest(self, architecture: str) -> Manifest:
        try:
            return self.manifests[architecture]
        except KeyError:
            raise UserFacingError(
                "unknown architecture %r (available: %s)" % (architecture, ", ".join(self.manifests) or "none")
            ) from None

    def characters(self, architecture: str) -> List[Character]:
        manifest = self.manifest(architecture)
        memo = self._descriptions.get(architecture)
        if memo is None:
            memo = self._descriptions[architecture] = DescriptionMemo(adapter_class(self.specs[architecture]).describe)
        return list_characters(manifest, self.settings.characters_dir, memo)

    def character(self, architecture: str, character_id: str) -> Character:
        characters = self.characters(architecture)
        for character in characters:
            if character.id == character_id or character.label == character_id:
                return character
        raise UserFacingError(
            "unknown character %r for %s (available: %s)"
            % (character_id, architecture, ", ".join(c.id for c in characters) or "none")
        )

    # generation: every request is a job (app.jobs: stored, scheduled fairly, recoverable)
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
        preprocess: Optional[Dict[str, Any]] = None,
        postprocess: Optional[Dict[str, Any]] = None,
        use_cache: bool = True,
        speak_with: Optional[Dict[str, Any]] = None,
        owner: Optional[str] = None,
        client: Optional[str] = None,
    ) -> Generation:
        """Submit a job and wait for it. ``speak_with`` ({"architecture", "character", "options"}): for a
        conversion architecture given text and no recording, the TTS that speaks the text first (default: the
        default architecture). ``owner``: whose history it joins (default: the session)."""
        spec = JobSpec(architecture, character_id, text or "", audio_path, dict(options or {}), output_format, preprocess, postprocess,
                       bool(use_cache), speak_with)
        return self.wait(self.submit(spec, session if owner is None else owner, session, client=client), progress)

    def submit(self, spec: JobSpec, owner: str, session: str = "", batch_id: Optional[str] = None, client: Optional[str] = None) -> str:
        """Validate and queue a job; its id at once (a mistake in the request is raised here, not recorded). ``client``:
        the stable identity its quotas and turn count against (``app.identity``)."""
        try:
            return self.jobs.submit(spec, owner, session, batch_id, client=client)
        except JobError as exc:
            raise UserFacingError(str(exc)) from None

    def wait(self, job_id: str, progress: ProgressFn = _no_progress) -> Generation:
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
        return Generation(Path(row["output_path"]), row["architecture"], row["character"], row["text"], int(row["sample_rate"] or 0),
                          float(row["duration_s"] or 0.0), False, dict(row["timings"] or {}), bool(row["cached"]), job_id=job_id)

    def cancel(self, session: str) -> int:
        """Cancel the queued and running jobs of one session (a browser tab, or one gradio_client); returns how many."""
        return self.jobs.cancel_session(session)

    # the job runner (jobs.service.Runner)
    def prepare(self, spec: JobSpec) -> _Job:
        return self._prepare(spec.architecture, spec.character, spec.text, spec.audio_path, spec.options, spec.output_format,
                             spec.preprocess, spec.postprocess, spec.speak_with, spec.use_cache)

    def execute(self, prepared: Any, job_id: str, progress: ProgressFn, cancel: threading.Event,
                client: str = "") -> Tuple[Generation, Dict[str, Any]]:
        job: _Job = prepared
        generation = replace(self._run(job, progress, cancel, job_id, client), job_id=job_id)
        master = generation.path.with_suffix(".master.flac")
        columns = {
            "output_path": str(generation.path), "master_path": str(master) if master.is_file() else None,
            "output_bytes": generation.path.stat().st_size + (master.stat().st_size if master.is_file() else 0),
            "sample_rate": generation.sample_rate, "duration_s": generation.duration_s, "cached": generation.cached,
            "timings": {key: round(value, 4) for key, value in generation.timings_s.items()},
            "provenance": self.provenance(job),
        }
        return generation, columns

    def message_for(self, exc: BaseException) -> str:
        if isinstance(exc, (UserFacingError, JobError)):
            return redact(str(exc))
        return unexpected(exc, "a job", logger)

    def _prepare(
        self,
        architecture: str,
        character_id: str,
        text: str,
        audio_path: Optional[str],
        options: Optional[Dict[str, Any]],
        output_format: str,
        preprocess: Optional[Dict[str, Any]],
        postprocess: Optional[Dict[str, Any]],
        speak_with: Optional[Dict[str, Any]] = None,
        use_cache: bool = True,
    ) -> _Job:
        """Validate everything a person gave, before any work is done."""
        manifest = self.manifest(architecture)
        character = self.character(architecture, character_id)
        if not character.info.usable:
            raise UserFacingError("the %s character %r cannot be used: %s" % (manifest.display_name, character.id, character.info.problem))
        text = CONTROL_CHARACTERS.sub("", text or "").strip()  # NUL and friends break libraries and mean nothing spoken
        if output_format not in OUTPUT_FORMATS:
            raise UserFacingError("unknown output format %r (choose one of %s)" % (output_format, ", ".join(OUTPUT_FORMATS)))
        speak_first = self._speak_first(speak_with) if manifest.needs_audio and not audio_path and text else None
        if manifest.needs_text and not text:
            raise UserFacingError("%s needs text: type what it should say" % manifest.display_name)
        if text and speak_first is None and not manifest.needs_text and "tts" not in manifest.capabilities:
            raise UserFacingError(
                "%s converts recordings: give a recording, or only text (it is then spoken first), not both" % manifest.display_name
            )
        if len(text) > self.settings.max_text_chars:
            raise UserFacingError("the text is %d characters long; the limit is %d" % (len(text), self.settings.max_text_chars))
        if manifest.needs_audio and not audio_path and speak_first is None:
            raise UserFacingError("%s needs input audio: upload or record a recording, or type text to speak first"
                                  % manifest.display_name)
        try:
            # the character's saved defaults under what this request says
            resolved = manifest.resolve_options({**self.character_defaults(architecture, character.id), **(options or {})})
            pre = PreOptions.from_dict(preprocess)
            post = PostOptions.from_dict(postprocess)
        except ValueError as exc:  # StageConfigError is a ValueError too
            raise UserFacingError(str(exc)) from exc
        if post.sample_rate_hz and post.sample_rate_hz > self.settings.max_output_rate_hz:
            raise UserFacingError("an output rate of %d Hz is above this server's limit of %d Hz"
                                  % (post.sample_rate_hz, self.settings.max_output_rate_hz))
        decoded = self.decode_input(Path(audio_path)) if audio_path and manifest.needs_audio else None
        job = _Job(manifest, character, text, decoded, resolved, output_format, pre, post, speak_first, use_cache,
                   audio_digest(decoded.audio, decoded.sample_rate) if decoded is not None else None)
        estimate_s = estimated_output_s(job)
        if estimate_s > self.settings.max_output_s:
            raise UserFacingError("the result would be about %s long; this server's limit is %s: shorten the text, or raise "
                                  "the speed" % (minutes(estimate_s), minutes(self.settings.max_output_s)))
        return job

    def decode_input(self, path: Path) -> DecodedAudio:
        """The one decoder of a person's recording, on every path: the limits checked on its header first, then decoded,
        then checked for a usable length."""
        self._check_header(path)
        try:
            decoded = decode(path)
        except PipelineError as exc:
            raise UserFacingError(str(exc)) from exc
        if decoded.audio.shape[-1] < MIN_INPUT_S * decoded.sample_rate:
            raise UserFacingError("the recording is too short (%d samples, %.3f s): give at least %.1f s"
                                  % (decoded.audio.shape[-1], decoded.audio.shape[-1] / decoded.sample_rate, MIN_INPUT_S))
        return decoded

    def _check_header(self, path: Path) -> None:
        """Refuse what is too long or too wide from the header alone: decoding it first is what would hurt."""
        header = probe(path)
        if header is None:
            return  # decode names the problem
        if header.duration_s > self.settings.max_input_s:
            raise UserFacingError("the recording is %s long; this server takes up to %s" % (minutes(header.duration_s),
                                                                                           minutes(self.settings.max_input_s)))
        if header.channels > self.settings.max_input_channels:
            raise UserFacingError("the recording has %d channels; up to %d are taken" % (header.channels, self.settings.max_input_channels))

    def _speak_first(self, speak_with: Optional[Dict[str, Any]]) -> _SpeakFirst:
        given = dict(speak_with or {})
        unknown = sorted(set(given) - {"architecture", "character", "options"})
        if unknown:
            raise UserFacingError("speak_with takes architecture, character and options, not %s" % ", ".join(unknown))
        architecture = str(given.get("architecture") or self.settings.default_architecture)
        manifest = self.manifest(architecture)
        if "tts" not in manifest.capabilities:
            raise UserFacingError("%s cannot speak text first: choose a text-to-speech architecture" % manifest.display_name)
        characters = self.characters(architecture)
        character = self.character(architecture, str(given["character"])) if given.get("character") else characters[0]
        try:
            options = manifest.resolve_options(given.get("options") or {})
        except ValueError as exc:
            raise UserFacingError("speak_with: %s" % exc) from exc
        return _SpeakFirst(manifest, character, options)

    def _from_cache(self, job: _Job, hit: Tuple[bytes, Dict[str, Any]], path: Path, client: str) -> Generation:
        """An identical earlier result, as this job's own file (a hard link to the earlier one: one stored copy; a new
        file where linking cannot be done), with its lossless master likewise. ``cached`` is said only to the client
        that asked before: nobody learns from it what someone else asked."""
        data, info = hit
        earlier = Path(str(info.get("path", "")))
        if not (info.get("path") and earlier.is_file() and earlier.stat().st_size == len(data) and _linked(earlier, path)):
            path.write_bytes(data)
        earlier_master = earlier.with_suffix(".master.flac")
        if earlier_master.is_file():
            _linked(earlier_master, path.with_suffix(".master.flac"))
        same_client = bool(client) and info.get("client") == client
        return Generation(path, job.manifest.architecture, job.character.id, job.text, int(info["sample_rate"]),
                          float(info["duration_s"]), False, {"total_s": 0.0}, cached=same_client)

    def _run(self, job: _Job, progress: ProgressFn, cancel: threading.Event, job_id: str, client: str = "") -> Generation:
        manifest, character = job.manifest, job.character
        output_key = key_of(
            "output",
            manifest.architecture,
            character.id,
            self.model_fingerprint(manifest.architecture, character),
            job.text,
            job.input_digest,
            job.options,
            job.pre.to_dict() if job.decoded or job.speak_first else None,
            job.post.to_dict(),
            job.output_format,
            self._speak_first_key(job.speak_first),
        )
        target = self._output_path(manifest.architecture, character.id, job_id)
        if job.use_cache:
            hit = self.cache.get_output(output_key)
            if hit is not None:
                return self._from_cache(job, hit, target.with_suffix(OUTPUT_FORMATS[job.output_format][2]), client)

        speak_s = 0.0
        source = (job.decoded.audio, job.decoded.sample_rate) if job.decoded is not None else None
        if job.speak_first is not None:
            first = job.speak_first
            started = time.perf_counter()
            spoken = self._run_on_worker(
                first.manifest,
                JobRequest(architecture=first.manifest.architecture, character=first.character.id,
                           character_path=first.character.model_path, text=job.text, options=first.options),
                lambda fraction, message: progress(None, "1/2 speaking (%s): %s" % (first.character.id, message)),
                cancel,
            )
            source = (spoken.audio, spoken.sample_rate)
            speak_s = time.perf_counter() - started
            progress = _prefixed(progress, "2/2 converting: ")
        started = time.perf_counter()
        audio: Optional[np.ndarray] = None
        audio_rate: Optional[int] = None
        if source is not None:
            progress(None, "preprocessing the input audio")
            target_hz = manifest.input_sample_rate or source[1]
            try:
                audio, audio_rate = self.cache.apply(job.pre.chain(target_hz), source[0], source[1])
            except PipelineError as exc:
                raise UserFacingError(str(exc)) from exc
        pre_s = time.perf_counter() - started

        request = JobRequest(
            architecture=manifest.architecture,
            character=character.id,
            character_path=character.model_path,
            text="" if job.speak_first else job.text,
            audio=audio,
            audio_sample_rate=audio_rate,
            options=job.options,
        )
        result = self._run_on_worker(manifest, request, progress, cancel)
        result_s = result.audio.shape[-1] / float(result.sample_rate) / job.post.speed
        if result_s > self.settings.max_output_s:
            raise UserFacingError("the result is %s long; this server's limit is %s"
                                  % (minutes(result_s), minutes(self.settings.max_output_s)))
        if job.speak_first is not None:
            result = replace(result, timings_s=dict(result.timings_s, speak_s=speak_s))

        progress(None, "post-processing")
        started = time.perf_counter()
        tags = {
            "title": job.text[:120] or "conversion",
            "artist": character.label,
            "album": manifest.display_name,
            "comment": "architecture: %s; character: %s" % (manifest.architecture, character.id),
            "software": "voice workstation",
        }
        try:
            # not through the stage cache: a new take is new audio (it would only miss and write); the output cache
            # answers repeats
            chain = job.post.chain()
            out_audio, out_rate = chain.apply(result.audio, result.sample_rate)
            post_s = time.perf_counter() - started
            path = encode(out_audio, out_rate, target, job.output_format, tags)
            if job.output_format not in LOSSLESS_FORMATS:  # exports are re-encoded from a lossless master, not from mp3
                encode(out_audio, out_rate, target.with_suffix(".master.flac"), "flac24", tags)
        except PipelineError as exc:
            raise UserFacingError(str(exc)) from exc
        timings = dict(result.timings_s, pre_s=pre_s, post_s=post_s, encode_s=time.perf_counter() - started - post_s)
        duration_s = out_audio.shape[-1] / float(out_rate)
        stage = next((s for s in chain.stages if isinstance(s, LoudnessNormalize)), None)
        notes = loudness_note(job.post, out_audio, out_rate, stage.reached_lufs if stage is not None else None)
        written_rate = output_sample_rate(job.output_format, out_rate)  # Opus may be resampled on the way out
        try:  # the result is made and written: a cache that cannot take it must not fail the job
            self.cache.put_output(output_key, path.read_bytes(), {"sample_rate": written_rate, "duration_s": duration_s,
                                                                  "path": str(path), "client": client})
        except Exception:
            logger.exception("could not keep job %s's result in the output cache", job_id)
        return Generation(path, manifest.architecture, character.id, job.text, written_rate, duration_s, result.cold, timings,
                          notes=notes)

    def _run_on_worker(self, manifest: Manifest, request: JobRequest, progress: ProgressFn, cancel: threading.Event) -> JobResult:
        try:
            return self.supervisor.generate(request, progress=progress, cancel=cancel)
        except BadRequestError as exc:
            raise UserFacingError(exc.message) from exc
        except RemoteError as exc:  # an unexpected failure inside the model code: the details are for the log
            error_id = new_error_id()
            logger.error("error %s: %s failed in its worker: %s: %s", error_id, manifest.display_name, exc.error_type, exc.message)
            first_line = (exc.message.splitlines() or [""])[0][:200]
            raise UserFacingError("%s failed: %s (error id %s; the details are in the server log)"
                                  % (manifest.display_name, first_line or "an error in the model code", error_id)) from exc
        except JobCancelledError as exc:
            raise UserFacingError("the job was cancelled") from exc
        except (WorkerCrashedError, WorkerBootError, JobTimeoutError, EnvironmentBuildError, ArchitectureUnavailableError) as exc:
            raise UserFacingError(str(exc)) from exc
        except RuntimeLayerError as exc:
            raise UserFacingError("%s: %s" % (manifest.display_name, exc)) from exc

    def _speak_first_key(self, first: Optional[_SpeakFirst]) -> Optional[str]:
        if first is None:
            return None
        fingerprint = self.model_fingerprint(first.manifest.architecture, first.character)
        return key_of(first.manifest.architecture, first.character.id, fingerprint, first.options)

    def _file_sha256(self, path: Path) -> str:
        """sha256 of a model file, remembered by (path, size, mtime) in a bounded memo: a 500 MB checkpoint is hashed once."""
        return self._hashes(path)

    def _model_files(self, architecture: str, character: Character) -> Dict[str, str]:
        if character.path is None:  # a builtin voice: what pins it is the env's spec (e.g. the wheel's version)
            return {"builtin:%s" % character.id: self.model_fingerprint(architecture, character)}
        root = character.path
        return {str(p.relative_to(root)): self._file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}

    def provenance(self, job: _Job) -> Dict[str, Any]:
        """Exactly how a result was made: model files (sha256), options, processing, versions."""
        record: Dict[str, Any] = {
            "architecture": job.manifest.architecture, "character": job.character.id,
            "model_files": self._model_files(job.manifest.architecture, job.character),
            "options": job.options, "preprocess": job.pre.to_dict() if job.decoded is not None or job.speak_first else None,
            "postprocess": job.post.to_dict(), "output_format": job.output_format,
            "input_sha256": job.input_digest,
            "seed": job.options.get("seed"),
            "app_version": app_version(), "adapter_version": job.manifest.version,
            "env": {job.manifest.architecture: self.env_version(job.manifest.architecture)},
        }
        if job.speak_first is not None:
            first = job.speak_first
            record["spoken_first_by"] = {
                "architecture": first.manifest.architecture, "character": first.character.id,
                "options": first.options, "model_files": self._model_files(first.manifest.architecture, first.character)}
            record["env"][first.manifest.architecture] = self.env_version(first.manifest.architecture)
        return record

    def env_version(self, architecture: str) -> str:
        """The hash of the env's spec and pinned requirements (what the launcher rebuilds on)."""
        return self._spec_fingerprint(architecture)[:16]

    def _spec_fingerprint(self, architecture: str) -> str:
        folder = self.specs[architecture].folder
        return key_of([(p.name, p.read_bytes().decode("utf-8", "replace")) for p in sorted(folder.glob("*")) if p.is_file()])

    def model_fingerprint(self, architecture: str, character: Character) -> str:
        """What identifies the model's files: the pinned env spec for builtin voices, else the folder's files."""
        if character.path is None:
            return self._spec_fingerprint(architecture)
        return key_of(files_signature(character.path))  # the same key as the list of (path, size, mtime) it was

    # preprocessing preview and presets
    def preview_preprocess(self, architecture: str, audio_path: Optional[str], preprocess: Optional[Dict[str, Any]]) -> Path:
        """What the model would get from this recording, as a WAV a person can listen to."""
        manifest = self.manifest(architecture)
        if not audio_path:
            raise UserFacingError("upload or record audio to preview its preprocessing")
        decoded = self.decode_input(Path(audio_path))
        try:
            pre = PreOptions.from_dict(preprocess)
            target_hz = manifest.input_sample_rate or decoded.sample_rate
            audio, rate = self.cache.apply(pre.chain(target_hz), decoded.audio, decoded.sample_rate)
            folder = self.settings.outputs_dir / "previews"
            folder.mkdir(parents=True, exist_ok=True)
            return encode(audio, rate, folder / ("preview-%s.wav" % datetime.now().strftime("%H%M%S-%f")), "wav")
        except (PipelineError, ValueError) as exc:
            raise UserFacingError(str(exc)) from exc

    def _defaults_path(self, architecture: str, character_id: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._ -]", "_", character_id).strip(". ") or "_"
        return self.settings.presets_dir / "characters" / architecture / (safe + ".json")

    def character_defaults(self, architecture: str, character_id: str) -> Dict[str, Any]:
        """Options saved for this character (e.g. an RVC voice's pitch shift); the manifest's defaults for the rest."""
        try:
            saved = json.loads(self._defaults_path(architecture, character_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        known = {option.name for option in self.manifest(architecture).options}
        return {name: value for name, value in saved.items() if name in known} if isinstance(saved, dict) else {}

    def save_character_defaults(self, architecture: str, character_id: str, options: Optional[Dict[str, Any]]) -> str:
        manifest = self.manifest(architecture)
        character = self.character(architecture, character_id)
        try:
            resolved = manifest.resolve_options(options or {})
        except ValueError as exc:
            raise UserFacingError(str(exc)) from exc
        changed = {option.name: resolved[option.name] for option in manifest.options if resolved[option.name] != option.default}
        write_text_atomic(self._defaults_path(architecture, character.id), json.dumps(changed, indent=1))  # never torn
        return "saved %d option(s) as %s / %s's defaults" % (len(changed), architecture, character.id)

    def default_processing(self) -> Dict[str, Dict[str, Any]]:
        return {"preprocess": PreOptions().to_dict(), "postprocess": PostOptions().to_dict()}

    def presets(self) -> List[str]:
        return self.preset_store.names()

    def save_preset(self, name: str, preprocess: Optional[Dict[str, Any]], postprocess: Optional[Dict[str, Any]]) -> str:
        try:
            self.preset_store.save(name, PreOptions.from_dict(preprocess), PostOptions.from_dict(postprocess))
        except ValueError as exc:
            raise UserFacingError(str(exc)) from exc
        return "saved preset %r" % name

    def load_preset(self, name: str) -> Dict[str, Dict[str, Any]]:
        try:
            pre, post = self.preset_store.load(name)
        except ValueError as exc:
            raise UserFacingError(str(exc)) from exc
        return {"preprocess": pre.to_dict(), "postprocess": post.to_dict()}

    def _output_path(self, architecture: str, character_id: str, job_id: str) -> Path:
        """Named by time, voice and the job's random id: a file of another session cannot be fetched by guessing."""
        folder = self.settings.outputs_dir / datetime.now().strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", character_id)[:40]
        stamp = datetime.now().strftime("%H%M%S")
        return folder / ("%s-%s-%s-%s.wav" % (stamp, architecture, slug, job_id or uuid.uuid4().hex))

    def _configured_pairs(self, text: str) -> List[Tuple[str, str]]:
        pairs = []
        for item in (part.strip() for part in text.split(",")):
            architecture, sep, character = item.partition(":")
            if not sep or not architecture or not character:
                raise UserFacingError("%r is not architecture:character" % item)
            pairs.append((architecture, character))
        return pairs

    def prewarm_configured(self) -> None:
        """Start the workers named by the ``prewarm`` setting (failures are only logged: the app still starts)."""
        setting = self.settings.prewarm.strip()
        if setting == "default":
            characters = self.characters(self.settings.default_architecture) if self.settings.default_architecture in self.manifests else []
            pairs = [(self.settings.default_architecture, characters[0].id)] if characters else []
        else:
            pairs = self._configured_pairs(setting) if setting else []
        for architecture, character in pairs:
            try:
                self.prewarm(architecture, character)
            except UserFacingError as exc:
                logger.warning("could not prewarm %s:%s: %s", architecture, character, exc)

    def pin_configured(self) -> None:
        if self.settings.pinned.strip():
            for architecture, character in self._configured_pairs(self.settings.pinned):
                self.pin(architecture, character, True)

    def runtime_status(self, username: Optional[str] = None) -> List[Dict[str, Any]]:
        """The full status for the operator; for anyone else on a shared server which models are warm and
        how long the lines are (no pids, paths or log tails)."""
        rows = self.supervisor.status()
        if self.access.is_admin(username):
            return rows
        return [{"architecture": row["architecture"], "characters": row["characters"], "state": row["state"],
                 "jobs_in_line": row["jobs_in_line"]} for row in rows if row.get("pid")]

    def sample_memory(self) -> None:
        """One reading of each live worker's memory, for the Runtimes tab's plot (the last 30 minutes)."""
        now = time.time()
        for row in self.supervisor.status():
            if row.get("pid"):
                self._memory_samples.append({"time": datetime.fromtimestamp(now).strftime("%H:%M:%S"), "worker": row["name"],
                                             "memory_mb": float(row.get("memory_mb") or 0.0)})

    def start_memory_sampler(self, interval_s: float = 2.0) -> None:
        def run() -> None:
            while not self._closed.wait(interval_s):
                try:
                    self.sample_memory()
                except Exception:  # a thread boundary: a failed reading must not end the sampling
                    logger.exception("memory sampling failed")

        threading.Thread(target=run, name="memory-sampler", daemon=True).start()

    def memory_history(self) -> List[Dict[str, Any]]:
        return list(self._memory_samples)

    def memory_note(self) -> str:
        return self.supervisor.memory_note()

    def prewarm(self, architecture: str, character_id: str) -> str:
        """Start (or retry) a character's worker now."""
        character = self.character(architecture, character_id)
        try:
            self.supervisor.prewarm(architecture, character.id, character.model_path)
        except RemoteError as exc:
            raise UserFacingError("%s could not load %s: %s" % (architecture, character.id, exc.message)) from exc
        except RuntimeLayerError as exc:
            raise UserFacingError(str(exc)) from exc
        return "%s / %s is warm" % (architecture, character.id)

    def pin(self, architecture: str, character_id: str, pinned: bool) -> str:
        character = self.character(architecture, character_id)
        self.supervisor.pin(architecture, character.id, character.model_path, pinned)
        return "%s / %s %s" % (architecture, character_id, "pinned: never unloaded" if pinned else "unpinned")

    def set_keep_alive(self, architecture: str, character_id: str, keep_alive_s: Optional[float]) -> str:
        """Idle seconds before this character is unloaded (its worker stops when it holds nothing else):
        -1 forever, 0 right after each job, None the default."""
        if keep_alive_s is not None and keep_alive_s < 0 and keep_alive_s != -1:
            raise UserFacingError("keep-alive is seconds >= 0, or -1 for forever, got %g" % keep_alive_s)
        character = self.character(architecture, character_id)
        self.supervisor.set_keep_alive(architecture, character.id, character.model_path, keep_alive_s)
        shown = "the default" if keep_alive_s is None else "forever" if keep_alive_s < 0 else "%g s" % keep_alive_s
        return "%s / %s keep-alive: %s" % (architecture, character_id, shown)

    def stop_worker(self, name: str) -> str:
        if not self.supervisor.stop(name):
            raise UserFacingError("no running worker named %r" % name)
        return "stopped %s" % name

    def unload(self, architecture: str, character_id: str) -> str:
        """Free one character's memory; its worker keeps serving the others."""
        character = self.character(architecture, character_id)
        try:
            unloaded = self.supervisor.unload(architecture, character.id, character.model_path)
        except RuntimeLayerError as exc:
            raise UserFacingError(str(exc)) from exc
        if not unloaded:
            raise UserFacingError("%s / %s is not loaded" % (architecture, character.id))
        return "%s / %s unloaded" % (architecture, character.id)

    def close(self) -> None:
        self._closed.set()
        self._retention.stop()
        self.jobs.close()
        self.models.close()
        self.supervisor.shutdown()
        self.cache.close()
