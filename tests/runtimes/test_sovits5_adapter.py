"""so-vits-svc 5.0 through the supervisor, in its own real env (our model, openai-whisper, torchcrepe; CPU torch),
with tiny random characters and assets built by our model classes (tests/builders/build_sovits5_character.py): an
exported one (sovits5.0.pth + base.yaml, two singers) and one in the established app's layout (a training
checkpoint carrying its config). Random weights say nothing about the voice: the options are checked where the
model receives them (the worker's log line) and by what they change, the audio by its rate, length and finiteness.

CREPE 'full' (upstream's default) is slow on a shared CPU (RTF ~5): most cases ask for 'crepe-tiny'. The env's
cases are heavy_env; the manifest's facts and folder descriptions that need no torch run by default."""

from __future__ import annotations

import re
import shutil
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Iterator, List

import numpy as np
import pytest

from runtimes.adapters.sovits5.adapter import MANIFEST, Sovits5Adapter
from runtimes.environments import EnvSpec
from runtimes.errors import ArchitectureUnavailableError, BadRequestError
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import PROJECT_ROOT, SupervisorFactory
from tests.contract import adapter_contract, voiced_phrases
from tests.sovits5_fixtures import sovits5_models, sovits5_python, sovits5_spec

__all__ = ["sovits5_models", "sovits5_python", "sovits5_spec"]  # fixtures this module uses by name

RATE_IN = 44100
RATE_OUT = 32000
QUICK = {"f0_method": "crepe-tiny"}

TestContract = pytest.mark.heavy_env(pytest.mark.slow(adapter_contract("sovits5", "tiny", models="sovits5_models", cancel_options=QUICK)))


def voiced(seconds: float = 2.0) -> np.ndarray:
    return voiced_phrases(RATE_IN, seconds)


def job(models: Path, character: str = "tiny", audio: Any = None, **options: Any) -> JobRequest:
    return JobRequest(architecture="sovits5", character=character, character_path=str(models / "characters" / character),
                      audio=voiced() if audio is None else audio, audio_sample_rate=RATE_IN,
                      options=MANIFEST.resolve_options(dict(QUICK, **options)))


@pytest.fixture(scope="module")
def sovits5(tmp_path_factory: pytest.TempPathFactory, sovits5_spec: EnvSpec, sovits5_python: Path,
            sovits5_models: Path) -> Iterator[Supervisor]:
    """One warm worker for the module (torch, whisper and CREPE take seconds to import); every test leaves it serving."""
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path_factory.mktemp("run"), assets_dir=sovits5_models / "assets",
                                  graceful_stop_s=30.0)
    supervisor = Supervisor(settings, {"sovits5": sovits5_spec}, lambda spec, progress: sovits5_python, memory=SystemRamSource())
    yield supervisor
    supervisor.shutdown()


def log_lines(supervisor: Supervisor) -> List[str]:
    [worker] = supervisor.table.live()
    return list(worker.process.log_tail)


# --- no env: the manifest's facts and folder descriptions (standard library) ---

def test_manifest_facts_for_the_catalogue_and_import() -> None:
    assert MANIFEST.hay_say_names == ("so_vits_svc_5",)
    assert {asset.name for asset in MANIFEST.assets} == {"whisper-medium.pt", "whisper-large-v2.pt", "hubert-soft-0d54a1f4.pt"}
    # the established app's characters are first-generation (v1) models: whisper medium is what they need
    assert [asset.name for asset in MANIFEST.assets if asset.hay_say_dependency] == ["whisper-medium.pt"]
    assert MANIFEST.detect is not None
    assert MANIFEST.detect.score(["sovits5.0_1300.pt", "singer/Applejack (singing).spk.npy"]) == 2  # the established app's layout
    assert MANIFEST.detect.score(["sovits5.0.pth", "base.yaml", "singer/me.spk.npy"]) == 2
    assert MANIFEST.detect.score(["G_100.pth", "config.json"]) == 0  # so-vits-svc 3/4
    assert MANIFEST.detect.score(["model.pth", "added.index"]) == 0  # RVC
    options = {option.name: option for option in MANIFEST.options}
    assert (options["pitch_shift_semitones"].minimum, options["pitch_shift_semitones"].maximum) == (-36, 36)
    assert options["f0_method"].default == "crepe" and "crepe-tiny" in options["f0_method"].choices


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"G_0.pth": b"x", "config.json": b"{}"}, "so-vits-svc 3/4 model"),
        ({"base.yaml": b"x", "singer/a.spk.npy": b"x"}, "no so-vits-svc 5.0 checkpoint"),
        ({"a.pth": b"x", "b.pt": b"x", "a.npy": b"x"}, "2 checkpoints .*keep one"),
        ({"sovits5.0.pth": b"x", "base.yaml": b"x"}, "no singer embedding"),
        ({"sovits5.0.pth": b"not a zip", "base.yaml": b"x", "a.npy": b"x"}, "sovits5.0.pth cannot be read"),
    ],
)
def test_folders_that_are_not_characters_say_why(tmp_path: Path, files: Dict[str, bytes], expected: str) -> None:
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    info = Sovits5Adapter.describe(str(tmp_path))
    assert not info.usable
    assert re.search(expected, info.problem), info.problem


