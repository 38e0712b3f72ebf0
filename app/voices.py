"""Saved voices: a reference recording (trimmed, checked), its transcript, and who made it from what, saved once and
listed as a character of every zero-shot architecture (F5-TTS, XTTS, Seed-VC, ...): one click the next time.

A voice is written as a character folder (``runtimes.voice_folder``: ``reference.wav`` + ``voice.json``) under each
zero-shot architecture's characters folder, so everything characters have (listing, sharing with other hosts,
provenance, the worker keeping it loaded with its conditioning) voices have too.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import shutil
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile

from app.access import Access
from app.catalog import Catalog
from app.errors import UserFacingError
from app.request_checks import CLONING_OFF, RequestChecks
from app.settings import Settings
from pipeline.dsp import resample
from pipeline.stages import TrimSilence
from runtimes.voice_folder import REFERENCE_FILE, VOICE_FILE, read_info

MIN_VOICE_S = 3.0
MAX_VOICE_S = 30.0
"""What the zero-shot models take: under 3 s they miss the voice, over 30 s they cut it (XTTS, F5-TTS, Seed-VC)."""
MAX_RATE_HZ = 48000
CLIPPED_FRACTION = 0.01
"""More than 1% of samples at full scale: the recording is clipped (distortion the models copy)."""
TRIM_THRESHOLD_DB = -45.0
TWO_VOICES_SEMITONES = 10.0
MIN_PART_S = 1.0
VOICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")


@dataclass(frozen=True)
class SavedVoice:
    id: str
    name: str
    transcript: str
    made_by: str
    source: str
    created_at: str
    duration_s: float
    sample_rate: int
    sha256: str
    architectures: List[str]
    owner_sha256: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if name != "owner_sha256"}


def voice_id_of(name: str, reserved: Sequence[str] = ()) -> str:
    """The folder name of a voice called ``name``: lower-case letters, digits, ``-`` and ``_`` (a name in another script
    gets ``voice-`` and a short hash of it); never a builtin character's id (``reserved``)."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.strip().lower()).strip("-_")[:48]
    if not slug and any(character.isalnum() for character in name):
        slug = "voice-" + hashlib.sha256(name.strip().lower().encode("utf-8")).hexdigest()[:8]
    if not slug or not VOICE_ID.match(slug):
        raise UserFacingError("a voice needs a name with letters or digits (e.g. 'Ann, calm')")
    if slug in reserved:
        raise UserFacingError("%r is a builtin character's name here: choose another name for the voice" % slug)
    return slug


def owner_digest(owner: str) -> str:
    """What a voice keeps of who made it, to let them delete it: a hash (the owner id itself would let anyone who reads
    the list act as that browser or session)."""
    return hashlib.sha256(("voice-owner|" + owner).encode("utf-8")).hexdigest()


def shown_maker(owner: str) -> str:
    """Who made a voice, as everyone may read it: the login, else "guest"."""
    return owner[5:] if owner.startswith("user:") else "guest"


def reference_problem(mono: np.ndarray, sample_rate: int) -> str:
    """Why this recording cannot be a voice; empty when it can."""
    seconds = mono.size / float(sample_rate)
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    if not np.isfinite(peak) or peak < 1e-3:
        return "the recording is silent: record or upload someone speaking"
    if seconds < MIN_VOICE_S:
        return "the recording is %.1f s of sound after trimming silence; a voice needs %g-%g s of one person speaking" % (
            seconds, MIN_VOICE_S, MAX_VOICE_S)
    if seconds > MAX_VOICE_S:
        return "the recording is %.1f s after trimming silence; a voice takes at most %g s: trim it to one clear stretch" % (
            seconds, MAX_VOICE_S)
    if float(np.mean(np.abs(mono) >= 0.999)) > CLIPPED_FRACTION:
        return "the recording is clipped (%.1f%% of it at full scale): record it again quieter" % (
            100 * float(np.mean(np.abs(mono) >= 0.999)))
    pitches = two_voices(mono, sample_rate)
    if pitches:
        return ("the recording seems to hold two voices (one speaking around %.0f Hz, another around %.0f Hz): a voice is one "
                "person; trim it to the stretch where only they speak" % pitches)
    return ""


