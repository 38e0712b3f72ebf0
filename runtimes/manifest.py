"""What a worker declares about its architecture: capabilities, inputs and option schema.

Shared by both sides (the app renders sliders from it; the worker validates with it).
Standard library only; Python 3.9 syntax.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

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
    hay_say_dependency: bool = False
    """A character converted from the established app's (Hay Say's) lists depends on it (those lists name no
    assets), so the model manager downloads it with the first such character."""
    hay_say_names: Sequence[str] = ()
    """Only the characters of these of the manifest's ``hay_say_names`` depend on it (empty: all of them); e.g.
    hubert-soft, which only so-vits-svc 3.0's characters use."""


@dataclass(frozen=True)
class Reference:
    """A text-to-speech architecture that also takes a recording of the voice to speak like (its reference):
    the app passes the recording with the text, and both sides check its length before any work."""

    required: bool = False
    """True: no job without one (GPT-SoVITS); False: optional (StyleTTS 2 has other style sources)."""
    min_s: float = 0.0
    max_s: float = 0.0
    """0: no upper limit."""
    label: str = "Reference recording (the voice to speak like)"

    def problem(self, seconds: float, peak: float) -> str:
        """Why a recording of ``seconds`` with ``peak`` amplitude cannot be this reference; empty when it can."""
        if peak < 1e-4:
            return "the reference recording is silent"
        if self.min_s and seconds < self.min_s:
            return "the reference recording is %.1f s; it must be at least %g s" % (seconds, self.min_s)
        if self.max_s and seconds > self.max_s:
            return "the reference recording is %.1f s; it must be at most %g s" % (seconds, self.max_s)
        return ""


@dataclass(frozen=True)
class DurationScale:
    """An option whose value scales the output's length (read by the output-length estimate and by the HTTP
    speech route's ``speed``, which prefers the model's own tempo to a stretch afterwards)."""

    option: str
    inverse: bool = False
    """False: the length is multiplied by the value (Piper's ``length_scale``, >1 slower); True: divided by it
    (a speed or tempo, >1 faster)."""


@dataclass(frozen=True)
class Detect:
    """How an imported folder of files is told to hold this architecture's model (the model manager reads it)."""

    model: str
    """Glob of the file that is the model (``*.onnx``, ``G_*.pth``)."""
    beside: Sequence[str] = ()
    """Globs of files that must be beside it (``*.onnx.json``, ``config.json``)."""

    def patterns(self) -> Tuple[str, ...]:
        return (self.model, *self.beside)

    def score(self, names: Iterable[str]) -> int:
        """0: these file names are not this architecture's model; else how many globs they fill (the architecture
        whose rule fills most wins: ``G_*.pth`` + ``config.json`` over ``*.pth`` alone)."""
        names = list(names)
        patterns = self.patterns()
        return len(patterns) if all(any(fnmatchcase(name, pattern) for name in names) for pattern in patterns) else 0

    def describe(self) -> str:
        return " + ".join(self.patterns())


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
    duration_scale: Optional[DurationScale] = None
    """The option that scales the output's length, if one does."""
    pause_option: str = ""
    """The option giving seconds of silence after each sentence (text to speech), if one does."""
    detect: Optional[Detect] = None
    """How a person's own model files are recognised on import; None: none are imported."""
    hay_say_names: Sequence[str] = ()
    """The established app's (Hay Say's) ids of this architecture: its catalogue files are named
    ``<id>.character_models.json`` (so-vits-svc 4: ``so_vits_svc_4``)."""
    reference: Optional[Reference] = None
    """Text to speech that takes a reference recording too (``needs_audio`` stays False: its input is text)."""
    zero_shot: bool = False
    """Speaks or converts in any voice heard in a short recording, with no trained character: its characters are saved
    voices (folders of ``reference.wav`` + ``voice.json``, ``runtimes.voice_folder``), made in the app's Voices panel."""
    licence: str = ""
    """The licence of the weights people use with it (shown where the architecture is chosen and kept in provenance),
    e.g. "CC-BY-NC-4.0 (F5-TTS v1 Base weights): non-commercial use only"."""
    watermark: str = ""
    """The model's own watermark on its outputs, when it has one ("" = none); ``watermark`` is then an option."""
    stems: Sequence[str] = ()
    """A source separator (capability ``separate``): the stems its result holds, in order; its result's audio is shaped
    (stems, channels, samples)."""

    def __post_init__(self) -> None:
        known = {option.name for option in self.options}
        for name in (self.duration_scale.option if self.duration_scale else "", self.pause_option):
            if name and name not in known:
                raise ValueError("%s's manifest names option %r, which it does not declare" % (self.architecture, name))

    def _declared(self, name: str) -> Optional[Option]:
        return next((option for option in self.options if name and option.name == name), None)

    def _number(self, name: str, options: Dict[str, Any]) -> Optional[float]:
        option = self._declared(name)
        return None if option is None else float(options.get(name, option.default))

    def length_factor(self, options: Dict[str, Any]) -> float:
        """How many times its usual length the output is with ``options`` (1.0 when no option scales it)."""
        scale = self.duration_scale
        value = self._number(scale.option, options) if scale else None
        if scale is None or value is None or value <= 0:
            return 1.0
        return 1.0 / value if scale.inverse else value

    def pause_s(self, options: Dict[str, Any]) -> float:
        """Seconds of silence ``options`` add after each sentence."""
        return self._number(self.pause_option, options) or 0.0

    def speed_options(self, speed: float) -> Dict[str, Any]:
        """The options that make the output ``speed`` times as fast in the model itself; empty when no option
        scales the length or ``speed`` is beyond its range (then the caller stretches the result)."""
        if self.duration_scale is None:
            return {}
        option = self._declared(self.duration_scale.option)
        if option is None or speed <= 0:
            return {}
        try:
            return {option.name: option.validate(speed if self.duration_scale.inverse else 1.0 / speed)}
        except ValueError:
            return {}

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
        data["detect"] = dict(model=self.detect.model, beside=list(self.detect.beside)) if self.detect else None
        data["hay_say_names"] = list(self.hay_say_names)
        data["stems"] = list(self.stems)
        data["reference"] = asdict(self.reference) if self.reference else None
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Manifest":
        options: List[Option] = []
        for raw in data.get("options", []):
            options.append(Option(**dict(raw, choices=tuple(raw.get("choices", ())))))
        assets = tuple(Asset(**dict(raw, hay_say_names=tuple(raw.get("hay_say_names", ())))) for raw in data.get("assets", []))
        scale, detect, reference = data.get("duration_scale"), data.get("detect"), data.get("reference")
        fields = dict(data, options=tuple(options), capabilities=tuple(data.get("capabilities", ())), assets=assets,
                      duration_scale=DurationScale(**scale) if scale else None,
                      detect=Detect(str(detect["model"]), tuple(detect.get("beside", ()))) if detect else None,
                      hay_say_names=tuple(data.get("hay_say_names", ())), stems=tuple(data.get("stems", ())),
                      reference=Reference(**reference) if reference else None)
        return cls(**fields)
