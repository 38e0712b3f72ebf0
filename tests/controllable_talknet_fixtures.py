"""Controllable TalkNet's env and tiny random characters, as session fixtures (imported by its test modules:
``from tests.controllable_talknet_fixtures import talknet_spec, talknet_python, talknet_models``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtimes.environments import EnvironmentBuilder, EnvSpec, load_spec
from tests.conftest import PROJECT_ROOT, tiny_models


@pytest.fixture(scope="session")
def talknet_spec() -> EnvSpec:
    return load_spec(PROJECT_ROOT / "envs" / "controllable_talknet")


@pytest.fixture(scope="session")
def talknet_python(builder: EnvironmentBuilder, talknet_spec: EnvSpec) -> Path:
    return builder.ensure(talknet_spec)


@pytest.fixture(scope="session")
def talknet_models(builder: EnvironmentBuilder, talknet_spec: EnvSpec, talknet_python: Path) -> Path:
    """``characters/tiny`` (spect, durs, pitch, HiFi-GAN), ``characters/tiny-nopitch`` (no pitch model) and
    ``unsafe.nemo``: see tests/builders/build_controllable_talknet_character.py."""
    return tiny_models(builder, talknet_spec, talknet_python)