def two_voices(mono: np.ndarray, sample_rate: int) -> Optional[Tuple[float, float]]:
    """The two pitch centres of a recording in which two people clearly take turns (each over a third of the voiced time,
    a second or more, their medians an octave-less-two-semitones apart: a man and a woman, or a child), else None. A
    pitch heuristic, not speaker recognition: two similar voices pass (say so in the panel), one voice never trips it
    (a person's speaking pitch stays within a few semitones of its median)."""
    import librosa

    hop = 512
    pitch = librosa.yin(mono.astype(np.float32), fmin=60.0, fmax=500.0, sr=sample_rate, frame_length=2048, hop_length=hop)
    rms = librosa.feature.rms(y=mono.astype(np.float32), frame_length=2048, hop_length=hop)[0][: pitch.size]
    voiced = np.log2(pitch[: rms.size][rms > 0.1 * float(np.max(rms))])
    if voiced.size * hop / sample_rate < 2 * MIN_PART_S:
        return None
    low, high = np.percentile(voiced, 20), np.percentile(voiced, 80)
    for _ in range(20):  # two means on log pitch
        split = (low + high) / 2
        low, high = float(np.median(voiced[voiced < split])), float(np.median(voiced[voiced >= split]))
    share = float(np.mean(voiced >= (low + high) / 2))
    frames_s = voiced.size * hop / sample_rate
    if (high - low) * 12 >= TWO_VOICES_SEMITONES and min(share, 1 - share) >= 1 / 3 and min(share, 1 - share) * frames_s >= MIN_PART_S:
        return 2 ** low, 2 ** high
    return None


