"""The model catalogue: what can be downloaded, validated with pydantic, one bad entry never fatal.

Format (``{"format": "voicegen-catalogue", "version": 1, "entries": [...]}``), an entry:
``name``, ``architecture`` (an id of ours, ``envs/<id>/``; others are kept and shown as not
installed), ``kind`` (``character``; ``shared``: a multi-speaker model several characters link to;
``asset``: a pretrained file every character of an architecture needs), ``files`` (Hugging Face
``repo``/``path``/``revision``, or a ``url`` with its ``source``; ``save_as``, ``size_bytes``,
``sha256`` when known, ``unzip``), ``depends_on`` (ids of shared models and assets, downloaded once),
``links`` (files of a shared model that appear in the character's folder), ``license``, ``creator``,
``origin`` (where it was first published).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Iterable, List, Literal, Optional, Sequence, Tuple
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.errors import CatalogueError
from runtimes.inspection import Manifest

logger = logging.getLogger(__name__)

FORMAT = "voicegen-catalogue"
VERSION = 1
RUNNABLE_NOTE = "architecture not installed"


def safe_relative(path: str) -> str:
    """A path inside a model folder: relative, no ``..``, no empty parts (catalogues come from the internet)."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    if not parts or path.startswith(("/", "\\")) or any(part in ("..", "", ".") for part in parts) or ":" in parts[0]:
        raise ValueError("%r is not a plain relative path inside the model folder" % path)
    return "/".join(parts)


class FileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["huggingface", "url", "gdrive", "mega"]
    save_as: str
    repo: Optional[str] = None
    path: Optional[str] = None
    revision: str = "main"
    repo_type: Literal["model", "dataset", "space"] = "model"
    url: Optional[str] = None
    size_bytes: Optional[int] = Field(default=None, ge=0)
    sha256: Optional[str] = Field(default=None, pattern="^[0-9a-f]{64}$")
    unzip: Literal["none", "in_place", "flatten", "remove_outermost_dir"] = "none"

    @field_validator("save_as")
    @classmethod
    def _save_as_inside(cls, value: str) -> str:
        return safe_relative(value)

    @model_validator(mode="after")
    def _where_from(self) -> FileSpec:
        if self.source == "huggingface" and not (self.repo and self.path):
            raise ValueError("a huggingface file needs repo and path")
        if self.source != "huggingface" and not self.url:
            raise ValueError("a %s file needs a url" % self.source)
        if self.url and not self.url.startswith(("https://", "http://")):
            raise ValueError("url must be http(s)")
        return self

    def where(self) -> str:
        """Where it comes from, for a person and for the ledger of measured hashes."""
        if self.source == "huggingface":
            return "huggingface.co/%s/resolve/%s/%s" % (self.repo, self.revision, quote(self.path or ""))
        return str(self.url)


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    """A file of the shared model this character depends on."""
    save_as: str

    @field_validator("target", "save_as")
    @classmethod
    def _inside(cls, value: str) -> str:
        return safe_relative(value)


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    architecture: str = Field(pattern="^[a-z0-9_]+$")
    kind: Literal["character", "shared", "asset"] = "character"
    files: Tuple[FileSpec, ...] = Field(min_length=1)
    depends_on: Tuple[str, ...] = ()
    links: Tuple[Link, ...] = ()
    license: str = "unspecified"
    creator: str = ""
    origin: str = ""

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        if "/" in value or "\\" in value or value.startswith(".") or "\x00" in value:
            raise ValueError("a name must not contain slashes or start with a dot")
        return value

    @property
    def id(self) -> str:
        return entry_id(self.architecture, self.kind, self.name)

    @property
    def size_bytes(self) -> Optional[int]:
        sizes = [f.size_bytes for f in self.files]
        return None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)


def entry_id(architecture: str, kind: str, name: str) -> str:
    return {"character": "%s/%s", "shared": "%s/shared/%s", "asset": "%s/asset/%s"}[kind] % (architecture, name)


