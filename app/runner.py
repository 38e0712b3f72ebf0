"""The runner: one prepared job through the output cache, pre-processing, its worker(s), post-processing and encoding,
to a typed result. ``JobServiceRunner`` is what the job service calls (prepare, execute, message_for)."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from app.covers import CoverMaker, StemCache
from app.errors import UserFacingError
from app.generation import Generation, ProgressFn, minutes, prefixed
from app.keeping import kept
from app.live import LiveTake, LiveTakes
from app.loaded_versions import LoadedVersions
from app.provenance import Provenance
from app.public_errors import for_person, new_error_id
from app.request_checks import PreparedJob, RequestChecks
from app.settings import Settings
from app.tracing import stage_began
from jobs.artifacts import ArtifactStore, local_path
from jobs.errors import MissingArtifactError
from jobs.output import JobOutput
from jobs.spec import JobSpec
from pipeline.audio_io import OUTPUT_FORMATS, encode, output_sample_rate
from pipeline.cache import AudioCache, key_of
from pipeline.errors import PipelineError
from pipeline.processing import PostOptions
from pipeline.stages import Chain, LoudnessNormalize, integrated_lufs
from pipeline.streaming import StreamingPost
from runtimes.conversation import ChunkFn
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
from runtimes.supervisor import JobRequest, JobResult, Supervisor

logger = logging.getLogger(__name__)
LOSSLESS_FORMATS = ("wav", "wav24", "wav-float", "flac", "flac24")
AUDIO = Tuple[np.ndarray, int]


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


def _master_key(key: str) -> str:
    return key.rsplit(".", 1)[0] + ".master.flac"


def _tags(job: PreparedJob) -> Dict[str, str]:
    return {"title": job.text[:120] or "conversion", "artist": job.character.label, "album": job.manifest.display_name,
            "comment": "architecture: %s; character: %s" % (job.manifest.architecture, job.character.id),
            "software": "voice workstation"}


class Streamed:
    """A job's take as it streams: each piece from the worker post-processed on the stream (``pipeline.streaming``) and
    published to the job's live take; what went out, joined, is the take that is stored."""

    def __init__(self, post: PostOptions, take: LiveTake) -> None:
        self.post, self.take = post, take
        self.processing: Optional[StreamingPost] = None
        self.sent: List[np.ndarray] = []

    def piece(self, audio: np.ndarray, sample_rate: int) -> None:
        if self.processing is None:
            self.processing = StreamingPost(self.post, sample_rate)
            self.take.start(self.processing.plan.to_dict())
        self._send(self.processing.push(audio))

    def finish(self) -> Tuple[np.ndarray, int]:
        assert self.processing is not None, "a streamed take with no pieces"
        self._send(self.processing.finish())
        audio = np.concatenate(self.sent) if self.sent else np.zeros(0, dtype=np.float32)
        return audio, self.processing.out_rate

    def _send(self, audio: np.ndarray) -> None:
        if audio.size:
            assert self.processing is not None
            self.sent.append(audio)
            self.take.publish(audio, self.processing.out_rate)