class VoiceLibrary:
    def __init__(self, settings: Settings, catalog: Catalog, checks: RequestChecks, access: Access) -> None:
        self.settings, self.catalog, self.checks, self.access = settings, catalog, checks, access

    def architectures(self) -> List[str]:
        """The zero-shot architectures: where a voice is saved."""
        return [name for name, manifest in self.catalog.manifests.items() if manifest.zero_shot]

    def require_cloning(self, username: Optional[str]) -> None:
        """Zero-shot voices are allowed for this person here (the ``voice_cloning`` setting), else a clear refusal."""
        policy = self.settings.voice_cloning
        if policy == "off":
            raise UserFacingError(CLONING_OFF)
        if policy == "operators" and not self.access.is_admin(username):
            raise UserFacingError("voice cloning is for this server's operators only: ask them to make the voice")

    def save(self, name: str, recording_path: Optional[str], transcript: str = "", made_by: str = "", source: str = "",
             username: Optional[str] = None) -> SavedVoice:
        """Trim, check and save a recording as voice ``name`` for every zero-shot architecture."""
        self.require_cloning(username)
        if not self.architectures():
            raise UserFacingError("no zero-shot architecture is installed here to use a voice with")
        voice_id = voice_id_of(name or "", self.reserved())
        if not recording_path:
            raise UserFacingError("record or upload the voice first (%g-%g s of one person speaking)" % (MIN_VOICE_S, MAX_VOICE_S))
        if any(self._folder(arch, voice_id).exists() for arch in self.architectures()):
            raise UserFacingError("a voice called %r exists: choose another name, or delete that one first" % voice_id)
        transcript = re.sub(r"\s+", " ", transcript or "").strip()
        if len(transcript) > 1000:
            raise UserFacingError("the transcript is %d characters; a voice's recording says at most 1000" % len(transcript))
        decoded = self.checks.decode_input(Path(recording_path))
        mono = decoded.audio.mean(axis=0) if decoded.audio.ndim == 2 else decoded.audio
        mono, rate = np.asarray(mono, dtype=np.float32), int(decoded.sample_rate)
        mono, _ = TrimSilence(threshold_db=TRIM_THRESHOLD_DB, keep_ms=100.0).apply(mono, rate)
        problem = reference_problem(mono, rate)
        if problem:
            raise UserFacingError(problem)
        if rate > MAX_RATE_HZ:
            mono, rate = resample(mono, rate, MAX_RATE_HZ), MAX_RATE_HZ
        pcm = (np.clip(mono, -1.0, 1.0) * 32767.0).astype("<i2")
        info = {"name": name.strip()[:80], "transcript": transcript, "made_by": shown_maker(made_by), "owner_sha256": owner_digest(made_by),
                "source": source[:200],
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "duration_s": round(pcm.size / rate, 3),
                "sample_rate": rate, "sha256": hashlib.sha256(pcm.tobytes()).hexdigest()}
        written: List[Path] = []
        try:
            for arch in self.architectures():
                written.append(self._write(arch, voice_id, pcm, rate, info))
        except BaseException as exc:  # all or nothing: a voice is never left in some architectures only
            for folder in written:
                shutil.rmtree(folder, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno in (errno.EEXIST, errno.ENOTEMPTY):  # saved by someone else meanwhile
                raise UserFacingError("a voice called %r exists: choose another name, or delete that one first" % voice_id) from None
            if isinstance(exc, (OSError, RuntimeError)):
                raise UserFacingError("the voice could not be saved: %s" % (getattr(exc, "strerror", None) or exc)) from exc
            raise
        return self._voice(voice_id, info)

    def reserved(self) -> List[str]:
        """The builtin characters' ids of the zero-shot architectures (F5-TTS's ``reference``): not a voice's name."""
        return sorted({c for name in self.architectures() for c in self.catalog.manifests[name].builtin_characters})

    def _folder(self, architecture: str, voice_id: str) -> Path:
        return self.settings.characters_dir / architecture / voice_id

    def _write(self, architecture: str, voice_id: str, pcm: np.ndarray, rate: int, info: Dict[str, Any]) -> Path:
        """Written beside, then moved into place: a half-written voice is never listed."""
        final = self._folder(architecture, voice_id)
        scratch = final.parent / (".%s.%s" % (voice_id, uuid.uuid4().hex[:8]))
        scratch.mkdir(parents=True)
        try:
            soundfile.write(str(scratch / REFERENCE_FILE), pcm, rate, subtype="PCM_16", format="WAV")
            (scratch / VOICE_FILE).write_text(json.dumps(info, indent=1, ensure_ascii=False), encoding="utf-8")
            scratch.rename(final)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return final

    def list(self) -> List[SavedVoice]:
        found: Dict[str, Dict[str, Any]] = {}
        for arch in self.architectures():
            root = self.settings.characters_dir / arch
            for folder in sorted(root.iterdir()) if root.is_dir() else []:
                if folder.name.startswith(".") or not (folder / VOICE_FILE).is_file():
                    continue
                try:
                    info = read_info(str(folder))
                except Exception:  # a broken voice.json: the character list says what is wrong with it
                    continue
                found.setdefault(folder.name, info)
        return [self._voice(voice_id, info) for voice_id, info in sorted(found.items())]

    def get(self, voice_id: str) -> SavedVoice:
        for voice in self.list():
            if voice.id == voice_id or voice.name == voice_id:
                return voice
        raise UserFacingError("no saved voice %r (saved: %s)" % (voice_id, ", ".join(v.id for v in self.list()) or "none"))

    def delete(self, voice_id: str, owner: str = "", username: Optional[str] = None) -> SavedVoice:
        """Delete a voice everywhere: by the one who made it (``owner``), or an operator. The voice it was."""
        voice = self.get(voice_id)
        made_it = voice.owner_sha256 == owner_digest(owner) if voice.owner_sha256 else voice.made_by in ("", owner)
        if not made_it and not self.access.is_admin(username):
            raise UserFacingError("voice %r was made by someone else: only they or an operator can delete it" % voice.id)
        for arch in voice.architectures:
            shutil.rmtree(self._folder(arch, voice.id), ignore_errors=True)
        return voice

    def folder(self, architecture: str, voice_id: str) -> Path:
        return self._folder(architecture, voice_id)

    def _voice(self, voice_id: str, info: Dict[str, Any]) -> SavedVoice:
        return SavedVoice(voice_id, str(info.get("name") or voice_id), str(info.get("transcript") or ""), str(info.get("made_by") or ""),
                          str(info.get("source") or ""), str(info.get("created_at") or ""), float(info.get("duration_s") or 0.0),
                          int(info.get("sample_rate") or 0), str(info.get("sha256") or ""),
                          [arch for arch in self.architectures() if (self._folder(arch, voice_id) / VOICE_FILE).is_file()],
                          str(info.get("owner_sha256") or ""))
