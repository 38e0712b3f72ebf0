"""The adapter contract: what every architecture's adapter promises, checked through the real supervisor
and a real worker in the architecture's own env. An architecture joins with one line in its test module::

    TestContract = adapter_contract("praat")

which runs, against one warm worker for the module:

* the manifest: names, kinds, defaults within their ranges and among their choices, capabilities that agree
  with ``needs_text``/``needs_audio``, the input rate declared by a converter, a round trip through JSON,
  and the worker sending the same manifest the app reads;
* load, generate (with no options: the defaults), unload and load again, in one worker;
* progress: a job reports how far it is (fractions from 0 to 1, never going back);
* cancel: a job cancelled as it goes out to the worker ends (at the adapter's next check, keeping the
  worker; or, past the graceful window, by the supervisor stopping it), and the next job runs;
* bad inputs: an unknown option, an out-of-range value, missing text or recording, an unknown character
  are refused with one clear line naming the problem (no traceback), and the worker keeps serving;
* the output: float32, mono, finite, not silent, at the rate the loaded character declares
  (``details()["sample_rate"]``); a converter's as long as its input;
* streaming: a take asked for in pieces arrives in pieces (text to speech: more than one for several
  sentences) that join to the take the job returns.

What an architecture supplies comes from its manifest (the character: its first builtin one; text or a
recording, by ``needs_text``/``needs_audio``; the recording's rate) or from the arguments of its one line.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np
import pytest

from runtimes.environments import EnvironmentBuilder, EnvSpec
from runtimes.errors import BadRequestError, JobCancelledError
from runtimes.manifest import OPTION_KINDS, Manifest, Option
from runtimes.memory import SystemRamSource
from runtimes.registry import discover, read_manifest
from runtimes.supervisor import JobRequest, JobResult, Supervisor, SupervisorSettings
from tests.conftest import PROJECT_ROOT, TEST_SPECS

CAPABILITY_NEEDS = {"tts": "needs_text", "convert": "needs_audio"}
"""Each capability and the input it needs."""
SENTENCE = "The quick brown fox jumps over the lazy dog."
SAMPLE_S = 1.2
"""The recording a converter converts: one phrase."""
LONG_S = 20.0
LONG_SENTENCES = 12
"""What a cancelled job is given: enough work that the cancel meets it running."""
GRACEFUL_STOP_S = 30.0
"""How long a cancelled job may run on to its adapter's next check before the supervisor stops the worker: one
step (a slice, a sentence) of a torch model on a busy two-core machine (the app's default, 3 s, is not)."""
UNKNOWN_CHARACTER = "no-such-character"
UNKNOWN_OPTION = "no_such_option"
SILENT_PEAK = 1e-3
REFERENCE_RATE = 24000
REFERENCE_S = 4.0
"""The reference recording an architecture that needs one is given (within every such architecture's range)."""
STREAM_SENTENCES = 3


def voiced_phrases(sample_rate: int, seconds: float) -> np.ndarray:
    """Vowel-like phrases (a pitch moving around 160 Hz, with harmonics) of 1.2 s with 0.4 s pauses: every
    pitch method finds a voice in it, and a converter that splits at pauses gets several pieces."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    phase = 2 * np.pi * np.cumsum(160 + 25 * np.sin(2 * np.pi * 1.5 * t)) / sample_rate
    audio = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.2 * ((t % 1.6) < 1.2)
    return np.asarray(audio, dtype=np.float32)


@dataclass
class Subject:
    """The architecture under contract: its warm supervisor, manifest and the character the cases use."""

    supervisor: Supervisor
    spec: EnvSpec
    manifest: Manifest
    character: str
    character_path: Optional[str]
    cancel_options: Mapping[str, Any]

    def request(self, long: bool = False, **changes: Any) -> JobRequest:
        """A job for the character with no options (the worker fills in the defaults)."""
        text = " ".join([SENTENCE] * (LONG_SENTENCES if long else 1)) if self.manifest.needs_text else ""
        rate = self.manifest.input_sample_rate
        audio = voiced_phrases(rate, LONG_S if long else SAMPLE_S) if self.manifest.needs_audio and rate else None
        reference = self.manifest.reference
        if audio is None and reference is not None and reference.required:  # text to speech in the voice of a recording
            rate = REFERENCE_RATE
            audio = voiced_phrases(rate, max(reference.min_s + 1.0, REFERENCE_S))
        request = JobRequest(architecture=self.spec.name, character=self.character, character_path=self.character_path,
                             text=text, audio=audio, audio_sample_rate=rate if audio is not None else None)
        return replace(request, **changes)

    def live_rows(self) -> List[Dict[str, Any]]:
        return [row for row in self.supervisor.status() if row["architecture"] == self.spec.name and row["pid"]]

    def warm(self) -> int:
        """Load the character unless its worker holds it; the worker's pid."""
        if not any(self.character in row["characters"] for row in self.live_rows()):
            self.supervisor.generate(self.request())
        return int(self.worker()["pid"])

    def worker(self) -> Dict[str, Any]:
        """The status row of the architecture's live worker."""
        rows = self.live_rows()
        assert len(rows) == 1, "one live %s worker expected, status: %r" % (self.spec.name, self.supervisor.status())
        return rows[0]

    def declared_rate(self) -> int:
        """The output rate the loaded character declares in its details."""
        [loaded] = [c for c in self.worker()["loaded"] if c["id"] == self.character]
        rate = loaded["details"].get("sample_rate")
        assert isinstance(rate, int) and rate > 0, "details() must declare the output's sample_rate: %r" % loaded["details"]
        return rate

    def check_output(self, result: JobResult, request: JobRequest) -> None:
        audio = result.audio
        assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0, "float32 mono: %s %s" % (audio.dtype, audio.shape)
        assert np.isfinite(audio).all(), "non-finite samples in the output"
        assert float(np.abs(audio).max()) > SILENT_PEAK, "the output is silent (peak %g)" % float(np.abs(audio).max())
        assert result.sample_rate == self.declared_rate(), "the output's rate is not the one its character declares"
        if request.audio is not None and request.audio_sample_rate:  # as long as its input, times what the options make it
            expected_s = request.audio.size / request.audio_sample_rate * self.manifest.length_factor(self.manifest.resolve_options({}))
            seconds_out = audio.size / result.sample_rate
            assert abs(seconds_out - expected_s) < 0.1 * expected_s, "%.2f s expected, %.2f s out" % (expected_s, seconds_out)


def out_of_range(option: Option) -> Any:
    """A value beyond the first bound ``option`` has; None when it has none."""
    step = option.step or 1
    if option.maximum is not None:
        return type(option.default)(option.maximum + 10 * step)
    if option.minimum is not None:
        return type(option.default)(option.minimum - 10 * step)
    return None


def bad_input(manifest: Manifest, case: str) -> Optional[Tuple[Dict[str, Any], str]]:
    """The request's changes that make ``case``, and a pattern its error message must match (None: the
    architecture has nothing to get wrong that way)."""
    if case == "unknown option":
        return {"options": {UNKNOWN_OPTION: 1}}, UNKNOWN_OPTION
    if case == "out-of-range value":
        bounded = [o for o in manifest.options if o.kind in ("float", "int") and out_of_range(o) is not None]
        return ({"options": {bounded[0].name: out_of_range(bounded[0])}}, re.escape(bounded[0].name)) if bounded else None
    if case == "missing input":
        missing: Dict[str, Any] = {"text": ""} if manifest.needs_text else {}
        if manifest.needs_audio:
            missing.update(audio=None, audio_sample_rate=None)
        return missing, "text|recording|audio"
    return {"character": UNKNOWN_CHARACTER, "character_path": None}, UNKNOWN_CHARACTER


BAD_INPUTS = ("unknown option", "out-of-range value", "missing input", "unknown character")


def check_option(option: Option) -> None:
    name = option.name
    assert re.fullmatch(r"[a-z][a-z0-9_]*", name), "option names are snake_case identifiers: %r" % name
    assert option.label.strip(), "option %r has no label" % name
    assert option.kind in OPTION_KINDS, "option %r has the unknown kind %r" % (name, option.kind)
    assert option.validate(option.default) == option.default, "option %r: its default %r is not valid" % (name, option.default)
    numeric = option.kind in ("float", "int")
    expected_type: Any = {"float": (int, float), "int": int, "bool": bool, "choice": str, "text": str}[option.kind]
    assert isinstance(option.default, expected_type) and (option.kind == "bool" or not isinstance(option.default, bool)), (
        "option %r (%s) has a default of type %s" % (name, option.kind, type(option.default).__name__))
    if not numeric:
        assert option.minimum is None and option.maximum is None and option.step is None, "option %r: a range on a %s" % (name, option.kind)
    if option.minimum is not None and option.maximum is not None:
        assert option.minimum < option.maximum, "option %r: minimum %g >= maximum %g" % (name, option.minimum, option.maximum)
    assert option.step is None or option.step > 0, "option %r: step %r" % (name, option.step)
    if option.kind == "choice":
        choices = list(option.choices)
        assert len(choices) >= 2 and len(set(choices)) == len(choices), "option %r: choices %r" % (name, choices)
        assert all(isinstance(c, str) and c for c in option.choices), "option %r: choices must be names" % name
    else:
        assert not option.choices, "option %r (%s) has choices" % (name, option.kind)


class AdapterContract:
    """The cases; ``adapter_contract`` makes one subclass per architecture (collected as its module's ``Test*``)."""

    architecture = ""
    character: Optional[str] = None
    models: Optional[str] = None
    cancel_options: Mapping[str, Any] = {}

    @pytest.fixture(scope="class")
    def subject(self, request: pytest.FixtureRequest, builder: EnvironmentBuilder,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subject]:
        spec = discover([PROJECT_ROOT / "envs", TEST_SPECS])[self.architecture]
        manifest = read_manifest(spec)
        models: Optional[Path] = request.getfixturevalue(self.models) if self.models else None
        character = self.character or next(iter(manifest.builtin_characters), "")
        assert character, "%s has no builtin character: name one (and the fixture with its folder) in its contract line" % spec.name
        path = str(models / "characters" / character) if models is not None else None
        where: Dict[str, Any] = {"assets_dir": models / "assets"} if models is not None else {}
        settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path_factory.mktemp("run"),
                                      graceful_stop_s=GRACEFUL_STOP_S, **where)
        supervisor = Supervisor(settings, {spec.name: spec}, lambda spec, progress: builder.ensure(spec), memory=SystemRamSource())
        yield Subject(supervisor, spec, manifest, character, path, self.cancel_options)
        supervisor.shutdown()

    def test_manifest_is_valid(self, subject: Subject) -> None:
        manifest = subject.manifest
        assert manifest.architecture == subject.spec.name, "the manifest names %r, its spec %r" % (manifest.architecture, subject.spec.name)
        assert manifest.display_name.strip() and manifest.version.strip()
        assert manifest.capabilities and set(manifest.capabilities) <= set(CAPABILITY_NEEDS), manifest.capabilities
        for capability, needs in CAPABILITY_NEEDS.items():
            assert (capability in manifest.capabilities) == getattr(manifest, needs), "%r in capabilities but %s is %s" % (
                capability, needs, getattr(manifest, needs))
        if manifest.needs_audio:
            assert isinstance(manifest.input_sample_rate, int) and 8000 <= manifest.input_sample_rate <= 192000, (
                "a converter declares the rate it takes: %r" % manifest.input_sample_rate)
        else:
            assert manifest.input_sample_rate is None, "only an architecture that takes a recording has an input rate"
        names = [option.name for option in manifest.options]
        assert len(set(names)) == len(names), "option names repeat: %s" % names
        for option in manifest.options:
            check_option(option)
        assert all(key.strip() and label.strip() for key, label in manifest.builtin_characters.items())
        assets = [asset.name for asset in manifest.assets]
        assert len(set(assets)) == len(assets), "asset names repeat: %s" % assets
        known = {o.name: o for o in manifest.options}
        for asset in manifest.assets:
            for need in filter(None, asset.needed_for.split(",")):
                name, _, value = need.partition("=")
                assert name in known and (not value or value in known[name].choices), "asset %s: needed for %r?" % (asset.name, need)
        assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest, "the manifest does not survive JSON"

    def test_defaults_resolve(self, subject: Subject) -> None:
        manifest = subject.manifest
        defaults = manifest.resolve_options({})
        assert defaults == {option.name: option.default for option in manifest.options}
        assert manifest.resolve_options(defaults) == defaults

    def test_load_generate_unload_in_one_worker(self, subject: Subject) -> None:
        supervisor, request = subject.supervisor, subject.request()
        subject.check_output(supervisor.generate(request), request)
        worker = subject.worker()
        assert subject.character in worker["characters"]
        [live] = [w for w in supervisor.table.live(subject.spec.name) if w.process.pid == worker["pid"]]
        assert live.process.manifest == subject.manifest, "the worker sent another manifest than the app reads"
        assert supervisor.unload(subject.spec.name, subject.character, subject.character_path)
        assert subject.character not in subject.worker()["characters"]
        again = supervisor.generate(request)
        assert again.timings_s.get("load_s", 0) > 0 and "spawn_s" not in again.timings_s, "loaded again in the same worker"
        assert subject.worker()["pid"] == worker["pid"]
        subject.check_output(again, request)

    def test_progress_is_reported(self, subject: Subject) -> None:
        reports: List[Tuple[Optional[float], str]] = []
        subject.supervisor.generate(subject.request(), progress=lambda fraction, message: reports.append((fraction, message)))
        fractions = [fraction for fraction, _ in reports if fraction is not None]
        assert fractions, "the job reported no fraction done: %r" % reports
        assert all(0.0 <= f <= 1.0 for f in fractions) and fractions == sorted(fractions), "fractions %r" % fractions
        assert all(message.strip() for _, message in reports)

    def test_cancel_ends_the_job_and_the_next_one_runs(self, subject: Subject) -> None:
        supervisor = subject.supervisor
        pid = subject.warm()  # the cancel meets the job itself, not a start or a load
        cancel = threading.Event()
        cancelled_at: List[float] = []

        def cancel_at_once(fraction: Optional[float], message: str) -> None:
            if not cancel.is_set():  # the first report comes as the job goes out to the worker
                cancelled_at.append(time.monotonic())
                cancel.set()

        with pytest.raises(JobCancelledError):
            supervisor.generate(subject.request(long=True, options=dict(subject.cancel_options)), progress=cancel_at_once, cancel=cancel)
        took_s = time.monotonic() - cancelled_at[0]
        assert took_s < supervisor.settings.graceful_stop_s + 10, "the cancel took %.1f s" % took_s
        rows = [row for row in supervisor.status() if row["architecture"] == subject.spec.name]
        held_back = [row for row in rows if row["state"] in ("backoff", "failed") and row["characters"] in ([], [subject.character])]
        assert not held_back, "a cancel is not a crash: %r" % held_back
        if any(row["pid"] == pid for row in rows):  # a cooperative cancel: the worker stays and serves
            assert subject.worker()["state"] == "ready"
        request = subject.request()
        subject.check_output(supervisor.generate(request), request)

    def test_a_streamed_take_arrives_in_pieces_that_join_to_it(self, subject: Subject) -> None:
        """Text to speech streams per sentence (or a smaller unit): several sentences arrive as several pieces; a converter
        may send its take as one. The pieces, at the declared rate, joined are the take the job returns."""
        text = " ".join([SENTENCE] * STREAM_SENTENCES) if subject.manifest.needs_text else ""
        pieces: List[Tuple[np.ndarray, int]] = []
        request = subject.request(text=text)
        result = subject.supervisor.generate(request, on_chunk=lambda audio, rate: pieces.append((audio.copy(), rate)))
        subject.check_output(result, request)
        assert pieces and {rate for _, rate in pieces} == {result.sample_rate}, "pieces at %s" % {rate for _, rate in pieces}
        if subject.manifest.needs_text:
            assert len(pieces) >= 2, "%d sentences came as %d piece(s): text to speech streams" % (STREAM_SENTENCES, len(pieces))
        np.testing.assert_array_equal(np.concatenate([audio for audio, _ in pieces]), result.audio)

    @pytest.mark.parametrize("case", BAD_INPUTS)
    def test_bad_input_is_a_clear_error(self, subject: Subject, case: str) -> None:
        bad = bad_input(subject.manifest, case)
        if bad is None:
            pytest.skip("%s has no option with a range" % subject.spec.name)
        changes, pattern = bad
        pid = subject.warm()
        with pytest.raises(BadRequestError) as caught:
            subject.supervisor.generate(subject.request(**changes))
        message = caught.value.message
        assert re.search(pattern, message), "%s: the error does not name it: %r" % (case, message)
        assert "Traceback" not in message and "\n" not in message and len(message) < 300, "not one clear line: %r" % message
        assert subject.worker()["pid"] == pid, "the worker did not survive a bad request"


def adapter_contract(architecture: str, character: Optional[str] = None, models: Optional[str] = None,
                     cancel_options: Optional[Mapping[str, Any]] = None) -> type:
    """The contract cases for one architecture, as a test class.

    ``character``: the one to load (default: the manifest's first builtin character). ``models``: the name of
    a fixture giving a folder laid out as the data folder (``characters/<character>/``, ``assets/``), for
    architectures whose characters are folders. ``cancel_options``: options that make a job long enough for a
    cancel to meet it running (the fake's ``sleep_s``), or its steps short enough to end soon after one."""
    attributes = {"architecture": architecture, "character": character, "models": models, "cancel_options": dict(cancel_options or {})}
    return type("TestAdapterContract", (AdapterContract,), attributes)
