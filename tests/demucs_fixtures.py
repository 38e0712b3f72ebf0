"""Demucs's env and tiny random separation models, as session fixtures (imported by the modules that use them:
``from tests.demucs_fixtures import demucs_spec, demucs_python, demucs_models``), and ``install_demucs_models`` to put
them in an app's data folder.

``demucs_models`` is a folder laid out as a data folder: ``assets/demucs_htdemucs/`` (the builtin character
``htdemucs``: one tiny HTDemucs), ``assets/demucs_htdemucs_ft/`` (``htdemucs_ft``: a bag of two),
``assets/demucs_htdemucs_6s/`` (``htdemucs_6s``: a checkpoint holding pickled code, to be refused) and
``assets/demucs_hdemucs_mmi/`` (``hdemucs_mmi``: a file whose checksum does not match its name); see
tests/builders/build_demucs_model.py. Built once per env and builder code (cached beside the envs, as CI keeps them)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from runtimes.environments import EnvironmentBuilder, EnvSpec, load_spec
from tests.conftest import PROJECT_ROOT, tiny_models
from tests.contract import voiced_phrases

BUILDER = PROJECT_ROOT / "tests" / "builders" / "build_demucs_model.py"
UPSTREAM = PROJECT_ROOT / "tests" / "demucs_upstream.py"
"""Upstream's own separation of a song, run in the env (the tests' and the equivalence bench's reference)."""


def mixed_song(seconds: float = 3.0, rate: int = 44100) -> np.ndarray:
    """A mixed test song, (2, samples) float32: a voice-like phrase (moving pitch, harmonics, pauses) left of centre over
    an instrumental track (a bass tone and a chord with a beat) right of centre."""
    t = np.arange(int(seconds * rate)) / rate
    voice = voiced_phrases(rate, seconds)
    beat = 0.5 + 0.5 * (np.sin(2 * np.pi * 2.0 * t) > 0)
    chord = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) / 3
    instruments = (0.25 * np.sin(2 * np.pi * 55.0 * t) + 0.2 * chord * beat).astype(np.float32)
    return np.stack([0.8 * voice + 0.4 * instruments, 0.4 * voice + 0.8 * instruments]).astype(np.float32)


def demucs_models_folder(builder: EnvironmentBuilder, spec: EnvSpec, python: Path) -> Path:
    """The tiny models, built by tests/builders/build_demucs_model.py in the env; cached by the env's hash and the builder's code."""
    return tiny_models(builder, spec, python, BUILDER)


def install_demucs_models(models: Path, data_dir: Path, names: Sequence[str] = ("htdemucs",)) -> None:
    """Copy the tiny models ``names`` (builtin character ids) into ``data_dir/assets/`` as the model manager installs
    upstream's (``assets/demucs_<name>/``), for an app-level test that separates with the builtin character."""
    for name in names:
        shutil.copytree(models / "assets" / ("demucs_%s" % name), data_dir / "assets" / ("demucs_%s" % name), dirs_exist_ok=True)


@pytest.fixture(scope="session")
def demucs_spec() -> EnvSpec:
    return load_spec(PROJECT_ROOT / "envs" / "demucs")


@pytest.fixture(scope="session")
def demucs_python(builder: EnvironmentBuilder, demucs_spec: EnvSpec) -> Path:
    return builder.ensure(demucs_spec)


@pytest.fixture(scope="session")
def demucs_models(builder: EnvironmentBuilder, demucs_spec: EnvSpec, demucs_python: Path) -> Path:
    return demucs_models_folder(builder, demucs_spec, demucs_python)
