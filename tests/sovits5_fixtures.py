"""so-vits-svc 5.0's env and tiny random models, as session fixtures (imported by the sovits5 test modules:
``from tests.sovits5_fixtures import sovits5_spec, sovits5_python, sovits5_models``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtimes.environments import EnvironmentBuilder, EnvSpec, load_spec
from tests.conftest import PROJECT_ROOT, tiny_models


@pytest.fixture(scope="session")
def sovits5_spec() -> EnvSpec:
    return load_spec(PROJECT_ROOT / "envs" / "sovits5")


@pytest.fixture(scope="session")
def sovits5_python(builder: EnvironmentBuilder, sovits5_spec: EnvSpec) -> Path:
    return builder.ensure(sovits5_spec)


@pytest.fixture(scope="session")
def sovits5_models(builder: EnvironmentBuilder, sovits5_spec: EnvSpec, sovits5_python: Path) -> Path:
    """``assets/`` (tiny whisper and hubert-soft), ``characters/tiny`` (exported: sovits5.0.pth + base.yaml, two singers),
    ``characters/tiny-training`` (the established app's training checkpoint, config inside), bad folders and
    ``unsafe.pth``: see tests/builders/build_sovits5_character.py."""
    return tiny_models(builder, sovits5_spec, sovits5_python)
