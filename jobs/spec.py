"""What a person asked for: everything needed to run a job again (after a restart, a Retry, a re-generate)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, Optional

EDITABLE = ("architecture", "character", "text", "options", "output_format", "preprocess", "postprocess", "use_cache", "speak_with",
            "stream", "cover")
"""What a person may change for another take: everything they chose, not the file the server reads."""


@dataclass(frozen=True)
class JobSpec:
    architecture: str
    character: str
    text: str = ""
    audio_path: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)
    output_format: str = "wav"
    preprocess: Optional[Dict[str, Any]] = None
    postprocess: Optional[Dict[str, Any]] = None
    use_cache: bool = True
    speak_with: Optional[Dict[str, Any]] = None
    stream: bool = False
    """The take is wanted in pieces as they are made (post-processing then runs on the stream: ``pipeline.streaming``)."""
    cover: Optional[Dict[str, Any]] = None
    """A song cover (``app.covers``): the recording is a song, separated into stems (``separator``, ``separator_options``),
    its vocals converted by this job's architecture and character, and remixed (``remix``: ``pipeline.remix.RemixOptions``)."""

    def request(self) -> Dict[str, Any]:
        """The columns' ``request``: what is not a column of its own."""
        kept = asdict(self)
        for name in ("architecture", "character", "text", "audio_path"):
            kept.pop(name)
        return kept

    @classmethod
    def from_row(cls, row: Dict[str, Any]) -> JobSpec:
        request = dict(row.get("request") or {})
        known = {name: request[name] for name in ("options", "output_format", "preprocess", "postprocess", "use_cache", "speak_with",
                                                       "stream", "cover") if name in request}
        return cls(architecture=row["architecture"], character=row["character"], text=row.get("text") or "",
                   audio_path=row.get("input_path"), **known)

    def edited(self, changes: Dict[str, Any]) -> JobSpec:
        """Another take with a person's changes: only what a person may set (never where its recording is read from:
        that is only ever the job's kept copy or a new upload)."""
        unknown = sorted(set(changes) - set(asdict(self)))
        if unknown:
            raise ValueError("a job has no setting %s" % ", ".join(repr(name) for name in unknown))
        fixed = sorted(set(changes) - set(EDITABLE))
        if fixed:
            raise ValueError("%s cannot be edited: another take uses the job's own recording (or upload a new one)"
                             % ", ".join(repr(name) for name in fixed))
        return replace(self, **changes)

    def with_input(self, path: Optional[str]) -> JobSpec:
        """Where the job service kept its copy of the recording (never a person's choice)."""
        return replace(self, audio_path=path)
