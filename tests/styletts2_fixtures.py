"""StyleTTS 2's env and tiny random models, as session fixtures (imported by the StyleTTS 2 test modules:
``from tests.styletts2_fixtures import styletts2_spec, styletts2_python, styletts2_models``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtimes.environments import EnvironmentBuilder, EnvSpec, load_spec
from tests.conftest import PROJECT_ROOT, tiny_models


@pytest.fixture(scope="session")
def styletts2_spec() -> EnvSpec:
    return load_spec(PROJECT_ROOT / "envs" / "styletts2")


@pytest.fixture(scope="session")
def styletts2_python(builder: EnvironmentBuilder, styletts2_spec: EnvSpec) -> Path:
    return builder.ensure(styletts2_spec)


@pytest.fixture(scope="session")
def styletts2_models(builder: EnvironmentBuilder, styletts2_spec: EnvSpec, styletts2_python: Path) -> Path:
    """``assets/`` (the three auxiliary models), ``characters/tiny-multi`` (multi-speaker, HiFi-GAN decoder, the
    established app's precomputed styles by its checkpoint's name), ``characters/tiny-single`` (single-speaker,
    iSTFTNet), ``unsafe.pth``: see tests/builders/build_styletts2_character.py."""
    return tiny_models(builder, styletts2_spec, styletts2_python)