# --- the env ---

@pytest.mark.heavy_env
def test_folders_described_from_the_tiny_models(sovits5_models: Path) -> None:
    characters = sovits5_models / "characters"
    tiny = Sovits5Adapter.describe(str(characters / "tiny"))
    assert tiny.usable and tiny.version == "5.0 v2" and list(tiny.speakers) == ["Alto", "Bass"] and "singer" not in tiny.unavailable
    training = Sovits5Adapter.describe(str(characters / "tiny-training"))
    assert training.usable and list(training.speakers) == ["Tiny"] and "singer" in training.unavailable
    assert Sovits5Adapter.describe(str(characters / "tiny-v1")).version == "5.0 v1"
    assert "so-vits-svc 3/4" in Sovits5Adapter.describe(str(characters / "sovits4")).problem
    assert "no singer embedding" in Sovits5Adapter.describe(str(characters / "no-singer")).problem


@pytest.mark.heavy_env
@pytest.mark.slow
def test_converts_both_layouts_at_32_khz_and_the_inputs_length(sovits5: Supervisor, sovits5_models: Path) -> None:
    audio = voiced(3.0)
    for character in ("tiny", "tiny-training", "tiny-v1"):
        result = sovits5.generate(job(sovits5_models, character, audio=audio))
        assert result.sample_rate == RATE_OUT
        assert abs(result.audio.size / RATE_OUT - audio.size / RATE_IN) < 0.05 * audio.size / RATE_IN
        assert np.isfinite(result.audio).all() and float(np.abs(result.audio).max()) > 1e-3
    [row] = sovits5.status()
    assert sorted(row["characters"]) == ["tiny", "tiny-training", "tiny-v1"]  # one worker, the encoders loaded once each


@pytest.mark.heavy_env
@pytest.mark.slow
def test_each_option_reaches_the_model(sovits5: Supervisor, sovits5_models: Path) -> None:
    base = sovits5.generate(job(sovits5_models, singer="Alto")).audio
    shifted = sovits5.generate(job(sovits5_models, singer="Alto", pitch_shift_semitones=7)).audio
    call = next(line for line in reversed(log_lines(sovits5)) if "so-vits-svc 5.0 tiny:" in line)
    assert "singer='Alto' pitch_shift_semitones=7 f0_method=crepe-tiny" in call, call
    other = sovits5.generate(job(sovits5_models, singer="Bass", f0_method="crepe")).audio
    call = next(line for line in reversed(log_lines(sovits5)) if "so-vits-svc 5.0 tiny:" in line)
    assert "singer='Bass' pitch_shift_semitones=0 f0_method=crepe " in call, call
    assert base.shape == shifted.shape == other.shape
    np.testing.assert_array_equal(sovits5.generate(job(sovits5_models, singer="Alto")).audio, base)  # a take repeats
    assert float(np.abs(base - shifted).max()) > 1e-3 and float(np.abs(base - other).max()) > 1e-3


