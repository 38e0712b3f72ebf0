"""so-vits-svc 3.0's tiny random characters and hubert-soft (tests/builders/build_sovits3_character.py, run in the
sovits env and cached on disk by the env's hash and the builder's code), laid out as a data folder beside the sovits
tiny models' ContentVec (the sovits worker loads it at start). Imported explicitly by the 3.0 test modules."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from runtimes.environments import EnvironmentBuilder, EnvSpec
from tests.conftest import PROJECT_ROOT, built_envs_dir

BUILDER = PROJECT_ROOT / "tests" / "builders" / "build_sovits3_character.py"


def built_sovits3(builder: EnvironmentBuilder, spec: EnvSpec, python: Path) -> Path:
    code = BUILDER.read_text() + (BUILDER.parent / "unsafe_pickle.py").read_text()
    digest = hashlib.sha256((builder.spec_hash(spec) + code).encode()).hexdigest()[:16]
    cache = built_envs_dir().parent / "test-models" / ("sovits3-%s" % digest)
    if not (cache / ".complete").exists():
        partial = cache.with_name(cache.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run([str(python), str(BUILDER), str(partial)], check=True, capture_output=True, timeout=600, cwd=str(BUILDER.parent))
        (partial / ".complete").write_text("")
        shutil.rmtree(cache, ignore_errors=True)
        partial.rename(cache)
    return cache


@pytest.fixture(scope="session")
def sovits3_models(builder: EnvironmentBuilder, sovits_spec: EnvSpec, sovits_python: Path, sovits_models: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder: characters/tiny-30-32k, characters/tiny-30-48k, assets/hubert-soft-0d54a1f4.pt and
    assets/contentvec; unsafe-hubert.pt beside them."""
    cache = built_sovits3(builder, sovits_spec, sovits_python)
    data = tmp_path_factory.mktemp("sovits3-data")
    shutil.copytree(cache / "characters", data / "characters")
    shutil.copytree(cache / "assets", data / "assets")
    (data / "assets" / "contentvec").symlink_to(sovits_models / "assets" / "contentvec")
    shutil.copy(cache / "unsafe-hubert.pt", data / "unsafe-hubert.pt")
    return data