@dataclass
class Catalogue:
    entries: Dict[str, Entry] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)
    """Entries skipped, by file and name, with why."""
    load_s: float = 0.0

    def add(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.entries[entry.id] = entry  # a later file (the user's) overrides an earlier one

    def get(self, entry_id_or_name: str) -> Entry:
        if entry_id_or_name in self.entries:
            return self.entries[entry_id_or_name]
        named = [e for e in self.entries.values() if e.name == entry_id_or_name and e.kind == "character"]
        if len(named) == 1:
            return named[0]
        if named:
            raise CatalogueError("%r is in several architectures (%s): give its id" % (entry_id_or_name, ", ".join(e.id for e in named)))
        raise CatalogueError("no catalogue entry %r (search the Models tab, or /catalogue)" % entry_id_or_name)

    def search(self, query: str = "", architecture: str = "", kind: str = "character") -> List[Entry]:
        words = query.lower().split()
        return [
            e for e in self.entries.values()
            if (not kind or e.kind == kind) and (not architecture or e.architecture == architecture)
            and all(w in e.name.lower() or w in e.creator.lower() for w in words)
        ]

    def closure(self, entry: Entry) -> List[Entry]:
        """The entry's dependencies (depth first, each once), then the entry."""
        ordered: List[Entry] = []

        def visit(current: Entry, chain: Tuple[str, ...]) -> None:
            for dependency in current.depends_on:
                if dependency in chain:
                    raise CatalogueError("%s depends on itself through %s" % (entry.id, " -> ".join(chain)))
                if dependency not in self.entries:
                    raise CatalogueError("%s needs %s, which no catalogue lists" % (current.id, dependency))
                visit(self.entries[dependency], (*chain, dependency))
            if current not in ordered:
                ordered.append(current)

        visit(entry, (entry.id,))
        return ordered


def parse_entries(data: Any, origin: str, manifests: Sequence[Manifest] = ()) -> Tuple[List[Entry], List[str]]:
    """Entries of one catalogue document (ours, or the established app's lists, read through ``manifests``), and the problems."""
    from models.hay_say import convert_hay_say, looks_like_hay_say

    if looks_like_hay_say(data):
        return convert_hay_say(data, origin, manifests)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CatalogueError("%s is not a catalogue (expected {\"format\": \"%s\", ...} or a Hay Say model list)" % (origin, FORMAT))
    if int(data.get("version", 0)) > VERSION:
        raise CatalogueError("%s is catalogue version %s; this app reads up to %d (update the app)"
                             % (origin, data.get("version"), VERSION))
    entries, problems = [], []
    for index, raw in enumerate(data.get("entries") or []):
        try:
            entries.append(Entry.model_validate(raw))
        except ValidationError as exc:
            name = raw.get("name", "#%d" % index) if isinstance(raw, dict) else "#%d" % index
            problems.append("%s: entry %r skipped: %s" % (origin, name, _first_error(exc)))
    return entries, problems


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return "%s: %s" % (where, error["msg"]) if where else str(error["msg"])


def load_catalogue(paths: Iterable[Path], manifests: Sequence[Manifest] = ()) -> Catalogue:
    """Every catalogue file in order (later ones override entries of earlier ones); a file or entry
    that cannot be read is reported in ``problems`` and skipped. ``manifests``: our architectures (their
    names in the established app's lists)."""
    started = time.perf_counter()
    catalogue = Catalogue()
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries, problems = parse_entries(data, path.name, manifests)
        except (OSError, ValueError, CatalogueError) as exc:
            catalogue.problems.append("%s skipped: %s" % (path.name, exc))
            continue
        catalogue.add(entries)
        catalogue.problems.extend(problems)
    for problem in catalogue.problems:
        logger.warning("catalogue: %s", problem)
    catalogue.load_s = time.perf_counter() - started
    return catalogue


def document(entries: Iterable[Entry]) -> Dict[str, Any]:
    """A catalogue document of ``entries`` (what the conversion script writes)."""
    return {"format": FORMAT, "version": VERSION,
            "entries": [e.model_dump(mode="json", exclude_defaults=True) for e in entries]}