@pytest.mark.heavy_env
@pytest.mark.parametrize(
    ("character", "audio", "options", "expected"),
    [
        ("tiny", np.zeros(RATE_IN, dtype=np.float32), {}, "no voice found in the recording: it is silent"),
        ("tiny", np.zeros(1, dtype=np.float32), {}, "too short to convert"),
        ("tiny", None, {"singer": "Soprano"}, "unknown singer 'Soprano' .*Alto, Bass"),
        ("sovits4", None, {}, "so-vits-svc 3/4 model .*not a so-vits-svc 5.0 one"),
        ("no-singer", None, {}, "no singer embedding"),
        ("pickled-singer", None, {}, "singer file Evil.spk.npy cannot be read .*plain .npy"),
        ("no-config", None, {}, "sovits5.0.pth does not match its config: .*differ in shape"),  # upstream's full-size v2 config
    ],
)
def test_bad_inputs_are_clear_errors(sovits5: Supervisor, sovits5_models: Path, character: str, audio: Any, options: Dict[str, Any],
                                     expected: str) -> None:
    with pytest.raises(BadRequestError, match=expected):
        sovits5.generate(job(sovits5_models, character, audio=audio, **options))
    assert not (sovits5_models / "pwned").exists()
    assert sovits5.generate(job(sovits5_models)).sample_rate == RATE_OUT  # the worker keeps serving


@pytest.mark.heavy_env
def test_hostile_checkpoint_is_refused_and_runs_nothing(sovits5: Supervisor, sovits5_models: Path, tmp_path: Path) -> None:
    folder = tmp_path / "unsafe"
    shutil.copytree(sovits5_models / "characters" / "tiny", folder)
    shutil.copy(sovits5_models / "unsafe.pth", folder / "sovits5.0.pth")
    with pytest.raises(BadRequestError, match="sovits5.0.pth holds pickled Python objects.*refused"):
        sovits5.generate(replace(job(sovits5_models), character="unsafe", character_path=str(folder)))
    assert not (sovits5_models / "pwned").exists()
    with zipfile.ZipFile(folder / "sovits5.0.pth") as archive:  # it really does carry the call
        assert any(b"system" in archive.read(name) for name in archive.namelist() if name.endswith("data.pkl"))


@pytest.mark.heavy_env
def test_a_config_that_does_not_fit_the_checkpoint_is_named(sovits5: Supervisor, sovits5_models: Path, tmp_path: Path) -> None:
    folder = tmp_path / "misfit"
    shutil.copytree(sovits5_models / "characters" / "tiny", folder)
    config = (folder / "base.yaml").read_text()
    (folder / "base.yaml").write_text(config.replace("filter_channels: 16", "filter_channels: 24"))
    with pytest.raises(BadRequestError, match="sovits5.0.pth does not match its config: .*differ in shape"):
        sovits5.generate(replace(job(sovits5_models), character="misfit", character_path=str(folder)))


def after_cooldown(supervisor: Supervisor, request: JobRequest) -> Any:
    """The job once the character's load cooldown (a failed load is retried after a pause) has passed."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return supervisor.generate(request)
        except ArchitectureUnavailableError as exc:
            if time.monotonic() > deadline:
                raise
            time.sleep((exc.retry_after_s or 1.0) + 0.1)


@pytest.mark.heavy_env
def test_missing_assets_are_named_with_where_to_put_them(make_supervisor: SupervisorFactory, sovits5_spec: EnvSpec,
                                                         sovits5_models: Path, tmp_path: Path) -> None:
    """Loaded with the first character, not at the worker's start: the worker stays and the job after the fix runs."""
    assets = tmp_path / "assets"
    assets.mkdir()
    supervisor = make_supervisor({"sovits5": sovits5_spec}, assets_dir=assets)
    with pytest.raises(BadRequestError, match="whisper encoder is missing: download it in the Models tab.*assets/whisper-large-v2.pt"):
        after_cooldown(supervisor, job(sovits5_models))
    pid = supervisor.status()[0]["pid"]
    shutil.copy(sovits5_models / "assets" / "whisper-large-v2.pt", assets)
    with pytest.raises(BadRequestError, match="hubert-soft encoder is missing.*assets/hubert-soft-0d54a1f4.pt"):
        after_cooldown(supervisor, job(sovits5_models))
    shutil.copy(sovits5_models / "unsafe.pth", assets / "hubert-soft-0d54a1f4.pt")
    with pytest.raises(BadRequestError, match="hubert-soft-0d54a1f4.pt holds pickled Python objects.*refused"):
        after_cooldown(supervisor, job(sovits5_models))
    assert not (sovits5_models / "pwned").exists()
    shutil.copy(sovits5_models / "assets" / "hubert-soft-0d54a1f4.pt", assets)
    assert after_cooldown(supervisor, job(sovits5_models)).sample_rate == RATE_OUT
    assert supervisor.status()[0]["pid"] == pid
