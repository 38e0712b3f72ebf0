"""The established app's (Hay Say's) catalogue files, read as they are.

``<arch>.character_models.json`` and ``<arch>.multi_speaker_models.json``: lists of ``{"Model Name",
"Files": [{"URL", "Download With", "Download As", "Size (bytes)", "Unzip Strategy"?}], "License"?,
"Creator"?, "Originally Acquired From"?, "Multi-speaker Model Dependency"?, "Symlinks"?}``. The
architecture comes from the file name, read through our architectures' manifests (``hay_say_names``:
Hay Say's ``so_vits_svc_4`` and ``so_vits_svc_3`` are our ``sovits``, the 3's entries named with their version;
the others keep their names); a character of ours depends on the assets its manifest marks ``hay_say_dependency``
(those an asset's ``hay_say_names`` limit to other Hay Say architectures excepted).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Sequence, Tuple
from urllib.parse import unquote, urlparse

from pydantic import ValidationError

from models.catalogue import Entry, _first_error, entry_id
from runtimes.inspection import Manifest

SOURCES = {"HUGGINGFACE_HUB": "huggingface", "REQUESTS": "url", "GDOWN": "gdrive", "MEGA": "mega"}
UNZIP = {"UNZIP_IN_PLACE": "in_place", "FLATTEN": "flatten", "REMOVE_OUTERMOST_DIR": "remove_outermost_dir"}
FILE_NAME = re.compile(r"^(?P<arch>[a-z0-9_]+)\.(?P<list>character_models|multi_speaker_models)(\.[^.]+)*\.json$")
HUB_URL = re.compile(r"^https://huggingface\.co/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


def looks_like_hay_say(data: Any) -> bool:
    return isinstance(data, list) and all(isinstance(item, dict) and "Model Name" in item for item in data)


def architecture_of(origin: str, manifests: Sequence[Manifest] = ()) -> Tuple[str, str]:
    """(our architecture id, "character" or "shared") from a Hay Say file name."""
    match = FILE_NAME.match(origin)
    if not match:
        raise ValueError("a Hay Say list must be named <architecture>.character_models.json or "
                         "<architecture>.multi_speaker_models.json (got %s)" % origin)
    arch = match.group("arch")
    ours = next((m.architecture for m in manifests if arch in m.hay_say_names), arch)
    return ours, "shared" if match.group("list") == "multi_speaker_models" else "character"


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


def assets_needed(architecture: str, manifests: Sequence[Manifest], hay_say_arch: str = "") -> List[str]:
    """Catalogue ids of the assets a converted character of ``architecture`` (Hay Say's ``hay_say_arch``) depends on
    (its manifest says which)."""
    return [entry_id(architecture, "asset", asset.name) for m in manifests if m.architecture == architecture
            for asset in m.assets if asset.hay_say_dependency
            and (not asset.hay_say_names or not hay_say_arch or hay_say_arch in asset.hay_say_names)]


def entry_name(name: str, hay_say_arch: str, manifests: Sequence[Manifest]) -> str:
    """An architecture of ours that runs several of Hay Say's (``sovits``: so-vits-svc 4 and 3, whose lists share
    names such as "Apple Bloom") keeps their entries apart (ids, folders): the first's names as they are, the
    others' with their version, e.g. "Apple Bloom (so-vits-svc 3)"."""
    ours = next((m for m in manifests if hay_say_arch in m.hay_say_names), None)
    if ours is None or not hay_say_arch or ours.hay_say_names[0] == hay_say_arch:
        return name
    family, _, version = hay_say_arch.rpartition("_")
    return "%s (%s %s)" % (name, family.replace("_", "-"), version) if family else "%s (%s)" % (name, hay_say_arch)


def convert_entry(item: Dict[str, Any], architecture: str, kind: str, manifests: Sequence[Manifest] = (),
                  hay_say_arch: str = "") -> Dict[str, Any]:
    depends = assets_needed(architecture, manifests, hay_say_arch)
    if item.get("Multi-speaker Model Dependency"):
        depends.insert(0, entry_id(architecture, "shared", entry_name(item["Multi-speaker Model Dependency"], hay_say_arch, manifests)))
    origin = item.get("Originally Acquired From") or ""
    return {
        "name": entry_name(item["Model Name"], hay_say_arch, manifests),
        "architecture": architecture,
        "kind": kind,
        "files": [convert_file(f) for f in item.get("Files") or []],
        "depends_on": depends if kind == "character" else [],
        "links": [{"target": link["Target"], "save_as": link["As"]} for link in item.get("Symlinks") or []],
        "license": str(item.get("License") or "unspecified").lower().replace("_", "-"),
        "creator": item.get("Creator") or "",
        "origin": origin if urlparse(origin).scheme in ("http", "https") or not origin else "https://" + origin,
    }


def convert_hay_say(data: List[Dict[str, Any]], origin: str, manifests: Sequence[Manifest] = ()) -> Tuple[List[Entry], List[str]]:
    """``manifests``: our architectures, whose ``hay_say_names`` and assets the conversion reads."""
    architecture, kind = architecture_of(origin, manifests)
    match = FILE_NAME.match(origin)
    hay_say_arch = match.group("arch") if match else ""
    entries, problems = [], []
    for item in data:
        name = item.get("Model Name", "?")
        try:
            entries.append(Entry.model_validate(convert_entry(item, architecture, kind, manifests, hay_say_arch)))
        except ValidationError as exc:
            problems.append("%s: entry %r skipped: %s" % (origin, name, _first_error(exc)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            problems.append("%s: entry %r skipped: %s" % (origin, name, exc))
    return entries, problems
