"""What a worker declares about its architecture: capabilities, inputs and option schema.

Shared by both sides (the app renders sliders from it; the worker validates with it).
Standard library only; Python 3.9 syntax.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

OPTION_KINDS = ("float", "int", "bool", "choice", "text")


@dataclass(frozen=True)
class Option:
    """One generation option, with the range and default people of this architecture expect."""

    name: str
    label: str
    kind: str
    default: Any
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    step: Optional[float] = None
    choices: Sequence[str] = ()
    help: str = ""

    def validate(self, value: Any) -> Any:
        """Return ``value`` coerced to this option's type; raise ``ValueError`` naming the problem."""
        if self.kind in ("float", "int"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise ValueError("option %r must be a number, got %r" % (self.name, value)) from None
            if not math.isfinite(value):
                raise ValueError("option %r must be a finite number, got %r" % (self.name, value))
            if self.minimum is not None and value < self.minimum:
                raise ValueError("option %r must be at least %g, got %g" % (self.name, self.minimum, value))
            if self.maximum is not None and value > self.maximum:
                raise ValueError("option %r must be at most %g, got %g" % (self.name, self.maximum, value))
            return int(round(value)) if self.kind == "int" else float(value)
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError("option %r must be true or false, got %r" % (self.name, value))
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError("option %r must be one of %s, got %r" % (self.name, ", ".join(self.choices), value))
            return value
        if not isinstance(value, str):
            raise ValueError("option %r must be text, got %r" % (self.name, value))
        return value


@dataclass(frozen=True)
class Asset:
    """A pretrained file or folder every character of an architecture shares, under ``<data>/assets/``."""

    name: str
    """Its path under the assets folder (a folder for Hugging Face models, a file otherwise)."""
    label: str
    source: str
    """Where to get it, for a person (the model manager downloads it)."""
    needed_for: str = ""
    """Empty: every job needs it; else the options or option values that need it, comma-separated
    (e.g. "f0_method=rmvpe")."""


@dataclass(frozen=True)
class Manifest:
    """Everything the app needs to know about an architecture without loading it."""

    architecture: str
    display_name: str
    version: str
    capabilities: Sequence[str]
    needs_text: bool
    needs_audio: bool
    input_sample_rate: Optional[int] = None
    options: Sequence[Option] = ()
    builtin_characters: Dict[str, str] = field(default_factory=dict)
    assets: Sequence[Asset] = ()

    def option(self, name: str) -> Option:
        for option in self.options:
            if option.name == name:
                return option
        raise KeyError(name)

    def resolve_options(self, given: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        """Defaults overlaid with ``given``; unknown names and bad values raise ``ValueError``."""
        given = dict(given or {})
        known = {option.name for option in self.options}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(
                "unknown option(s) for %s: %s (known: %s)"
                % (self.architecture, ", ".join(unknown), ", ".join(sorted(known)) or "none")
            )
        resolved: Dict[str, Any] = {}
        for option in self.options:
            resolved[option.name] = option.validate(given[option.name]) if option.name in given else option.default
        return resolved

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["capabilities"] = list(self.capabilities)
        data["options"] = [dict(asdict(option), choices=list(option.choices)) for option in self.options]
        data["assets"] = [asdict(asset) for asset in self.assets]
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Manifest":
        options: List[Option] = []
        for raw in data.get("options", []):
            options.append(Option(**dict(raw, choices=tuple(raw.get("choices", ())))))
        assets = tuple(Asset(**raw) for raw in data.get("assets", []))
        fields = dict(data, options=tuple(options), capabilities=tuple(data.get("capabilities", ())), assets=assets)
        return cls(**fields)