class JobRunner:
    def __init__(self, settings: Settings, supervisor: Supervisor, cache: AudioCache, provenance: Provenance,
                 artifacts: ArtifactStore, live: Optional[LiveTakes] = None) -> None:
        self.settings, self.supervisor, self.cache, self.provenance = settings, supervisor, cache, provenance
        self.artifacts = artifacts
        """Where results are kept, by key (``outputs/<day>/<name>``)."""
        self.live = live if live is not None else LiveTakes()
        """Takes being made, for the jobs that stream."""
        self.versions = LoadedVersions(supervisor.unload)
        """A character whose files changed since its last job is unloaded first (a warm worker keeps them by folder)."""
        self.covers = CoverMaker(StemCache(artifacts, settings.temp_dir, settings.stems_max_mb << 20), self.on_worker)

    def run(self, job: PreparedJob, job_id: str, progress: ProgressFn, cancel: threading.Event, client: str = "") -> Generation:
        if not job.stream:
            return self._run(job, job_id, progress, cancel, client, None)
        take = self.live.open(job_id)
        try:
            generation = self._run(job, job_id, progress, cancel, client, Streamed(job.post, take))
        except BaseException as exc:
            take.end(error=exc)
            raise
        take.end(outcome=generation)
        return generation

    def _run(self, job: PreparedJob, job_id: str, progress: ProgressFn, cancel: threading.Event, client: str,
             streamed: Optional[Streamed]) -> Generation:
        manifest, character = job.manifest, job.character
        output_key = key_of(
            "output", manifest.architecture, character.id, self.provenance.model_fingerprint(manifest.architecture, character),
            job.text, job.input_digest, job.options, job.pre.to_dict() if job.decoded or job.speak_first else None,
            job.post.to_dict(), job.output_format, self.provenance.speak_first_key(job.speak_first),
            *(["streamed"] if streamed is not None else []),  # post-processing on a stream is not the batch chain's
            *([job.cover.key()] if job.cover is not None else []),
        )
        target = self.output_key(manifest.architecture, character.id, job_id)
        if job.use_cache and job.cover is None:  # a cover's stems are kept (and reused) on their own; its notes are not cached
            hit = self.cache.get_output(output_key)
            cached = self._from_cache(job, hit, target.rsplit(".", 1)[0] + OUTPUT_FORMATS[job.output_format][2], client) if hit else None
            if cached is not None:
                return cached
        if job.cover is not None:
            return self._cover(job, job_id, progress, cancel, target, output_key, client)
        source, speak_s, progress = self._source(job, progress, cancel)
        started = time.perf_counter()
        stage_began(job_id, "pre")  # wall-clock starts for the job's trace (nothing unless a traced request submitted it)
        audio, audio_rate = self._preprocessed(job, source, progress) if source is not None else job.reference_audio()
        pre_s = time.perf_counter() - started
        request = JobRequest(architecture=manifest.architecture, character=character.id, character_path=character.model_path,
                             text="" if job.speak_first else job.text, audio=audio, audio_sample_rate=audio_rate, options=job.options)
        stage_began(job_id, "worker")
        result = self.on_worker(manifest, request, progress, cancel, streamed.piece if streamed is not None else None)
        stage_began(job_id, "worker_end")
        result_s = result.audio.shape[-1] / float(result.sample_rate) / job.post.speed
        if result_s > self.settings.max_output_s:
            raise UserFacingError("the result is %s long; this server's limit is %s"
                                  % (minutes(result_s), minutes(self.settings.max_output_s)))
        if job.speak_first is not None:
            result = replace(result, timings_s=dict(result.timings_s, speak_s=speak_s))
        return self._finished(job, job_id, result, pre_s, target, output_key, client, progress, streamed)

    def _cover(self, job: PreparedJob, job_id: str, progress: ProgressFn, cancel: threading.Event, target: str, output_key: str,
               client: str) -> Generation:
        """A song cover: its own three stages (``app.covers``); the mix is the take, kept as made (no post chain: the remix
        already matched the song's loudness, and trimming would change the song's length)."""
        assert job.cover is not None and job.decoded is not None and job.input_digest is not None
        stage_began(job_id, "worker")
        mix, notes, timings = self.covers.make(job.cover, job.manifest, job.character, job.options, job.decoded.audio,
                                               job.decoded.sample_rate, job.input_digest, job_id, progress, cancel)
        stage_began(job_id, "worker_end")
        result = JobResult(audio=mix, sample_rate=job.decoded.sample_rate, cold=False, timings_s=timings)
        return self._finished(job, job_id, result, 0.0, target, output_key, client, progress, None, notes)

    def _source(self, job: PreparedJob, progress: ProgressFn, cancel: threading.Event) -> Tuple[Optional[AUDIO], float, ProgressFn]:
        """The audio a conversion starts from: the person's recording, or the text spoken first by a TTS voice."""
        if job.speak_first is None:
            return ((job.decoded.audio, job.decoded.sample_rate) if job.decoded is not None else None), 0.0, progress
        first = job.speak_first
        started = time.perf_counter()
        spoken = self.on_worker(
            first.manifest,
            JobRequest(architecture=first.manifest.architecture, character=first.character.id,
                       character_path=first.character.model_path, text=job.text, options=first.options),
            lambda fraction, message: progress(None, "1/2 speaking (%s): %s" % (first.character.id, message)),
            cancel,
        )
        return (spoken.audio, spoken.sample_rate), time.perf_counter() - started, prefixed(progress, "2/2 converting: ")

    def _preprocessed(self, job: PreparedJob, source: AUDIO, progress: ProgressFn) -> Tuple[np.ndarray, int]:
        progress(None, "preprocessing the input audio")
        try:
            return self.cache.apply(job.pre.chain(job.manifest.input_sample_rate or source[1]), source[0], source[1])
        except PipelineError as exc:
            raise UserFacingError(str(exc)) from exc

    def _finished(self, job: PreparedJob, job_id: str, result: JobResult, pre_s: float, target: str, output_key: str, client: str,
                  progress: ProgressFn, streamed: Optional[Streamed] = None, notes: Optional[Dict[str, Any]] = None) -> Generation:
        progress(None, "post-processing")
        started = time.perf_counter()
        stage_began(job_id, "post")
        notes = dict(notes or {})
        if result.details:
            notes["worker"] = dict(result.details)
        try:
            # not through the stage cache: a new take is new audio (it would only miss and write); the output cache answers repeats
            chain = job.post.chain() if job.cover is None else Chain([])
            if streamed is not None:  # post-processed piece by piece as it streamed: what went out is the take
                out_audio, out_rate = streamed.finish()
                assert streamed.processing is not None
                notes["streamed"] = streamed.processing.plan.to_dict()
            else:
                out_audio, out_rate = chain.apply(result.audio, result.sample_rate)
            post_s = time.perf_counter() - started
            path = self._stored(out_audio, out_rate, target, job.output_format, _tags(job))
            if job.output_format not in LOSSLESS_FORMATS:  # exports are re-encoded from a lossless master, not from mp3
                self._stored(out_audio, out_rate, _master_key(target), "flac24", _tags(job))
        except PipelineError as exc:
            raise UserFacingError(str(exc)) from exc
        timings = dict(result.timings_s, pre_s=pre_s, post_s=post_s, encode_s=time.perf_counter() - started - post_s)
        duration_s = out_audio.shape[-1] / float(out_rate)
        stage = next((s for s in chain.stages if isinstance(s, LoudnessNormalize)), None) if streamed is None else None
        if job.cover is None:
            notes.update(loudness_note(job.post, out_audio, out_rate, stage.reached_lufs if stage is not None else None))
        written_rate = output_sample_rate(job.output_format, out_rate)  # Opus may be resampled on the way out
        try:  # the result is made and written: a cache that cannot take it must not fail the job
            # the entry names the stored result (one copy: the artifact store's), not its bytes; a cover's is never read
            if job.cover is None:
                self.cache.put_output(output_key, b"", {"sample_rate": written_rate, "duration_s": duration_s,
                                                        "key": self.artifacts.key_of(path), "client": client, "timings_s": timings})
        except Exception:
            logger.exception("could not keep job %s's result in the output cache", job_id)
        return Generation(path, job.manifest.architecture, job.character.id, job.text, written_rate, duration_s, result.cold, timings,
                          notes=notes)

    def _stored(self, audio: np.ndarray, sample_rate: int, key: str, output_format: str, tags: Dict[str, str]) -> Path:
        """Encode, keep it in the artifact store under ``key`` (its suffix the format's own); the stored file to serve."""
        return kept(self.artifacts, self.settings.temp_dir, key, lambda scratch: encode(audio, sample_rate, scratch, output_format, tags))

    def _from_cache(self, job: PreparedJob, hit: Tuple[bytes, Dict[str, Any]], key: str, client: str) -> Optional[Generation]:
        """An identical earlier result, as this job's own file under its own key (linked to the earlier one: one stored
        copy where the store can), with its lossless master likewise; None when the earlier result is no longer kept.
        ``cached`` is said only to the client that asked before: nobody learns from it what someone else asked."""
        data, info = hit
        artifacts = self.artifacts
        earlier = info.get("key") or (artifacts.key_of(str(info["path"])) if info.get("path") else None)
        try:
            if earlier:
                artifacts.link(earlier, key)
                if artifacts.exists(_master_key(earlier)):
                    artifacts.link(_master_key(earlier), _master_key(key))
            elif data:  # an entry from before entries named their result
                artifacts.put(key, data)
            else:
                return None
        except MissingArtifactError:  # no longer kept (retention, a delete), now or meanwhile: made again
            return None
        same_client = bool(client) and info.get("client") == client
        # to another client the take looks as made: its own timings, not an instant answer's
        timings = {"total_s": 0.0} if same_client else dict(info.get("timings_s") or {})
        return Generation(artifacts.path_for(key), job.manifest.architecture, job.character.id, job.text, int(info["sample_rate"]),
                          float(info["duration_s"]), False, timings, cached=same_client)

    def on_worker(self, manifest: Manifest, request: JobRequest, progress: ProgressFn, cancel: threading.Event,
                  on_chunk: Optional[ChunkFn] = None) -> JobResult:
        try:
            if request.character_path:
                self.versions.check(manifest.architecture, request.character, request.character_path)
            return self.supervisor.generate(request, progress=progress, cancel=cancel, on_chunk=on_chunk)
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

    def output_key(self, architecture: str, character_id: str, job_id: str) -> str:
        """``outputs/<day>/...``, named by time, voice and the job's random id: a file of another session cannot be fetched by
        guessing (the suffix follows the format when it is written)."""
        now = datetime.now()
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", character_id)[:40]
        return "outputs/%s/%s-%s-%s-%s.wav" % (now.strftime("%Y-%m-%d"), now.strftime("%H%M%S"), architecture, slug,
                                                job_id or uuid.uuid4().hex)


