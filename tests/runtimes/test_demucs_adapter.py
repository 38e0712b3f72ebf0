"""Demucs through the supervisor, in its own real env (demucs 4.1.0, CPU torch), with tiny random models built by the
package's own classes and saved as upstream publishes its models (tests/builders/build_demucs_model.py). Random weights
say nothing about how well a song separates: the stems are checked by shape, rate, length and finiteness, and against
upstream's own call (``Separator.separate_tensor``, run beside in the env on the same weights, song and seed), which
also shows the options reach upstream. The env is small (~1 GB, built in ~20 s) and the models tiny: the default run
and CI take this module (~40 s)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pytest

from runtimes.adapters.demucs import MANIFEST, MODELS, STEMS, stereo
from runtimes.environments import EnvSpec
from runtimes.errors import BadRequestError, JobCancelledError
from runtimes.manifest import Manifest
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, JobResult, Supervisor, SupervisorSettings
from tests.conftest import PROJECT_ROOT
from tests.demucs_fixtures import UPSTREAM, demucs_models, demucs_python, demucs_spec, mixed_song

__all__ = ["demucs_models", "demucs_python", "demucs_spec"]  # fixtures this module uses by name

RATE = 44100
SONG_S = 3.0
TINY_SEGMENT_S = 1.5
"""The tiny models' trained segment (upstream's htdemucs: 7.8 s)."""


def song(seconds: float = SONG_S, rate: int = RATE) -> np.ndarray:
    return mixed_song(seconds, rate)


def job(audio: Optional[np.ndarray], character: str = "htdemucs", rate: Optional[int] = RATE, **options: Any) -> JobRequest:
    return JobRequest(architecture="demucs", character=character, audio=audio, audio_sample_rate=rate if audio is not None else None,
                      options=options)


@pytest.fixture(scope="module")
def demucs(tmp_path_factory: pytest.TempPathFactory, demucs_spec: EnvSpec, demucs_python: Path,
           demucs_models: Path) -> Iterator[Supervisor]:
    """One warm worker for the module; every test leaves it serving."""
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path_factory.mktemp("run"), assets_dir=demucs_models / "assets",
                                  graceful_stop_s=30.0)
    supervisor = Supervisor(settings, {"demucs": demucs_spec}, lambda spec, progress: demucs_python, memory=SystemRamSource())
    yield supervisor
    supervisor.shutdown()


def separated(supervisor: Supervisor, request: JobRequest) -> Tuple[JobResult, List[Tuple[float, str]]]:
    reports: List[Tuple[float, str]] = []
    result = supervisor.generate(request, progress=lambda fraction, message: reports.append((fraction, message)))
    return result, reports


def upstream(python: Path, models: Path, tmp_path: Path, audio: np.ndarray, model: str = "htdemucs", mode: str = "separator",
             **options: Any) -> Dict[str, np.ndarray]:
    """Upstream's own stems of ``audio`` (tests/demucs_upstream.py in the env), with the worker's option names."""
    resolved = MANIFEST.resolve_options(options)
    np.save(tmp_path / "song.npy", audio)
    request = {"repo": str(models / "assets" / ("demucs_%s" % model)), "model": model, "song": str(tmp_path / "song.npy"), "rate": RATE,
               "out": str(tmp_path / "stems.npz"), "mode": mode, "shifts": resolved["shifts"], "overlap": resolved["overlap"],
               "split": resolved["split"], "segment": resolved["segment_s"] or None, "seed": resolved["seed"]}
    (tmp_path / "request.json").write_text(json.dumps(request))
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE")  # as the worker runs torch
    subprocess.run([str(python), str(UPSTREAM), str(tmp_path / "request.json")], check=True, capture_output=True, timeout=300, env=env)
    with np.load(tmp_path / "stems.npz") as stems:
        return {str(source): stems[str(source)] for source in stems["sources"]}  # (and separate_s: upstream's time)


def two_stems(stems: Dict[str, np.ndarray]) -> np.ndarray:
    """Upstream's --two-stems vocals: the vocals, and the other sources added."""
    return np.stack([stems["vocals"], sum(audio for source, audio in stems.items() if source != "vocals")]).astype(np.float32)


def test_the_manifest_declares_a_separator_of_two_stems() -> None:
    assert MANIFEST.capabilities == ("separate",) and MANIFEST.needs_audio and not MANIFEST.needs_text
    assert MANIFEST.input_sample_rate == RATE and tuple(MANIFEST.stems) == STEMS == ("vocals", "accompaniment")
    assert "htdemucs" in MANIFEST.builtin_characters and set(MANIFEST.builtin_characters) == set(MODELS)
    assert {asset.name for asset in MANIFEST.assets} == {"demucs_%s" % name for name in MODELS}
    assert all("dl.fbaipublicfiles.com/demucs/" in asset.source for asset in MANIFEST.assets)
    assert MANIFEST.licence.startswith("MIT") and not MANIFEST.zero_shot
    assert Manifest.from_dict(json.loads(json.dumps(MANIFEST.to_dict()))) == MANIFEST
    defaults = MANIFEST.resolve_options({})
    assert defaults == {"shifts": 1, "overlap": 0.25, "segment_s": 0.0, "split": True, "seed": 0}


