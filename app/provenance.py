"""Exactly how a result was made: the sha256 of every model file, options, processing, app and environment versions;
and the fingerprints that key the output cache."""

from __future__ import annotations

from typing import Any, Dict, Optional

from app.catalog import Catalog
from app.characters import Character, files_signature
from app.request_checks import PreparedJob, SpeakFirst
from app.version import app_version
from models.store import FileHashes
from pipeline.cache import key_of
from runtimes.voice_folder import read_info


class Provenance:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.file_hashes = FileHashes()
        """sha256 of model files, remembered by (path, size, mtime) in a bounded memo: a 500 MB checkpoint is hashed once."""

    def model_files(self, architecture: str, character: Character) -> Dict[str, str]:
        if character.path is None:  # a builtin voice: what pins it is the env's spec (e.g. the wheel's version)
            return {"builtin:%s" % character.id: self.model_fingerprint(architecture, character)}
        root = character.path
        return {str(p.relative_to(root)): self.file_hashes(p) for p in sorted(root.rglob("*")) if p.is_file()}

    def record(self, job: PreparedJob) -> Dict[str, Any]:
        record: Dict[str, Any] = {
            "architecture": job.manifest.architecture, "character": job.character.id,
            "model_files": self.model_files(job.manifest.architecture, job.character),
            "options": job.options, "preprocess": job.pre.to_dict() if job.decoded is not None or job.speak_first else None,
            "postprocess": job.post.to_dict(), "output_format": job.output_format,
            "input_sha256": job.input_digest,
            "seed": job.options.get("seed"),
            "app_version": app_version(), "adapter_version": job.manifest.version,
            "env": {job.manifest.architecture: self.env_version(job.manifest.architecture)},
        }
        if job.manifest.licence:
            record["licence"] = job.manifest.licence
        if job.manifest.zero_shot and job.character.path is not None:  # who made the voice, from what, when
            try:
                record["voice"] = {k: v for k, v in read_info(str(job.character.path)).items() if k not in ("transcript", "owner_sha256")}
            except Exception:
                record["voice"] = {"problem": "its voice.json cannot be read"}
        if job.cover is not None:
            plan = job.cover
            record["cover"] = dict(plan.key(), model_files=self.model_files(plan.separator.architecture, plan.model))
            record["env"][plan.separator.architecture] = self.env_version(plan.separator.architecture)
        if job.speak_first is not None:
            first = job.speak_first
            record["spoken_first_by"] = {
                "architecture": first.manifest.architecture, "character": first.character.id,
                "options": first.options, "model_files": self.model_files(first.manifest.architecture, first.character)}
            record["env"][first.manifest.architecture] = self.env_version(first.manifest.architecture)
        return record

    def env_version(self, architecture: str) -> str:
        """The hash of the env's spec and pinned requirements (what the launcher rebuilds on)."""
        return self._spec_fingerprint(architecture)[:16]

    def _spec_fingerprint(self, architecture: str) -> str:
        folder = self.catalog.specs[architecture].folder
        return key_of([(p.name, p.read_bytes().decode("utf-8", "replace")) for p in sorted(folder.glob("*")) if p.is_file()])

    def model_fingerprint(self, architecture: str, character: Character) -> str:
        """What identifies the model's files: the pinned env spec for builtin voices, else the folder's files."""
        if character.path is None:
            return self._spec_fingerprint(architecture)
        return key_of(files_signature(character.path))  # the same key as the list of (path, size, mtime) it was

    def speak_first_key(self, first: Optional[SpeakFirst]) -> Optional[str]:
        if first is None:
            return None
        fingerprint = self.model_fingerprint(first.manifest.architecture, first.character)
        return key_of(first.manifest.architecture, first.character.id, fingerprint, first.options)