class JobServiceRunner:
    """What the job service calls (``jobs.service.Runner``): request checks, the runner, and the message a person reads."""

    def __init__(self, checks: RequestChecks, runner: JobRunner, provenance: Provenance) -> None:
        self.checks, self.runner, self.provenance = checks, runner, provenance

    def prepare(self, spec: JobSpec) -> PreparedJob:
        return replace(self.checks.prepare(spec), stream=spec.stream)

    def execute(self, prepared: Any, job_id: str, progress: ProgressFn, cancel: threading.Event,
                client: str = "") -> Tuple[Generation, Dict[str, Any]]:
        job: PreparedJob = prepared
        generation = replace(self.runner.run(job, job_id, progress, cancel, client), job_id=job_id)
        artifacts = self.runner.artifacts
        key = artifacts.key_of(generation.path)
        if key is None:
            raise RuntimeError("the result %s is not in the artifact store" % generation.path.name)
        master: Optional[str] = _master_key(key)
        master = master if master and master != key and artifacts.exists(master) else None
        record = self.provenance.record(job)
        for name in ("cover", "worker"):  # what the take's making found out (stems reused, conditioning reused) is kept with it
            if name in generation.notes:
                record[name] = dict(record.get(name) or {}, **generation.notes[name])
        output = JobOutput(key, master, artifacts.size(key) + (artifacts.size(master) if master else 0), generation.sample_rate,
                           generation.duration_s, generation.cached, generation.timings_s, record)
        return generation, output.columns()

    def result_of(self, row: Dict[str, Any]) -> Generation:
        """A finished job's result from its row: what a waiter gets when another host ran it."""
        timings = {key: float(value) for key, value in (row.get("timings") or {}).items() if isinstance(value, (int, float))}
        kept = row.get("provenance")
        provenance: Dict[str, Any] = kept if isinstance(kept, dict) else {}
        notes = {name: provenance[name] for name in ("cover", "worker") if name in provenance}  # as the host's take had them
        return Generation(local_path(self.runner.artifacts, row["output_path"]), row["architecture"], row["character"], row["text"],
                          int(row.get("sample_rate") or 0), float(row.get("duration_s") or 0.0), False, timings,
                          bool(row.get("cached")), notes=notes, job_id=row["id"])

    def message_for(self, exc: BaseException) -> str:
        return for_person(exc, "a job", logger).message
