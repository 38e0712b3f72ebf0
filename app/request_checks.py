"""Request checks: what a person asked for (a ``JobSpec``) becomes a prepared job, or is refused with a message
naming the problem, before any work is done. Every recording a person gives is decoded here, by one checked
decoder (the limits read from its header first)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from app.catalog import Catalog
from app.characters import Character
from app.covers import CoverPlan, plan_cover
from app.errors import UserFacingError
from app.generation import minutes
from app.keeping import kept
from app.preferences import Preferences
from app.settings import Settings
from jobs.artifacts import ArtifactStore
from jobs.spec import JobSpec
from pipeline.audio_io import OUTPUT_FORMATS, DecodedAudio, decode, encode, probe
from pipeline.cache import AudioCache, audio_digest
from pipeline.errors import PipelineError
from pipeline.processing import PostOptions, PreOptions
from runtimes.manifest import Manifest

CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MIN_INPUT_S = 0.1
"""Shorter recordings give no voice to convert (and break pitch trackers)."""


@dataclass(frozen=True)
class SpeakFirst:
    """Text to any voice: a TTS architecture speaks the text, then the conversion takes that speech."""

    manifest: Manifest
    character: Character
    options: Dict[str, Any]


@dataclass(frozen=True)
class PreparedJob:
    manifest: Manifest
    character: Character
    text: str
    decoded: Optional[DecodedAudio]
    options: Dict[str, Any]
    output_format: str
    pre: PreOptions
    post: PostOptions
    speak_first: Optional[SpeakFirst] = None
    use_cache: bool = True
    input_digest: Optional[str] = None
    """The decoded recording's (or reference's) content hash: the output cache key and the provenance both need it (hashed once)."""
    reference: Optional[DecodedAudio] = None
    """A text-to-speech architecture's reference recording (``Manifest.reference``), mixed to mono (samples,) at its own
    rate: the request's audio as given, not pre-processed (that chain is a converter's, and ``decoded`` stays None)."""
    stream: bool = False
    """The take goes out in pieces as they are made (``JobSpec.stream``)."""
    cover: Optional[CoverPlan] = None
    """A song cover: ``decoded`` is the song (not pre-processed), separated, its vocals converted, remixed (``app.covers``)."""

    def reference_audio(self) -> Tuple[Optional[np.ndarray], Optional[int]]:
        """The reference as the worker request's (audio, audio_sample_rate); (None, None) without one."""
        return (self.reference.audio, self.reference.sample_rate) if self.reference is not None else (None, None)


def estimated_output_s(job: PreparedJob) -> float:
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


def _length_range(min_s: float, max_s: float) -> str:
    if min_s and max_s:
        return "%g-%g s" % (min_s, max_s)
    return "at least %g s" % min_s if min_s else "up to %g s" % max_s if max_s else "any length"


CLONING_OFF = "voice cloning is turned off on this server (its operator's setting voice_cloning=off)"


