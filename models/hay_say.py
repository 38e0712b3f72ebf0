"""The established app's (Hay Say's) catalogue files, read as they are.

``<arch>.character_models.json`` and ``<arch>.multi_speaker_models.json``: lists of ``{"Model Name",
"Files": [{"URL", "Download With", "Download As", "Size (bytes)", "Unzip Strategy"?}], "License"?,
"Creator"?, "Originally Acquired From"?, "Multi-speaker Model Dependency"?, "Symlinks"?}``. The
architecture comes from the file name; ours get their shared assets as dependencies.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Tuple
from urllib.parse import unquote, urlparse

from pydantic import ValidationError

from models.catalogue import Entry, _first_error, entry_id

ARCHITECTURES = {"so_vits_svc_4": "sovits", "rvc": "rvc"}
"""Hay Say's folder names of the architectures this app runs; the others keep their names."""
ASSETS_NEEDED = {"sovits": ("sovits/asset/contentvec",), "rvc": ("rvc/asset/hubert", "rvc/asset/rmvpe.pt")}
SOURCES = {"HUGGINGFACE_HUB": "huggingface", "REQUESTS": "url", "GDOWN": "gdrive", "MEGA": "mega"}
UNZIP = {"UNZIP_IN_PLACE": "in_place", "FLATTEN": "flatten", "REMOVE_OUTERMOST_DIR": "remove_outermost_dir"}
FILE_NAME = re.compile(r"^(?P<arch>[a-z0-9_]+)\.(?P<list>character_models|multi_speaker_models)(\.[^.]+)*\.json$")
HUB_URL = re.compile(r"^https://huggingface\.co/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


def looks_like_hay_say(data: Any) -> bool:
    return isinstance(data, list) and all(isinstance(item, dict) and "Model Name" in item for item in data)


def architecture_of(origin: str) -> Tuple[str, str]:
    """(our architecture id, "character" or "shared") from a Hay Say file name."""
    match = FILE_NAME.match(origin)
    if not match:
        raise ValueError("a Hay Say list must be named <architecture>.character_models.json or "
                         "<architecture>.multi_speaker_models.json (got %s)" % origin)
    arch = match.group("arch")
    return ARCHITECTURES.get(arch, arch), "shared" if match.group("list") == "multi_speaker_models" else "character"


def convert_file(item: Dict[str, Any]) -> Dict[str, Any]:
    method = item.get("Download With")
    if method not in SOURCES:
        raise ValueError("unknown download method %r" % method)
    url = str(item.get("URL", ""))
    converted: Dict[str, Any] = {"source": SOURCES[method], "save_as": item.get("Download As") or url.rsplit("/", 1)[-1]}
    if method == "HUGGINGFACE_HUB":
        match = HUB_URL.match(url)
        if not match:
            raise ValueError("not a Hugging Face file URL: %s" % url)
        converted.update(repo=match.group("repo"), revision=unquote(match.group("rev")), path=unquote(match.group("path")))
        if match.group("type"):
            converted["repo_type"] = match.group("type")[:-1]
    else:
        converted["url"] = url
    if item.get("Size (bytes)") is not None:
        converted["size_bytes"] = item["Size (bytes)"]
    if item.get("Unzip Strategy"):
        converted["unzip"] = UNZIP.get(item["Unzip Strategy"], item["Unzip Strategy"])
    return converted


def convert_entry(item: Dict[str, Any], architecture: str, kind: str) -> Dict[str, Any]:
    depends = list(ASSETS_NEEDED.get(architecture, ()))
    if item.get("Multi-speaker Model Dependency"):
        depends.insert(0, entry_id(architecture, "shared", item["Multi-speaker Model Dependency"]))
    origin = item.get("Originally Acquired From") or ""
    return {
        "name": item["Model Name"],
        "architecture": architecture,
        "kind": kind,
        "files": [convert_file(f) for f in item.get("Files") or []],
        "depends_on": depends if kind == "character" else [],
        "links": [{"target": link["Target"], "save_as": link["As"]} for link in item.get("Symlinks") or []],
        "license": str(item.get("License") or "unspecified").lower().replace("_", "-"),
        "creator": item.get("Creator") or "",
        "origin": origin if urlparse(origin).scheme in ("http", "https") or not origin else "https://" + origin,
    }


def convert_hay_say(data: List[Dict[str, Any]], origin: str) -> Tuple[List[Entry], List[str]]:
    architecture, kind = architecture_of(origin)
    entries, problems = [], []
    for item in data:
        name = item.get("Model Name", "?")
        try:
            entries.append(Entry.model_validate(convert_entry(item, architecture, kind)))
        except ValidationError as exc:
            problems.append("%s: entry %r skipped: %s" % (origin, name, _first_error(exc)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            problems.append("%s: entry %r skipped: %s" % (origin, name, exc))
    return entries, problems
