"""What tests need to run a worker in each environment kind here: the settings each kind builds with, and
whether a container engine can run (else container tests are skipped, naming why; with
``VOICEGEN_REQUIRE_CONTAINERS=1``, as ``.ci/run`` sets once it has started an engine, they fail instead)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import pytest

from runtimes.envkinds.base import KindSettings

BASE_IMAGE = os.environ.get("VOICEGEN_TEST_BASE_IMAGE", "local/debian-python:bookworm")
"""The local base image (no registry here): made by ``.ci/base-image.sh``."""
ENGINE = os.environ.get("VOICEGEN_CONTAINER_ENGINE", "docker")
TEST_INSTANCE = "tests-%d" % os.getpid()


@functools.cache
def container_engine_problem() -> Optional[str]:
    """Why no container can run here; None when one can."""
    if shutil.which(ENGINE) is None:
        return "no container engine (%s) on PATH" % ENGINE
    try:
        info = subprocess.run([ENGINE, "info"], capture_output=True, text=True, timeout=20)
        if info.returncode != 0:
            return "the %s engine does not answer (start it: `dockerd &`; .ci/run does)" % ENGINE
        image = subprocess.run([ENGINE, "image", "inspect", BASE_IMAGE], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "the %s engine cannot be asked: %s" % (ENGINE, exc)
    if image.returncode != 0:
        return "no local base image %s (make it with .ci/base-image.sh)" % BASE_IMAGE
    return None


def require_container_engine() -> None:
    problem = container_engine_problem()
    if problem is None:
        return
    if os.environ.get("VOICEGEN_REQUIRE_CONTAINERS") == "1":
        pytest.fail("container tests must run here, but " + problem)
    pytest.skip(problem)


def conda_tool(folder: Path) -> str:
    """The stand-in conda the tests write (no conda channel is reachable here)."""
    from tests.conda_standin import write_conda_standin

    folder.mkdir(parents=True, exist_ok=True)
    return str(write_conda_standin(folder))


def kind_settings(kind: str, envs_dir: Path, logs_dir: Path, layer: str = "cpu", instance: str = TEST_INSTANCE) -> KindSettings:
    """Settings that let ``kind`` build here (the container kind's engine checked first: skipped without one)."""
    if kind == "container":
        require_container_engine()
        return KindSettings(envs_dir, logs_dir, layer, container_engine=ENGINE, container_base_image=BASE_IMAGE, instance=instance)
    if kind == "conda":
        return KindSettings(envs_dir, logs_dir, layer, conda_executable=conda_tool(envs_dir.parent / "conda-standin"), instance=instance)
    return KindSettings(envs_dir, logs_dir, layer, instance=instance)