class RequestChecks:
    def __init__(self, settings: Settings, catalog: Catalog, preferences: Preferences, cache: AudioCache,
                 artifacts: ArtifactStore) -> None:
        self.settings, self.catalog, self.preferences, self.cache = settings, catalog, preferences, cache
        self.artifacts = artifacts
        """Where a preview is kept (served like the results; swept an hour after it was made)."""

    def prepare(self, spec: JobSpec) -> PreparedJob:
        """Validate everything a person gave, before any work is done."""
        settings, catalog = self.settings, self.catalog
        manifest = catalog.manifest(spec.architecture)
        character = catalog.character(spec.architecture, spec.character)
        if not character.info.usable:
            raise UserFacingError("the %s character %r cannot be used: %s" % (manifest.display_name, character.id, character.info.problem))
        text = CONTROL_CHARACTERS.sub("", spec.text or "").strip()  # NUL and friends break libraries and mean nothing spoken
        if spec.output_format not in OUTPUT_FORMATS:
            raise UserFacingError("unknown output format %r (choose one of %s)" % (spec.output_format, ", ".join(OUTPUT_FORMATS)))
        audio_path = spec.audio_path
        cover = None
        if spec.cover is not None:
            if not isinstance(spec.cover, dict):
                raise UserFacingError("cover settings must be a JSON object (separator, separator_model, separator_options, remix)")
            cover = plan_cover(catalog, manifest, spec.cover)
            if not audio_path:
                raise UserFacingError("a cover needs the song: upload it")
            if text:
                raise UserFacingError("a cover converts the song's own vocals: leave the text empty")
        elif manifest.zero_shot:
            self.voices_allowed(manifest, character, audio_path)
        speak_first = self.speak_first(spec.speak_with) if manifest.needs_audio and not audio_path and text else None
        if speak_first is not None and speak_first.manifest.zero_shot:  # a saved voice speaks the text first
            self.voices_allowed(speak_first.manifest, speak_first.character, None)
        if manifest.needs_text and not text:
            raise UserFacingError("%s needs text: type what it should say" % manifest.display_name)
        if text and speak_first is None and not manifest.needs_text and "tts" not in manifest.capabilities:
            raise UserFacingError(
                "%s converts recordings: give a recording, or only text (it is then spoken first), not both" % manifest.display_name
            )
        if len(text) > settings.max_text_chars:
            raise UserFacingError("the text is %d characters long; the limit is %d" % (len(text), settings.max_text_chars))
        if manifest.needs_audio and not audio_path and speak_first is None:
            raise UserFacingError("%s needs input audio: upload or record a recording, or type text to speak first"
                                  % manifest.display_name)
        try:
            # the character's saved defaults under what this request says
            saved = self.preferences.character_defaults(spec.architecture, character.id)
            resolved = manifest.resolve_options({**saved, **(spec.options or {})})
            pre = PreOptions.from_dict(spec.preprocess)
            post = PostOptions.from_dict(spec.postprocess)
        except ValueError as exc:  # StageConfigError is a ValueError too
            raise UserFacingError(str(exc)) from exc
        if cover is not None and manifest.length_factor(resolved) != 1.0 and manifest.duration_scale is not None:
            raise UserFacingError("a cover keeps the song's timing: set %s's option %r to 1 (the converted vocals must stay as long "
                                  "as the song's)" % (manifest.display_name, manifest.duration_scale.option))
        if post.sample_rate_hz and post.sample_rate_hz > settings.max_output_rate_hz:
            raise UserFacingError("an output rate of %d Hz is above this server's limit of %d Hz"
                                  % (post.sample_rate_hz, settings.max_output_rate_hz))
        decoded = self.decode_input(Path(audio_path)) if audio_path and manifest.needs_audio else None
        reference = self.reference(manifest, audio_path)
        given = decoded if decoded is not None else reference
        job = PreparedJob(manifest, character, text, decoded, resolved, spec.output_format, pre, post, speak_first, spec.use_cache,
                          audio_digest(given.audio, given.sample_rate) if given is not None else None, reference, cover=cover)
        estimate_s = estimated_output_s(job)
        if estimate_s > settings.max_output_s:
            raise UserFacingError("the result would be about %s long; this server's limit is %s: shorten the text, or raise "
                                  "the speed" % (minutes(estimate_s), minutes(settings.max_output_s)))
        return job

    def voices_allowed(self, manifest: Manifest, character: Character, audio_path: Optional[str]) -> None:
        """A zero-shot architecture speaks (or converts) in a saved voice, or in the reference given with the request."""
        if self.settings.voice_cloning == "off":  # also here: a job queued before the setting changed, or run on another host
            raise UserFacingError(CLONING_OFF)
        if character.path is None and not audio_path and manifest.reference is not None:
            raise UserFacingError("%s speaks in the voice of a recording: choose a saved voice, or give a reference recording (%s)"
                                  % (manifest.display_name, _length_range(manifest.reference.min_s, manifest.reference.max_s)))

    def reference(self, manifest: Manifest, audio_path: Optional[str]) -> Optional[DecodedAudio]:
        """The recording given to a text-to-speech architecture that takes a reference (``Manifest.reference``): decoded by the
        same checked decoder, mixed to mono, and refused here when missing but required, silent, or out of its length range
        (the worker checks again; refusing now keeps a bad one out of the queue). None for other architectures."""
        wanted = manifest.reference
        if wanted is None:
            return None
        if not audio_path:
            if wanted.required:
                raise UserFacingError("%s needs a reference recording of the voice to speak like (%s): upload or record one"
                                      % (manifest.display_name, _length_range(wanted.min_s, wanted.max_s)))
            return None
        try:
            decoded = self.decode_input(Path(audio_path))
        except UserFacingError as exc:  # said of the reference: the person gave text as well
            raise UserFacingError("%s: the reference recording: %s" % (manifest.display_name, exc)) from exc
        mono = decoded.audio.mean(axis=0, dtype=np.float32) if decoded.audio.ndim == 2 else decoded.audio.astype(np.float32, copy=False)
        peak = float(np.max(np.abs(mono))) if mono.size else 0.0
        problem = wanted.problem(mono.shape[-1] / float(decoded.sample_rate), peak if np.isfinite(peak) else 0.0)
        if problem:
            raise UserFacingError("%s: %s" % (manifest.display_name, problem))
        return DecodedAudio(np.ascontiguousarray(mono), decoded.sample_rate)

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

    def speak_first(self, speak_with: Optional[Dict[str, Any]]) -> SpeakFirst:
        given = dict(speak_with or {})
        unknown = sorted(set(given) - {"architecture", "character", "options"})
        if unknown:
            raise UserFacingError("speak_with takes architecture, character and options, not %s" % ", ".join(unknown))
        architecture = str(given.get("architecture") or self.settings.default_architecture)
        manifest = self.catalog.manifest(architecture)
        if "tts" not in manifest.capabilities:
            raise UserFacingError("%s cannot speak text first: choose a text-to-speech architecture" % manifest.display_name)
        characters = self.catalog.characters(architecture)
        character = self.catalog.character(architecture, str(given["character"])) if given.get("character") else characters[0]
        try:
            options = manifest.resolve_options(given.get("options") or {})
        except ValueError as exc:
            raise UserFacingError("speak_with: %s" % exc) from exc
        return SpeakFirst(manifest, character, options)

    def preview_preprocess(self, architecture: str, audio_path: Optional[str], preprocess: Optional[Dict[str, Any]]) -> Path:
        """What the model would get from this recording, as a WAV a person can listen to."""
        manifest = self.catalog.manifest(architecture)
        if not audio_path:
            raise UserFacingError("upload or record audio to preview its preprocessing")
        decoded = self.decode_input(Path(audio_path))
        try:
            pre = PreOptions.from_dict(preprocess)
            target_hz = manifest.input_sample_rate or decoded.sample_rate
            audio, rate = self.cache.apply(pre.chain(target_hz), decoded.audio, decoded.sample_rate)
            key = "outputs/previews/preview-%s-%s.wav" % (datetime.now().strftime("%H%M%S"), uuid.uuid4().hex[:12])
            return kept(self.artifacts, self.settings.temp_dir, key, lambda scratch: encode(audio, rate, scratch, "wav"))
        except (PipelineError, ValueError) as exc:
            raise UserFacingError(str(exc)) from exc
