"""so-vits-svc 3.0 characters (32 kHz and 48 kHz) through the supervisor in the sovits env: tiny random checkpoints
with upstream 3.0's key names and shapes (tests/builders/build_sovits3_character.py) mapped onto so-vits-svc-fork's
model at load, a tiny random hubert-soft as the shared asset."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Iterator, List

import numpy as np
import pytest

from runtimes.environments import EnvSpec
from runtimes.errors import BadRequestError
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import PROJECT_ROOT, SupervisorFactory
from tests.contract import adapter_contract
from tests.runtimes.test_sovits_adapter import RATE, full, voiced
from tests.sovits3_fixtures import sovits3_models  # noqa: F401  (a fixture)


def job(models: Path, character: str = "tiny-30-32k", audio: Any = None, **options: Any) -> JobRequest:
    return JobRequest(architecture="sovits", character=character, character_path=str(models / "characters" / character),
                      audio=voiced() if audio is None else audio, audio_sample_rate=RATE, options=full(options))


@pytest.fixture(scope="module")
def sovits3(tmp_path_factory: pytest.TempPathFactory, sovits_spec: EnvSpec, sovits_python: Path,
            sovits3_models: Path) -> Iterator[Supervisor]:  # noqa: F811
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path_factory.mktemp("run"), assets_dir=sovits3_models / "assets")
    supervisor = Supervisor(settings, {"sovits": sovits_spec}, lambda spec, progress: sovits_python, memory=SystemRamSource())
    yield supervisor
    supervisor.shutdown()


def model_call(supervisor: Supervisor) -> Dict[str, float]:
    """What the last 3.0 conversion handed the model (its log line): pitch median, speaker id, noise scale."""
    line = next(line for line in reversed(log_lines(supervisor)) if "so-vits-svc 3.0 model:" in line)
    found = re.search(r"pitch median ([\d.]+) Hz .* speaker id (\d+), noise scale ([\d.]+)", line)
    assert found, line
    return {"median_hz": float(found.group(1)), "speaker": int(found.group(2)), "noise": float(found.group(3))}


def log_lines(supervisor: Supervisor) -> List[str]:
    [worker] = supervisor.table.live()
    return list(worker.process.log_tail)


def test_manifest_offers_3_0_under_its_established_name() -> None:
    from runtimes.adapters.sovits import MANIFEST, version_of

    assert "so_vits_svc_3" in MANIFEST.hay_say_names and "so_vits_svc_4" in MANIFEST.hay_say_names
    [hubert] = [a for a in MANIFEST.assets if a.name == "hubert-soft-0d54a1f4.pt"]
    assert hubert.hay_say_dependency and "bshall/hubert" in hubert.source
    v3 = {"data": {"sampling_rate": 48000, "hop_length": 320}, "model": {"ssl_dim": 256}}
    assert version_of(v3) == "3.0"
    assert version_of({"data": {"sampling_rate": 44100, "hop_length": 512}, "model": {"ssl_dim": 256}}) == "4.0"
    assert version_of({"data": {"sampling_rate": 32000, "hop_length": 320, "contentvec_final_proj": False}, "model": {}}) == "4.1"


def test_the_established_apps_3_0_characters_convert_to_installable_entries(tmp_path: Path) -> None:
    """Hay Say's so_vits_svc_3 list becomes sovits entries named apart from so_vits_svc_4's same-named ones, needing
    ContentVec (the sovits worker loads it) and hubert-soft, whose download assets.json lists; 4's need no hubert-soft."""
    from models.catalogue import document, load_catalogue
    from models.hay_say import convert_hay_say
    from runtimes.registry import discover, read_manifest

    source = PROJECT_ROOT.parent / "shared" / "reference" / "hay-say-catalogues"
    if not source.is_dir():
        pytest.skip("the established app's catalogue files are not beside this checkout")
    manifests = [read_manifest(spec) for spec in discover([PROJECT_ROOT / "envs"]).values()]
    converted = []
    for name in ("so_vits_svc_3.character_models.json", "so_vits_svc_4.character_models.json",
                 "so_vits_svc_4.multi_speaker_models.json"):
        entries, problems = convert_hay_say(json.loads((source / name).read_text()), name, manifests)
        assert not problems
        converted += entries
    (tmp_path / "hay-say.json").write_text(json.dumps(document(converted)))
    catalogue = load_catalogue([PROJECT_ROOT / "models" / "catalogues" / "assets.json", tmp_path / "hay-say.json"], manifests)
    characters = [e for e in catalogue.entries.values() if e.kind == "character"]
    assert len(characters) == 31 + 105 and not catalogue.problems  # none overrides another
    v3 = [e for e in characters if e.name.endswith(" (so-vits-svc 3)")]
    assert len(v3) == 31 and all(e.architecture == "sovits" for e in v3)
    assert {"Apple Bloom", "Apple Bloom (so-vits-svc 3)"} <= {e.name for e in characters}
    for entry in characters:
        assets = {e.name for e in catalogue.closure(entry) if e.kind == "asset"}
        assert assets == ({"contentvec", "hubert-soft-0d54a1f4.pt"} if entry in v3 else {"contentvec"}), entry.name