def test_the_asset_catalogue_installs_each_model_where_the_adapter_reads_it(tmp_path: Path) -> None:
    """Each model's catalogue entry: its yaml and upstream's files (named as upstream names them, the checksum in the
    name that upstream's loader checks), into assets/demucs_<name>/."""
    from models.catalogue import load_catalogue
    from models.store import Layout

    catalogue = load_catalogue([PROJECT_ROOT / "models" / "catalogues" / "assets.json"], [MANIFEST])
    for name, model in MODELS.items():
        entry = catalogue.entries["demucs/asset/demucs_%s" % name]
        assert Layout(tmp_path).target(entry) == tmp_path / "assets" / ("demucs_%s" % name) and entry.license == "mit"
        assert [f.save_as for f in entry.files] == ["%s.yaml" % name] + [f.rsplit("/", 1)[1] for f in model.files]
        assert all(f.url.startswith("https://dl.fbaipublicfiles.com/demucs/") for f in entry.files[1:])
        assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{8}\.th", f.save_as) for f in entry.files[1:])
    assert MODELS["htdemucs"].signatures == ["955717e8"]


def test_the_song_check_names_what_is_wrong() -> None:
    mono = song()[0]
    assert stereo(mono).shape == (2, mono.size) and np.array_equal(stereo(mono)[0], stereo(mono)[1])
    for bad, pattern in ((np.zeros((2, 1000), np.float32), "silent"), (song().T, r"looks like \(samples, channels\)"),
                         (np.zeros((1, 2, 100), np.float32), r"shaped \(samples,\) or \(channels, samples\); got shape \(1, 2, 100\)"),
                         (np.stack([mono, mono, mono]), "3 channels"), (np.full((2, 10), np.nan, np.float32), "NaN"),
                         (np.zeros((2, 0), np.float32), "empty"), ((mono * 1000).astype(np.int16), "floating point")):
        with pytest.raises(BadRequestError, match=pattern):
            stereo(bad)


