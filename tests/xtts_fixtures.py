"""XTTS v2's env, its tiny random model (a shared asset) and saved voices, as session fixtures (imported by the XTTS test
modules: ``from tests.xtts_fixtures import xtts_spec, xtts_python, xtts_built, xtts_models``).

For an app-level test: ``lay_out_xtts(built, data_dir)`` puts the tiny model under ``data_dir/assets/xtts_v2/`` and a
saved voice under ``data_dir/characters/xtts/<voice_id>/`` (as the app's Voices panel writes one); ``write_voice``
writes any voice folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runtimes.environments import EnvironmentBuilder, EnvSpec, load_spec
from tests.conftest import PROJECT_ROOT, tiny_models
from tests.contract import voiced_phrases
from tests.voice_files import write_voice

VOICE_ID = "tiny-voice"
VOICE_RATE = 44100
VOICE_S = 4.0
ASSET = "xtts_v2"
UNSPOKEN_LANGUAGE = "hi"
"""A language the manifest offers and the tiny model's config lacks (tests/builders/build_xtts_character.py)."""


def lay_out_xtts(built: Path, data_dir: Path, voice_id: str = VOICE_ID) -> Path:
    """The tiny model copied to ``data_dir/assets/xtts_v2/`` and a saved voice (4 s of voiced phrases at 44.1 kHz, no
    transcript: XTTS needs none) under ``data_dir/characters/xtts/<voice_id>/``; returns the voice's folder."""
    target = data_dir / "assets" / ASSET
    if not target.exists():
        shutil.copytree(built / "assets" / ASSET, target)
    return write_voice(data_dir / "characters" / "xtts" / voice_id, voiced_phrases(VOICE_RATE, VOICE_S), VOICE_RATE)


@pytest.fixture(scope="session")
def xtts_spec() -> EnvSpec:
    return load_spec(PROJECT_ROOT / "envs" / "xtts")


@pytest.fixture(scope="session")
def xtts_python(builder: EnvironmentBuilder, xtts_spec: EnvSpec) -> Path:
    return builder.ensure(xtts_spec)


@pytest.fixture(scope="session")
def xtts_built(builder: EnvironmentBuilder, xtts_spec: EnvSpec, xtts_python: Path) -> Path:
    """``assets/xtts_v2/`` (the tiny random model) and ``unsafe.pth``: see tests/builders/build_xtts_character.py."""
    return tiny_models(builder, xtts_spec, xtts_python)


@pytest.fixture(scope="session")
def xtts_models(xtts_built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out as the contract reads it: ``assets/`` (the built model) and ``characters/tiny-voice/`` (a saved
    voice)."""
    data = tmp_path_factory.mktemp("xtts-data")
    (data / "assets").symlink_to(xtts_built / "assets")
    write_voice(data / "characters" / VOICE_ID, voiced_phrases(VOICE_RATE, VOICE_S), VOICE_RATE)
    return data