def test_pitch_is_fitted_to_the_frames_as_upstream() -> None:
    from runtimes.adapters.sovits3 import fit_f0

    assert fit_f0(np.arange(1, 13, dtype=float), 10, 32000).tolist() == list(range(1, 11))  # 5 units x2: cut
    padded = fit_f0(np.full(7, 200.0), 10, 32000)
    assert padded.tolist() == [0, 0] + [200.0] * 7 + [0]  # centre-padded (the extra zero after)
    spread = fit_f0(np.array([100.0, 200.0, 300.0, 300.0]), 6, 48000)  # 2 units: 4 Praat frames -> 6 decoder frames
    np.testing.assert_allclose(spread, [100, 500 / 3, 700 / 3, 300, 300, 300])
    gap = fit_f0(np.array([100.0, 0.0, 300.0, 300.0]), 6, 48000)  # next to an unvoiced frame: unvoiced, as upstream's NaNs
    assert gap.tolist() == [100.0, 0.0, 0.0, 300.0, 300.0, 300.0]


def test_folders_are_described_without_loading(sovits3_models: Path, sovits_models: Path, tmp_path: Path) -> None:  # noqa: F811
    from runtimes.adapters.sovits import SovitsAdapter

    info = SovitsAdapter.describe(str(sovits3_models / "characters" / "tiny-30-32k"))
    assert info.usable and info.version == "3.0" and list(info.speakers) == ["alice", "bob"]
    assert {"f0_method", "auto_predict_f0", "cluster_ratio"} <= set(info.unavailable)
    assert "Praat" in info.unavailable["f0_method"]
    assert SovitsAdapter.describe(str(sovits3_models / "characters" / "tiny-30-48k")).unavailable["speaker"] == "the model has one speaker"
    mixed = tmp_path / "mixed"  # a 4.1 generator beside a 3.0 config
    mixed.mkdir()
    shutil.copy(sovits_models / "characters" / "tiny-41" / "G_0.pth", mixed / "G_0.pth")
    shutil.copy(sovits3_models / "characters" / "tiny-30-32k" / "config.json", mixed)
    assert "not a so-vits-svc 3.0 generator" in SovitsAdapter.describe(str(mixed)).problem


def test_converts_32k_and_48k_at_their_rates_and_the_input_duration(sovits3: Supervisor, sovits3_models: Path) -> None:  # noqa: F811
    recording = voiced(2.0)
    for character, rate in (("tiny-30-32k", 32000), ("tiny-30-48k", 48000)):
        result = sovits3.generate(job(sovits3_models, character, recording))
        assert result.sample_rate == rate
        assert abs(result.audio.size / rate - recording.size / RATE) <= 0.05 * recording.size / RATE
        assert np.isfinite(result.audio).all() and float(np.abs(result.audio).max()) > 1e-3
    loaded = {c["id"]: c["details"] for c in sovits3.status()[0]["loaded"]}
    assert loaded["tiny-30-32k"]["version"] == "3.0" and loaded["tiny-30-48k"]["sample_rate"] == 48000


