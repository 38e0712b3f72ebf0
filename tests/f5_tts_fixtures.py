"""F5-TTS's env, its tiny random shared assets and saved voices, as session fixtures (imported by the F5-TTS test
modules: ``from tests.f5_tts_fixtures import f5_tts_spec, f5_tts_python, f5_tts_built, f5_tts_models``).

For an app-level test: ``lay_out_f5_tts(built, data_dir)`` puts the tiny assets under ``data_dir/assets/`` and a saved
voice under ``data_dir/characters/f5_tts/<voice_id>/`` (as the app's Voices panel writes one); ``write_voice`` writes
any voice folder."""

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
VOICE_TRANSCRIPT = "Hello there, this is how my voice sounds."
ASSETS = ("f5_tts_v1_base", "vocos_mel_24khz", "asr_whisper")
SAID_BY_THE_TINY_RECOGNIZER = "la la la"
"""What the tiny random Whisper transcribes any recording as (its words repeat: this is how the text starts)."""


def lay_out_f5_tts(built: Path, data_dir: Path, voice_id: str = VOICE_ID, transcript: str = VOICE_TRANSCRIPT) -> Path:
    """The tiny assets copied under ``data_dir/assets/`` and a saved voice (4 s of voiced phrases at 44.1 kHz with its
    transcript) under ``data_dir/characters/f5_tts/<voice_id>/``; returns the voice's folder."""
    for name in ASSETS:
        target = data_dir / "assets" / name
        if not target.exists():
            shutil.copytree(built / "assets" / name, target)
    return write_voice(data_dir / "characters" / "f5_tts" / voice_id, voiced_phrases(VOICE_RATE, VOICE_S), VOICE_RATE, transcript)


@pytest.fixture(scope="session")
def f5_tts_spec() -> EnvSpec:
    return load_spec(PROJECT_ROOT / "envs" / "f5_tts")


@pytest.fixture(scope="session")
def f5_tts_python(builder: EnvironmentBuilder, f5_tts_spec: EnvSpec) -> Path:
    return builder.ensure(f5_tts_spec)


@pytest.fixture(scope="session")
def f5_tts_built(builder: EnvironmentBuilder, f5_tts_spec: EnvSpec, f5_tts_python: Path) -> Path:
    """``assets/`` (tiny DiT, tiny Vocos, tiny Whisper) and ``unsafe.pt``: see tests/builders/build_f5_tts_character.py."""
    return tiny_models(builder, f5_tts_spec, f5_tts_python)


@pytest.fixture(scope="session")
def f5_tts_models(f5_tts_built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out as the contract reads it: ``assets/`` (the built ones) and ``characters/tiny-voice/`` (a saved voice
    with its transcript)."""
    data = tmp_path_factory.mktemp("f5_tts-data")
    (data / "assets").symlink_to(f5_tts_built / "assets")
    write_voice(data / "characters" / VOICE_ID, voiced_phrases(VOICE_RATE, VOICE_S), VOICE_RATE, VOICE_TRANSCRIPT)
    return data
