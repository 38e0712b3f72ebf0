"""Piper switched between the three environment kinds by its spec's one ``kind`` line, used as a person uses
the app (``python -m app serve``, gradio_client): it speaks the same in each, the Runtimes rows say the kind
and what starting it cost, and a SIGKILLed app leaves no worker (and no container) behind."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator, List, Tuple

import psutil
import pytest
import soundfile
from gradio_client import Client

from app.bootstrap import instance_of
from app.settings import Settings
from tests.conftest import PROJECT_ROOT, TEST_SPECS, AppServer, built_envs_dir, start_app, wait_until
from tests.env_kinds import BASE_IMAGE, ENGINE, kind_settings

KINDS = ["venv", "conda", pytest.param("container", marks=pytest.mark.container)]


@pytest.fixture(params=KINDS)
def kind_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[str, AppServer]]:
    kind = str(request.param)
    root = tmp_path_factory.mktemp("kind-%s" % kind)
    specs = root / "specs"
    shutil.copytree(PROJECT_ROOT / "envs" / "piper", specs / "piper")
    spec_file = specs / "piper" / "spec.toml"
    text = spec_file.read_text()
    assert text.count('kind = "venv"') == 1
    spec_file.write_text(text.replace('kind = "venv"', 'kind = "%s"' % kind))  # the one line a person changes
    settings = kind_settings(kind, built_envs_dir(), root / "logs")  # a container kind is skipped (saying why) without an engine
    extra_env = {"VOICEGEN_EXTRA_SPEC_DIRS": os.pathsep.join([str(TEST_SPECS), str(specs)]),
                 "VOICEGEN_CONTAINER_ENGINE": ENGINE, "VOICEGEN_CONTAINER_BASE_IMAGE": BASE_IMAGE,
                 "VOICEGEN_CONDA_EXECUTABLE": settings.conda_executable}
    data = root / "data"
    data.mkdir()
    for folder in (root, data):
        folder.chmod(0o755)  # a data folder is readable by a container worker's user, as one made by the app is
    server = start_app(data, extra_env=extra_env, timeout_s=600)
    try:
        yield kind, server
    finally:
        server.stop()


def containers_of(data_dir: Path) -> List[str]:
    instance = instance_of(Settings(data_dir=data_dir))
    out = subprocess.run([ENGINE, "ps", "--all", "--quiet", "--filter", "label=voicegen.instance=%s" % instance],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return out.split()


@pytest.mark.slow
def test_piper_speaks_in_each_kind_and_a_killed_app_leaves_nothing(kind_app: Tuple[str, AppServer]) -> None:
    kind, server = kind_app
    client = Client(server.url, verbose=False)
    path, _ = client.predict("piper", "joe", "Hello from a worker in its own environment.", None, {}, "wav", {}, {}, False,
                                api_name="/generate")
    audio, sample_rate = soundfile.read(path, dtype="float32")
    assert sample_rate == 22050 and 1.0 < len(audio) / sample_rate < 6.0 and float(abs(audio).max()) > 0.05
    [row] = [row for row in client.predict(api_name="/runtime_status") if row["architecture"] == "piper"]
    assert row["kind"] == kind and row["state"] == "ready" and 0 < row["spawn_s"] < 30
    worker = psutil.Process(row["pid"])
    processes = [worker, *worker.children(recursive=True)]
    if kind == "container":
        assert len(containers_of(server.data_dir)) == 1
        assert "run" in worker.cmdline() and "--init" in worker.cmdline()  # the engine's client, attached
    else:
        assert Path(worker.cmdline()[0]).is_relative_to(built_envs_dir())  # the env's own interpreter, no `conda run`

    server.process.kill()  # SIGKILL: no shutdown code runs
    server.process.wait(10)
    assert wait_until(lambda: not any(alive(process) for process in processes), 10)
    if kind == "container":
        assert wait_until(lambda: containers_of(server.data_dir) == [], 10)


def alive(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running()) and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("kind_app", [pytest.param("container", marks=pytest.mark.container)], indirect=True)
def test_a_person_in_a_browser_uses_piper_in_a_container(kind_app: Tuple[str, AppServer], tmp_path: Path) -> None:
    """Nothing changes for them: type, Generate, a player; the Runtimes tab says the worker is a container."""
    from playwright.sync_api import expect

    from tests.app.test_browser import browser_page

    _, server = kind_app
    with browser_page(server.url) as page:
        page.get_by_label("Text", exact=True).fill("Hello from a container.")
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("audio[src]").first).to_be_attached(timeout=60_000)
        page.get_by_role("tab", name="Runtimes").click()
        expect(page.get_by_text("container", exact=True).filter(visible=True).first).to_be_visible(timeout=15_000)
        page.screenshot(path=str(tmp_path / "runtimes.png"), full_page=True)
    assert len(containers_of(server.data_dir)) == 1