def test_each_option_reaches_the_model(sovits3: Supervisor, sovits3_models: Path) -> None:  # noqa: F811
    sovits3.generate(job(sovits3_models))
    plain = model_call(sovits3)
    assert plain["speaker"] == 0 and plain["noise"] == 0.4 and 150 < plain["median_hz"] < 220  # the recording's 150-210 Hz
    sovits3.generate(job(sovits3_models, pitch_shift_semitones=7, noise_scale=0.0, speaker="bob", reduce_hoarseness=True))
    call = next(line for line in reversed(log_lines(sovits3)) if "Svc.infer(" in line)
    for expected in ("transpose=7", "noise_scale=0.0", "speaker='bob'", "f0 mean pooling on"):
        assert expected in call, call
    shifted = model_call(sovits3)
    assert shifted["speaker"] == 1 and shifted["noise"] == 0.0
    assert abs(shifted["median_hz"] / plain["median_hz"] - 2 ** (7 / 12)) < 0.02
    with pytest.raises(BadRequestError, match="trained without pitch prediction"):
        sovits3.generate(job(sovits3_models, auto_predict_f0=True))
    with pytest.raises(BadRequestError, match="needs a kmeans"):
        sovits3.generate(job(sovits3_models, cluster_ratio=0.5))
    with pytest.raises(BadRequestError, match="unknown speaker 'nobody'"):
        sovits3.generate(job(sovits3_models, speaker="nobody"))


@pytest.mark.parametrize("audio, message", [(np.zeros(2 * RATE, dtype=np.float32), "no voice found"),
                                            (np.full(1, 0.5, dtype=np.float32), "too short")], ids=["silence", "one sample"])
def test_silence_and_a_single_sample_are_clear_errors(sovits3: Supervisor, sovits3_models: Path, audio: np.ndarray,  # noqa: F811
                                                      message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        sovits3.generate(job(sovits3_models, audio=audio))


def test_bad_folders_and_a_hostile_checkpoint_are_refused(sovits3: Supervisor, sovits3_models: Path, sovits_models: Path,  # noqa: F811
                                                          rvc_like: Path, tmp_path: Path) -> None:
    with pytest.raises(BadRequestError, match="no G_.*pth generator checkpoint"):
        sovits3.generate(replace(job(sovits3_models), character="rvc", character_path=str(rvc_like)))
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    shutil.copy(sovits_models / "unsafe.pth", hostile / "G_1.pth")
    shutil.copy(sovits3_models / "characters" / "tiny-30-32k" / "config.json", hostile)
    with pytest.raises(BadRequestError, match="pickled Python objects"):
        sovits3.generate(replace(job(sovits3_models), character="hostile", character_path=str(hostile)))
    assert not (sovits_models / "pwned").exists()
    sovits3.generate(job(sovits3_models))  # the worker still serves


@pytest.fixture
def rvc_like(tmp_path: Path) -> Path:
    folder = tmp_path / "rvc-model"
    folder.mkdir()
    (folder / "model.pth").write_bytes(b"not a generator")
    (folder / "model.index").write_bytes(b"")
    return folder


@pytest.mark.heavy_env  # a second sovits worker (~15 s): kept out of the default run's time
@pytest.mark.slow
def test_missing_or_hostile_hubert_soft_is_named(make_supervisor: SupervisorFactory, sovits_spec: EnvSpec, sovits3_models: Path,  # noqa: F811
                                                 tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "contentvec").symlink_to(sovits3_models / "assets" / "contentvec")
    supervisor = make_supervisor({"sovits": sovits_spec}, assets_dir=assets)
    with pytest.raises(BadRequestError, match=re.escape("hubert-soft content encoder is missing") + ".*assets/hubert-soft-0d54a1f4.pt"):
        supervisor.generate(job(sovits3_models))
    shutil.copy(sovits3_models / "unsafe-hubert.pt", assets / "hubert-soft-0d54a1f4.pt")
    with pytest.raises(BadRequestError, match="hubert-soft-0d54a1f4.pt holds pickled Python objects"):
        supervisor.generate(job(sovits3_models))
    assert not (sovits3_models / "pwned").exists()
    (assets / "hubert-soft-0d54a1f4.pt").write_text(json.dumps({"not": "weights"}))
    with pytest.raises(BadRequestError, match="hubert-soft-0d54a1f4.pt"):  # another character: a failing one backs off a while
        supervisor.generate(job(sovits3_models, "tiny-30-48k"))


# The contract's own worker (~15 s more): out of the default run's time, as the other torch architectures' contracts.
TestContract = pytest.mark.heavy_env(pytest.mark.slow(adapter_contract("sovits", "tiny-30-32k", models="sovits3_models")))
