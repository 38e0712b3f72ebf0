"""GPT-SoVITS's env and tiny random models, for the modules that test it (import the fixtures by name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtimes.environments import EnvironmentBuilder, EnvSpec, load_spec
from tests.conftest import PROJECT_ROOT, tiny_models

__all__ = ["gpt_sovits_models", "gpt_sovits_python", "gpt_sovits_spec"]


@pytest.fixture(scope="session")
def gpt_sovits_spec() -> EnvSpec:
    return load_spec(PROJECT_ROOT / "envs" / "gpt_sovits")


@pytest.fixture(scope="session")
def gpt_sovits_python(builder: EnvironmentBuilder, gpt_sovits_spec: EnvSpec) -> Path:
    return builder.ensure(gpt_sovits_spec)


@pytest.fixture(scope="session")
def gpt_sovits_models(builder: EnvironmentBuilder, gpt_sovits_spec: EnvSpec, gpt_sovits_python: Path) -> Path:
    """``characters/tiny`` (with a 4 s reference + transcript), ``tiny-noref``, ``tiny-v2``, ``assets/``, ``unsafe.pth``:
    see tests/builders/build_gpt_sovits_character.py."""
    return tiny_models(builder, gpt_sovits_spec, gpt_sovits_python)
