"""Seed-VC's env and tiny random models, as session fixtures (imported by the Seed-VC test modules:
``from tests.seed_vc_fixtures import seed_vc_spec, seed_vc_python, seed_vc_models``), and ``seed_vc_data_dir``, which
lays the tiny models out as an app's data folder (for end-to-end tests through the app)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import pytest

from runtimes.adapters.seed_vc import MANIFEST
from runtimes.environments import EnvironmentBuilder, EnvSpec, load_spec
from tests.conftest import PROJECT_ROOT, tiny_models

VOICE = "alice"
"""The saved voice the builder makes (``characters/alice``: 3 s of a voiced tone at 22050 Hz, 16-bit)."""


@pytest.fixture(scope="session")
def seed_vc_spec() -> EnvSpec:
    return load_spec(PROJECT_ROOT / "envs" / "seed_vc")


@pytest.fixture(scope="session")
def seed_vc_python(builder: EnvironmentBuilder, seed_vc_spec: EnvSpec) -> Path:
    return builder.ensure(seed_vc_spec)


@pytest.fixture(scope="session")
def seed_vc_models(builder: EnvironmentBuilder, seed_vc_spec: EnvSpec, seed_vc_python: Path) -> Path:
    """``assets/`` (the speech and singing DiTs, Whisper, two BigVGANs, CAMPPlus, RMVPE), ``characters/alice`` (a saved
    voice), ``unsafe.pth``: see tests/builders/build_seed_vc_character.py."""
    return tiny_models(builder, seed_vc_spec, seed_vc_python)


def seed_vc_data_dir(models: Path, data_dir: Path, voices: Sequence[str] = (VOICE,)) -> Path:
    """``data_dir`` laid out as the app reads it: every Seed-VC asset linked under ``assets/`` (where the model manager
    puts them), the saved voices copied to ``characters/seed_vc/<voice>/`` (where the Voices panel writes them)."""
    assets = data_dir / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    for asset in MANIFEST.assets:
        source = models / "assets" / asset.name
        if source.exists() and not (assets / asset.name).exists():
            (assets / asset.name).symlink_to(source, target_is_directory=source.is_dir())
    for voice in voices:
        target = data_dir / "characters" / "seed_vc" / voice
        if not target.exists():
            shutil.copytree(models / "characters" / voice, target)
    return data_dir