def test_a_song_separates_into_vocals_and_accompaniment_of_its_length(demucs: Supervisor) -> None:
    audio = song()
    result, reports = separated(demucs, job(audio))
    assert result.sample_rate == RATE and result.audio.dtype == np.float32
    assert result.audio.shape == (2, 2, audio.shape[1]), result.audio.shape
    assert np.isfinite(result.audio).all() and float(np.abs(result.audio).max()) > 1e-3
    details = result.details
    assert details["model"] == "htdemucs" and details["sources"] == ["drums", "bass", "other", "vocals"]
    fractions = [fraction for fraction, _ in reports if fraction is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0, fractions
    separated_reports = [message for _, message in reports if message.startswith("separated segment")]
    assert len(separated_reports) == details["segments"] >= 3, reports  # one report per segment


def test_the_stems_are_upstreams_and_the_options_reach_it(demucs: Supervisor, demucs_python: Path, demucs_models: Path,
                                                           tmp_path: Path) -> None:
    """Our worker and upstream's Separator, same weights, song, options and seed: the same stems (float noise), the
    accompaniment being the model's non-vocal sources added. Other options give other stems, so they did reach it."""
    audio = song(2.0)
    options = {"shifts": 2, "overlap": 0.5, "segment_s": 1.0, "seed": 7}
    ours, reports = separated(demucs, job(audio, **options))
    theirs = upstream(demucs_python, demucs_models, tmp_path, audio, **options)
    assert list(theirs) == ["drums", "bass", "other", "vocals"]
    np.testing.assert_allclose(ours.audio, two_stems(theirs), rtol=0, atol=1e-5)
    stride = int((1 - 0.5) * RATE * 1.0)
    fewest, most = math.ceil(audio.shape[1] / stride), math.ceil((audio.shape[1] + RATE // 2) / stride)
    assert 2 * fewest <= ours.details["segments"] <= 2 * most  # two shifted passes of 1 s segments, half overlapping
    assert ours.details["shifts"] == 2 and ours.details["segment_s"] == 1.0 and len(reports) >= ours.details["segments"]
    plain, _ = separated(demucs, job(audio, shifts=0))
    assert float(np.abs(plain.audio - ours.audio).max()) > 1e-4, "other options gave the same stems"
    again, _ = separated(demucs, job(audio, **options))
    np.testing.assert_array_equal(again.audio, ours.audio)  # the seed fixes upstream's random shifts


def test_a_bag_of_models_is_weighted_as_upstream_weighs_it(demucs: Supervisor, demucs_python: Path, demucs_models: Path,
                                                          tmp_path: Path) -> None:
    audio = song(2.0)
    ours, reports = separated(demucs, job(audio, character="htdemucs_ft", shifts=0))
    theirs = upstream(demucs_python, demucs_models, tmp_path, audio, model="htdemucs_ft", mode="apply_model", shifts=0)
    np.testing.assert_allclose(ours.audio, two_stems(theirs), rtol=0, atol=1e-5)
    passes = math.ceil(audio.shape[1] / int(0.75 * RATE * TINY_SEGMENT_S))
    assert ours.details["segments"] == 2 * passes and [f for f, _ in reports if f is not None][-1] == 1.0
    assert any("model 2 of 2" in message for _, message in reports)


def test_a_mono_song_is_separated_as_its_stereo_twin(demucs: Supervisor) -> None:
    mono = song(2.0)[0]
    result, _ = separated(demucs, job(mono, shifts=0))
    assert result.audio.shape == (2, 2, mono.size)
    twin, _ = separated(demucs, job(np.stack([mono, mono]), shifts=0))
    np.testing.assert_array_equal(result.audio, twin.audio)


def test_another_rate_is_resampled_to_44100(demucs: Supervisor) -> None:
    audio = song(1.0, rate=22050)
    result, _ = separated(demucs, job(audio, rate=22050, shifts=0))
    assert result.sample_rate == RATE and result.audio.shape == (2, 2, 2 * audio.shape[1]), result.audio.shape
    assert result.details["resampled_from_hz"] == 22050


def test_a_cancel_ends_the_job_between_segments_and_the_worker_serves_on(demucs: Supervisor) -> None:
    separated(demucs, job(song(1.0), shifts=0))  # warm: the cancel meets the separation itself
    [row] = [row for row in demucs.status() if row["pid"]]
    cancel = threading.Event()
    reports: List[Tuple[Optional[float], str]] = []

    def cancel_after_a_segment(fraction: Optional[float], message: str) -> None:
        reports.append((fraction, message))
        if message.startswith("separated segment"):
            cancel.set()

    with pytest.raises(JobCancelledError):
        demucs.generate(job(song(20.0), shifts=2), progress=cancel_after_a_segment, cancel=cancel)
    segments = [message for _, message in reports if message.startswith("separated segment")]
    assert 1 <= len(segments) <= 3, segments  # 2 passes of ~18 segments were asked for
    [after] = [r for r in demucs.status() if r["pid"]]
    assert after["pid"] == row["pid"] and after["state"] == "ready"
    result, _ = separated(demucs, job(song(1.0), shifts=0))
    assert result.audio.shape == (2, 2, RATE)


BAD = {
    "silent": (dict(audio=np.zeros((2, RATE), np.float32)), "silent"),
    "3-d": (dict(audio=np.zeros((1, 2, RATE), np.float32) + 0.1), r"got shape \(1, 2, 44100\)"),
    "transposed": (dict(audio=song(1.0).T.copy()), r"looks like \(samples, channels\)"),
    "long segment": (dict(audio=song(1.0), segment_s=2.0), r"segment_s 2 is longer than Demucs htdemucs takes \(at most 1.5 s"),
    "unsplit long song": (dict(audio=song(2.0), split=False), "with split off.*turn split on"),
    "missing model": (dict(audio=song(1.0), character="mdx_extra"), r"Demucs model mdx_extra is missing.*assets/demucs_mdx_extra"),
    "unknown model": (dict(audio=song(1.0), character="nosuch"), "no model 'nosuch'"),
    "pickled code": (dict(audio=song(1.0), character="htdemucs_6s"), r"5c90dfd2-\w{8}\.th holds pickled Python objects.*refused"),
    "changed download": (dict(audio=song(1.0), character="hdemucs_mmi"), r"Invalid checksum.*an incomplete or changed download"),
    "shifts out of range": (dict(audio=song(1.0), shifts=11), "shifts"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_clear_line_and_the_worker_serves_on(demucs: Supervisor, demucs_models: Path, case: str) -> None:
    changes, pattern = BAD[case]
    changes = dict(changes)
    request = job(changes.pop("audio"), character=changes.pop("character", "htdemucs"), **changes)
    with pytest.raises(BadRequestError) as caught:
        demucs.generate(request)
    message = caught.value.message
    assert re.search(pattern, message), "%s: %r" % (case, message)
    assert "Traceback" not in message and "\n" not in message and len(message) < 400, message
    assert not (demucs_models / "unsafe-ran").exists(), "the pickled command ran"
    assert [row["state"] for row in demucs.status() if row["pid"]] == ["ready"]
