"""Song covers: a song -> vocals and accompaniment (a separator architecture, e.g. Demucs) -> the vocals converted by
any conversion architecture with its options -> remixed with the accompaniment (``pipeline.remix``), in the song's rate
and length.

Stems are kept by the song's content hash and the separation model and options (``StemCache``), so another character
or pitch on the same song only converts and remixes. Long songs go through the separator and the converter in slices
(memory bounded; progress per slice), the slices cross-faded back together.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from app.catalog import Catalog
from app.characters import Character, files_signature
from app.errors import UserFacingError
from app.generation import ProgressFn, prefixed
from app.keeping import kept
from jobs.artifacts import ArtifactStore
from jobs.errors import MissingArtifactError
from pipeline.audio_io import decode, encode
from pipeline.dsp import resample
from pipeline.errors import AudioDecodeError
from pipeline.remix import BACKING_CHOICES, RemixOptions, fitted, loudness, mid_side, remix, stereo
from runtimes.adapters.common import overlap_add, slices
from runtimes.manifest import Manifest
from runtimes.supervisor import JobRequest, JobResult

STEM_FORMAT = "wav-float"
"""Stems are kept exactly (32-bit float WAV): the remix is their gain-weighted sum, and any DAW reads them."""
SEPARATE_SLICE_S = 60.0
CONVERT_SLICE_S = 30.0
FADE_S = 1.0
SILENT_PEAK = 1e-3
"""A slice of the vocal stem quieter than this is an instrumental stretch: not sent to the converter (pitch trackers fail
on silence), silence kept."""
COVER_KEYS = ("separator", "separator_model", "separator_options", "remix")
# the UI's choices come from here
__all__ = ["BACKING_CHOICES", "CoverMaker", "CoverPlan", "StemCache", "job_models", "plan_cover", "separators"]

OnWorker = Callable[[Manifest, JobRequest, ProgressFn, threading.Event], JobResult]


@dataclass(frozen=True)
class CoverPlan:
    separator: Manifest
    model: Character
    separator_options: Dict[str, Any]
    remix: RemixOptions
    weights: str = ""
    """What identifies the separation model's files (sizes and times): replaced weights separate anew."""

    def key(self) -> Dict[str, Any]:
        """What the provenance tells covers apart by."""
        return {"separator": self.separator.architecture, "model": self.model.id, "options": self.separator_options,
                "remix": self.remix.to_dict(), "licence": self.separator.licence}

    def stems_id(self) -> str:
        """The separation's identity: model, its files and options (not the remix: that is redone every time)."""
        blob = json.dumps([self.separator.architecture, self.model.id, self.weights, self.separator_options], sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def separators(catalog: Catalog) -> List[str]:
    return [name for name, manifest in catalog.manifests.items() if "separate" in manifest.capabilities]


def plan_cover(catalog: Catalog, manifest: Manifest, given: Dict[str, Any]) -> CoverPlan:
    """A person's cover settings checked against what is installed; UserFacingError naming the problem."""
    unknown = sorted(set(given) - set(COVER_KEYS))
    if unknown:
        raise UserFacingError("cover takes %s, not %s" % (", ".join(COVER_KEYS), ", ".join(unknown)))
    if not manifest.needs_audio or "convert" not in manifest.capabilities:
        raise UserFacingError("%s does not convert recordings: a cover needs a conversion architecture (%s)" % (
            manifest.display_name, ", ".join(n for n, m in catalog.manifests.items() if "convert" in m.capabilities and m.needs_audio)))
    available = separators(catalog)
    if not available:
        raise UserFacingError("no separation model is installed here (a cover needs one, e.g. Demucs)")
    name = str(given.get("separator") or available[0])
    if name not in available:
        raise UserFacingError("unknown separator %r (available: %s)" % (name, ", ".join(available)))
    separator = catalog.manifest(name)
    models = catalog.characters(name)
    model = catalog.character(name, str(given["separator_model"])) if given.get("separator_model") else models[0] if models else None
    if model is None:
        raise UserFacingError("%s has no separation model installed" % separator.display_name)
    try:
        options = separator.resolve_options(given.get("separator_options") or {})
        mixing = RemixOptions.from_dict(dict(given.get("remix") or {}))
    except (ValueError, TypeError) as exc:
        raise UserFacingError("cover: %s" % exc) from exc
    return CoverPlan(separator, model, options, mixing, weights_signature(catalog, separator, model))


def job_models(catalog: Catalog, spec: Any) -> List[Tuple[str, str]]:
    """(architecture, character) of every model a job uses (a ``JobSpec``): its own, the voice that speaks first, a cover's
    separation model (defaults resolved as ``plan_cover`` resolves them); what a host must have to run it."""
    found = [(spec.architecture, spec.character)]
    first = spec.speak_with if isinstance(spec.speak_with, dict) else {}
    if first.get("architecture") and first.get("character"):
        found.append((str(first["architecture"]), str(first["character"])))
    cover = spec.cover if isinstance(spec.cover, dict) else None
    if cover is not None:
        available = separators(catalog)
        name = str(cover.get("separator") or (available[0] if available else ""))
        if name in available:
            models = [c.id for c in catalog.characters(name)]
            model = str(cover.get("separator_model") or (models[0] if models else ""))
            if model:
                found.append((name, model))
    return found


def weights_signature(catalog: Catalog, separator: Manifest, model: Character) -> str:
    """The separation model's files (its folder, or the separator's shared assets for a builtin one) as a short hash of
    their names, sizes and times."""
    places = [model.path] if model.path is not None else [catalog.settings.assets_dir / asset.name for asset in separator.assets]
    found: List[Any] = []
    for place in places:
        if place.is_dir():
            found.append([str(place.name), files_signature(place)])
        elif place.is_file():
            stat = place.stat()
            found.append([str(place.name), stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps(found).encode("utf-8")).hexdigest()[:16]


class StemCache:
    """Separated stems in the artifact store under ``stems/<song hash>/<separation id>/`` (shared by every host that
    shares the store), the oldest songs' stems removed when they pass ``max_bytes``."""

    def __init__(self, artifacts: ArtifactStore, scratch_dir: Any, max_bytes: int) -> None:
        self.artifacts, self.scratch_dir, self.max_bytes = artifacts, scratch_dir, max_bytes
        self.separations = 0
        """How many separations ran in this process (what a reused song does not add to)."""

    @staticmethod
    def prefix(song_digest: str, plan: CoverPlan) -> str:
        return "stems/%s/%s" % (song_digest, plan.stems_id())

    def key(self, prefix: str, stem: str) -> str:
        return "%s/%s.wav" % (prefix, stem)

    def get(self, prefix: str, stems: List[str]) -> Optional[Dict[str, np.ndarray]]:
        found: Dict[str, np.ndarray] = {}
        for stem in stems:
            key = self.key(prefix, stem)
            try:
                if not self.artifacts.exists(key):
                    return None
                found[stem] = decode(self.artifacts.path_for(key)).audio
            except (MissingArtifactError, AudioDecodeError, OSError):  # removed or torn meanwhile: separated again
                return None
        return found

    def put(self, prefix: str, stems: Dict[str, np.ndarray], sample_rate: int) -> Dict[str, str]:
        """Every stem written, then the cache held to its size once (a listing of the whole store, on S3 a request)."""
        keys = {stem: self._store(self.key(prefix, stem), audio, sample_rate) for stem, audio in stems.items()}
        self.prune()
        return keys

    def write(self, key: str, audio: np.ndarray, sample_rate: int) -> str:
        """One file written (every cover writes its converted vocals), then the cache held to its size."""
        self._store(key, audio, sample_rate)
        self.prune()
        return key

    def _store(self, key: str, audio: np.ndarray, sample_rate: int) -> str:
        kept(self.artifacts, self.scratch_dir, key, lambda scratch: encode(audio, sample_rate, scratch, STEM_FORMAT))
        return key

    def prune(self) -> None:
        """Whole songs out, least recently written first, until the stems fit ``max_bytes``."""
        songs: Dict[str, Tuple[float, int]] = {}
        for key in self.artifacts.keys("stems"):
            song = "/".join(key.split("/")[:2])
            try:
                newest, size = songs.get(song, (0.0, 0))
                songs[song] = (max(newest, self.artifacts.modified(key)), size + self.artifacts.size(key))
            except MissingArtifactError:
                continue
        total = sum(size for _, size in songs.values())
        for song, (_, size) in sorted(songs.items(), key=lambda item: item[1][0]):
            if total <= self.max_bytes:
                break
            for key in list(self.artifacts.keys(song)):
                self.artifacts.delete(key)
            total -= size


class CoverMaker:
    """One cover job's three stages, on the runner's workers."""

    def __init__(self, stems: StemCache, on_worker: OnWorker) -> None:
        self.stems, self.on_worker = stems, on_worker

    def make(self, plan: CoverPlan, manifest: Manifest, character: Character, options: Dict[str, Any], song: np.ndarray,
             song_rate: int, song_digest: str, job_id: str, progress: ProgressFn,
             cancel: threading.Event) -> Tuple[np.ndarray, Dict[str, Any], Dict[str, float]]:
        """The cover (2, samples) at ``song_rate``, its notes (stems' keys, whether they were reused, the remix's gains)
        and its stages' timings."""
        length = song.shape[-1]
        timings: Dict[str, float] = {}
        started = time.perf_counter()
        prefix = self.stems.prefix(song_digest, plan)
        names = list(plan.separator.stems)
        if names[:2] != ["vocals", "accompaniment"]:
            raise UserFacingError("%s gives stems %s; a cover needs vocals and accompaniment" % (plan.separator.display_name, names))
        found = self.stems.get(prefix, ["vocals", "accompaniment"])
        reused = found is not None
        if found is None:
            found = self.separate(plan, song, song_rate, progress, cancel)
            self.stems.put(prefix, found, song_rate)
        vocals, accompaniment = fitted(stereo(found["vocals"]), length), fitted(stereo(found["accompaniment"]), length)
        timings["separate_s"] = time.perf_counter() - started
        started = time.perf_counter()
        lead, side = mid_side(vocals)
        converted = self.convert(manifest, character, options, lead, song_rate, progress, cancel)
        timings["convert_s"] = time.perf_counter() - started
        started = time.perf_counter()
        progress(None, "3/3 mixing")
        if cancel.is_set():
            raise UserFacingError("the job was cancelled")
        mix, remix_notes = remix(converted, side, accompaniment, song_rate, loudness(stereo(song), song_rate), plan.remix)
        converted_key = self.stems.write("%s/converted/%s/converted_vocals.wav" % (prefix, job_id), stereo(converted), song_rate)
        timings["mix_s"] = time.perf_counter() - started
        files = {"vocals": self.stems.key(prefix, "vocals"), "accompaniment": self.stems.key(prefix, "accompaniment"),
                 "converted_vocals": converted_key}
        notes = {"cover": dict(remix_notes, stems_reused=reused, separator=plan.separator.architecture, separator_model=plan.model.id,
                                stems=files, remix=plan.remix.to_dict())}
        return mix, notes, timings

    def separate(self, plan: CoverPlan, song: np.ndarray, song_rate: int, progress: ProgressFn,
                 cancel: threading.Event) -> Dict[str, np.ndarray]:
        """The song through the separator in slices (cross-faded), the stems back at the song's rate and length."""
        self.stems.separations += 1
        rate = plan.separator.input_sample_rate or song_rate
        audio = resample(stereo(song), song_rate, rate)
        total = audio.shape[-1]
        fade = int(FADE_S * rate)
        out: Optional[np.ndarray] = None
        pieces = list(slices(total, int(SEPARATE_SLICE_S * rate), fade))
        out_rate = rate
        for index, (start, end) in enumerate(pieces, start=1):
            label = "1/3 separating%s: " % (" slice %d of %d" % (index, len(pieces)) if len(pieces) > 1 else "")
            result = self.on_worker(plan.separator, JobRequest(
                architecture=plan.separator.architecture, character=plan.model.id, character_path=plan.model.model_path,
                audio=audio[:, start:end], audio_sample_rate=rate, options=plan.separator_options),
                prefixed(progress, label), cancel)
            stems = np.asarray(result.audio, dtype=np.float32)
            if stems.ndim != 3 or stems.shape[0] < 2:
                raise UserFacingError("%s returned audio shaped %s, not (stems, channels, samples)" % (
                    plan.separator.display_name, stems.shape))
            out_rate = int(result.sample_rate)
            if out is None:
                out = np.zeros((2, 2, int(round(total * out_rate / rate))), dtype=np.float32)
            piece_start = int(round(start * out_rate / rate))
            for stem in range(2):
                for channel in range(2):
                    overlap_add(out[stem, channel], fitted(stereo(stems[stem])[channel], int(round((end - start) * out_rate / rate))),
                                piece_start, int(round(fade * out_rate / rate)) if start else 0)
        assert out is not None
        length = song.shape[-1]
        return {"vocals": fitted(resample(out[0], out_rate, song_rate), length),
                "accompaniment": fitted(resample(out[1], out_rate, song_rate), length)}

    def convert(self, manifest: Manifest, character: Character, options: Dict[str, Any], lead: np.ndarray, song_rate: int,
                progress: ProgressFn, cancel: threading.Event) -> np.ndarray:
        """The lead vocal (mono) through the converter in slices; silent stretches stay silent. Mono at the song's rate."""
        rate = manifest.input_sample_rate or song_rate
        audio = resample(lead, song_rate, rate)
        fade = int(FADE_S * rate)
        out = np.zeros(audio.shape[-1], dtype=np.float32)
        pieces = list(slices(audio.shape[-1], int(CONVERT_SLICE_S * rate), fade))
        out_rate: Optional[int] = None
        converted: List[Tuple[int, int, np.ndarray]] = []
        for index, (start, end) in enumerate(pieces, start=1):
            if cancel.is_set():
                raise UserFacingError("the job was cancelled")
            piece = audio[start:end]
            label = "2/3 converting%s: " % (" slice %d of %d" % (index, len(pieces)) if len(pieces) > 1 else "")
            if float(np.max(np.abs(piece))) < SILENT_PEAK:
                progress(None, label + "silent (instrumental): kept silent")
                continue
            result = self.on_worker(manifest, JobRequest(
                architecture=manifest.architecture, character=character.id, character_path=character.model_path, audio=piece,
                audio_sample_rate=rate, options=options), prefixed(progress, label), cancel)
            take = np.asarray(result.audio, dtype=np.float32)
            take = take.mean(axis=0) if take.ndim == 2 else take
            out_rate = int(result.sample_rate)
            converted.append((start, end, resample(take, out_rate, rate)))
        for start, end, take in converted:
            overlap_add(out, fitted(take, end - start), start, fade if start else 0)
        return fitted(resample(out, rate, song_rate), lead.shape[-1])
