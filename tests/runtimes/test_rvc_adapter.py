"""RVC v1/v2 through the supervisor, in its own real env (infer-rvc-python, CPU torch), with tiny
random checkpoints built by the package's own model classes."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Iterator, List

import numpy as np
import pytest

from runtimes.environments import EnvSpec
from runtimes.errors import BadRequestError, RemoteError
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import PROJECT_ROOT, SupervisorFactory
from tests.contract import adapter_contract

RATE = 16000


def voiced(seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(160 + 25 * np.sin(2 * np.pi * 1.5 * t)) / RATE
    return np.asarray(sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2, dtype=np.float32)


def job(models: Path, character: str = "tiny-v2", audio: Any = None, **options: Any) -> JobRequest:
    from runtimes.adapters.rvc import MANIFEST

    return JobRequest(architecture="rvc", character=character, character_path=str(models / "characters" / character),
                      audio=voiced() if audio is None else audio, audio_sample_rate=RATE, options=MANIFEST.resolve_options(options))


@pytest.fixture(scope="module")
def rvc(tmp_path_factory: pytest.TempPathFactory, rvc_spec: EnvSpec, rvc_python: Path, rvc_models: Path) -> Iterator[Supervisor]:
    """One warm worker for the module (its import takes seconds); every test leaves it serving."""
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path_factory.mktemp("run"), assets_dir=rvc_models / "assets")
    supervisor = Supervisor(settings, {"rvc": rvc_spec}, lambda spec, progress: rvc_python, memory=SystemRamSource())
    yield supervisor
    supervisor.shutdown()


def test_v2_and_v1_convert_in_one_worker_at_their_own_rates(rvc: Supervisor, rvc_models: Path) -> None:
    v2 = rvc.generate(job(rvc_models, "tiny-v2"))
    assert v2.sample_rate == 40000 and abs(v2.audio.size / 40000 - 2.0) < 0.1 and float(np.abs(v2.audio).max()) > 0
    v1 = rvc.generate(job(rvc_models, "tiny-v1"))
    assert v1.sample_rate == 32000 and abs(v1.audio.size / 32000 - 2.0) < 0.1 and "spawn_s" not in v1.timings_s
    [row] = rvc.status()
    details = {c["id"]: c["details"] for c in row["loaded"]}
    assert details["tiny-v2"]["version"] == "v2" and details["tiny-v2"]["feature_index"]
    assert details["tiny-v1"]["version"] == "v1" and not details["tiny-v1"]["feature_index"]  # told apart from the checkpoint


def test_each_option_reaches_the_upstream_call(rvc: Supervisor, rvc_models: Path) -> None:
    rvc.generate(job(rvc_models, pitch_shift_semitones=12, index_ratio=0.5, volume_envelope_mix=0.25, protect_voiceless=0.4))
    [worker] = rvc.table.live()
    call = next(line for line in reversed(list(worker.process.log_tail)) if "infer(" in line)
    for expected in ("pitch_lvl=12", "pitch_algo='pm'", "envelope_ratio=0.25", "consonant_breath_protection=0.4",
                     "index_influence=0.5"):
        assert expected in call, call
    rvc.generate(job(rvc_models, "tiny-v1", index_ratio=0.9))  # no index: the ratio cannot apply
    call = next(line for line in reversed(list(worker.process.log_tail)) if "infer(" in line)
    assert "index_influence=0.0" in call


@pytest.mark.parametrize("method", ["harvest", "fcpe"])
def test_pitch_curve_methods_are_computed_and_handed_to_the_pipeline(rvc: Supervisor, rvc_models: Path, method: str) -> None:
    result = rvc.generate(job(rvc_models, f0_method=method, filter_radius=5, pitch_shift_semitones=12))
    assert result.sample_rate == 40000 and abs(result.audio.size / 40000 - 2.0) < 0.1
    [worker] = rvc.table.live()
    lines = list(worker.process.log_tail)
    call = next(line for line in reversed(lines) if "infer(" in line)
    assert "pitch_algo='%s'" % method in call and "respiration_median_filtering=5" in call
    curve = next(line for line in reversed(lines) if "%s pitch" % method in line)
    median_hz = float(curve.split("median ")[1].split(" Hz")[0])
    assert 2 * 150 < median_hz < 2 * 175  # the voice's ~160 Hz, an octave up


def test_folders_are_described_from_the_checkpoint_without_torch(rvc_models: Path, tmp_path: Path) -> None:
    from runtimes.adapters.rvc import RvcAdapter

    with pytest.raises(ImportError):
        import torch  # noqa: F401  # the app's own env: what the listing runs in
    v2 = RvcAdapter.describe(str(rvc_models / "characters" / "tiny-v2"))
    v1 = RvcAdapter.describe(str(rvc_models / "characters" / "tiny-v1"))
    assert (v2.version, v1.version) == ("2", "1")
    assert "40000 Hz" in v2.extras and "feature index" in v2.extras and "32000 Hz" in v1.extras
    assert "index_ratio" not in v2.unavailable and "no .index" in v1.unavailable["index_ratio"]
    unsafe = tmp_path / "unsafe"
    unsafe.mkdir()
    shutil.copy(rvc_models / "unsafe.pth", unsafe / "model.pth")
    refused = RvcAdapter.describe(str(unsafe))
    assert not refused.usable and "holds pickled Python objects (posix.system)" in refused.problem
    assert not (rvc_models / "pwned").exists()


def test_long_input_in_slices_with_progress(rvc: Supervisor, rvc_models: Path) -> None:
    messages: List[str] = []
    result = rvc.generate(job(rvc_models, audio=voiced(12.0), slice_length_s=5.0), progress=lambda f, m: messages.append(m))
    assert abs(result.audio.size / result.sample_rate - 12.0) < 0.1
    assert [m for m in messages if m.startswith("converted slice")][-1] == "converted slice 3 of 3"


@pytest.mark.parametrize(
    ("make_folder", "expected"),
    [
        (lambda src, dst: None, "no .pth model"),
        (lambda src, dst: (shutil.copy(src / "model.pth", dst / "a.pth"), shutil.copy(src / "model.pth", dst / "b.pth")),
         r"2 \.pth files .*keep one"),
        (lambda src, dst: (shutil.copy(src / "model.pth", dst / "G_0.pth"), (dst / "config.json").write_text("{}")),
         "looks like a so-vits-svc model"),
        (lambda src, dst: (dst / "model.pth").write_bytes(b"not a checkpoint"), "not a readable checkpoint"),
    ],
    ids=["empty", "two models", "another architecture's files", "corrupt"],
)
def test_bad_character_folders_are_clear_errors(rvc: Supervisor, rvc_models: Path, tmp_path: Path, make_folder: Any,
                                                expected: str) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    make_folder(rvc_models / "characters" / "tiny-v2", folder)
    with pytest.raises(BadRequestError, match=expected):
        rvc.generate(replace(job(rvc_models), character="bad", character_path=str(folder)))
    assert rvc.generate(job(rvc_models)).sample_rate == 40000


def test_unsafe_pickle_is_refused_and_runs_nothing(rvc: Supervisor, rvc_models: Path, tmp_path: Path) -> None:
    folder = tmp_path / "unsafe"
    folder.mkdir()
    shutil.copy(rvc_models / "unsafe.pth", folder / "model.pth")
    with pytest.raises(BadRequestError, match="holds pickled Python objects.*refused"):
        rvc.generate(replace(job(rvc_models), character="unsafe", character_path=str(folder)))
    assert not (rvc_models / "pwned").exists()
    assert rvc.generate(job(rvc_models)).sample_rate == 40000


@pytest.mark.parametrize(
    ("audio", "options", "expected"),
    [
        (np.zeros(RATE, dtype=np.float32), {}, "it is silent"),
        (np.zeros(1, dtype=np.float32), {}, "too short to convert"),
        (None, {"f0_method": "rmvpe"}, r"rmvpe pitch extractor is missing: download it in the Models tab .*assets/rmvpe\.pt"),
    ],
    ids=["silence", "one sample", "rmvpe without its weights"],
)
def test_bad_inputs_are_clear_errors(rvc: Supervisor, rvc_models: Path, audio: Any, options: Dict[str, Any], expected: str) -> None:
    with pytest.raises(BadRequestError, match=expected):
        rvc.generate(job(rvc_models, audio=audio, **options))


def test_missing_content_encoder_names_the_asset(make_supervisor: SupervisorFactory, rvc_spec: EnvSpec, rvc_models: Path,
                                                 tmp_path: Path) -> None:
    supervisor = make_supervisor({"rvc": rvc_spec}, assets_dir=tmp_path / "empty-assets")
    with pytest.raises(RemoteError, match=r"content encoder \(HuBERT\) is missing.*assets/hubert"):
        supervisor.generate(job(rvc_models))


def test_a_checkpoint_missing_weights_is_refused(rvc: Supervisor, rvc_models: Path, rvc_python: Path, tmp_path: Path) -> None:
    """infer-rvc-python loads with strict=False: weights a checkpoint lacks would stay random and convert
    into noise. Here the flow's weights are cut out of tiny-v2's checkpoint."""
    import subprocess

    folder = tmp_path / "cut"
    folder.mkdir()
    cut = ("import sys, torch; cpt = torch.load(sys.argv[1], weights_only=True); "
           "cpt['weight'] = {k: v for k, v in cpt['weight'].items() if not k.startswith('flow.')}; torch.save(cpt, sys.argv[2])")
    subprocess.run([str(rvc_python), "-c", cut, str(rvc_models / "characters" / "tiny-v2" / "model.pth"), str(folder / "model.pth")],
                   check=True, capture_output=True)
    with pytest.raises(BadRequestError, match=r"model.pth does not match its configuration: \d+ weights are missing \(flow\."):
        rvc.generate(replace(job(rvc_models), character="cut", character_path=str(folder)))
    assert rvc.generate(job(rvc_models)).sample_rate == 40000


def test_applio_models_with_another_vocoder_or_encoder_are_listed_with_why(rvc_models: Path, rvc_python: Path, tmp_path: Path) -> None:
    """Applio trains RVC models with other decoders (its checkpoints name them in "vocoder"); infer-rvc-python
    has only HiFi-GAN's layers and would keep random weights for the rest."""
    import subprocess

    from runtimes.adapters.rvc import RvcAdapter

    source = rvc_models / "characters" / "tiny-v2" / "model.pth"
    tag = "import sys, torch; cpt = torch.load(sys.argv[1], weights_only=True); cpt['vocoder'] = sys.argv[3]; torch.save(cpt, sys.argv[2])"
    for vocoder, usable in (("HiFi-GAN", True), ("RefineGAN", False)):
        folder = tmp_path / vocoder
        folder.mkdir()
        subprocess.run([str(rvc_python), "-c", tag, str(source), str(folder / "model.pth"), vocoder], check=True, capture_output=True)
        info = RvcAdapter.describe(str(folder))
        assert info.usable == usable, info
    assert "trained with Applio's RefineGAN vocoder; infer-rvc-python runs HiFi-GAN models only" in info.problem
    other_encoder = tmp_path / "japanese"
    other_encoder.mkdir()
    mark = tag.replace("'vocoder'", "'embedder_model'")
    for embedder, folder in (("contentvec", tmp_path / "HiFi-GAN"), ("japanese-hubert-base", other_encoder)):
        subprocess.run([str(rvc_python), "-c", mark, str(source), str(folder / "model.pth"), embedder], check=True, capture_output=True)
    assert not any("trained on" in extra for extra in RvcAdapter.describe(str(tmp_path / "HiFi-GAN")).extras)
    flagged = RvcAdapter.describe(str(other_encoder))
    assert flagged.usable and "trained on japanese-hubert-base features, converted with the shared HuBERT" in " ".join(flagged.extras)


TestContract = adapter_contract("rvc", "tiny-v2", models="rvc_models", cancel_options={"slice_length_s": 5})
