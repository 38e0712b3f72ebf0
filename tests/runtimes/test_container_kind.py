"""The container kind's own promises, on the local engine (Docker here; skipped naming why where none runs):
what a worker can see and do from inside its container, GPUs the engine cannot honour, leftovers found by
label, and the image a spec becomes."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterator, List

import numpy as np
import psutil
import pytest

from runtimes.environments import EnvironmentBuilder, EnvSpec, load_spec
from runtimes.envkinds.base import BuiltEnv, KindSettings
from runtimes.envkinds.container import INSTANCE_LABEL, OWNER_LABEL, ContainerKind, exit_code_of
from runtimes.envkinds.dockerfile import build_context
from runtimes.envkinds.registry import EnvironmentKinds
from runtimes.errors import BadRequestError, WorkerBootError
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import PROJECT_ROOT, ScriptedGpus, wait_until
from tests.env_kinds import BASE_IMAGE, ENGINE, kind_settings

pytestmark = pytest.mark.container
TONE = (0.25 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)).astype(np.float32)

PROBE = r"""
import json, os, socket, sys
seen = {}
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
        seen[path] = "read"
    except OSError as exc:
        seen[path] = type(exc).__name__
try:
    open(os.path.join(os.path.dirname(sys.argv[1]), "written-by-the-worker"), "w").close()
    seen["write"] = "wrote"
except OSError as exc:
    seen["write"] = type(exc).__name__
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2).close()
    seen["network"] = "connected"
except OSError as exc:
    seen["network"] = type(exc).__name__
seen["uid"] = os.getuid()
print(json.dumps(seen))
"""


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An app's data folder as the app lays it out, every folder readable by others (as a data folder is)."""
    data = tmp_path / "data"
    files = {
        "jobs.sqlite3": b"the job database",
        "auth.txt": b"alice:secret",
        "characters/fake/alice/alice.fakevoice": b"alice's model",
        "characters/piper/bob/bob.onnx": b"another architecture's model",
        "shared-models/fake/base/base.bin": b"a shared model",
        "assets/encoder/encoder.bin": b"a shared asset",
        "outputs/2026-12-04/take.wav": b"someone's take",
    }
    for name, content in files.items():
        path = data / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for folder in [tmp_path, *data.rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o755)
    return data


@pytest.fixture
def supervisor(data_dir: Path, builder: EnvironmentBuilder, fake_spec: EnvSpec, tmp_path: Path) -> Iterator[Supervisor]:
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path / "run", assets_dir=data_dir / "assets",
                                  model_roots=(data_dir / "characters", data_dir / "shared-models"))
    kinds = EnvironmentKinds(kind_settings("container", builder.envs_dir, builder.logs_dir))
    made = Supervisor(settings, {"fake": replace(fake_spec, kind="container")}, memory=SystemRamSource(), kinds=kinds)
    yield made
    made.shutdown()


def alice_job(data_dir: Path, character: str = "characters/fake/alice") -> JobRequest:
    return JobRequest(architecture="fake", character=Path(character).name, character_path=str(data_dir / character), audio=TONE,
                      audio_sample_rate=16000)


def test_a_worker_sees_its_architectures_folders_and_nothing_else(supervisor: Supervisor, data_dir: Path) -> None:
    """Probed from inside the worker's own container (``exec`` shares its mounts, user and network)."""
    supervisor.generate(alice_job(data_dir))
    [worker] = supervisor.table.live()
    name = worker.process.handle.record_entry()["name"]
    paths = {label: str(data_dir / relative) for label, relative in {
        "alice": "characters/fake/alice/alice.fakevoice", "shared": "shared-models/fake/base/base.bin",
        "asset": "assets/encoder/encoder.bin", "jobs": "jobs.sqlite3", "auth": "auth.txt",
        "bob": "characters/piper/bob/bob.onnx", "take": "outputs/2026-12-04/take.wav"}.items()}
    kind = supervisor.kinds.named("container")
    probed = [kind.map_path(path) for path in paths.values()] + list(paths.values())  # as mapped, and the host's own paths
    out = subprocess.run([ENGINE, "exec", name, "/opt/voicegen/env/bin/python", "-c", PROBE, *probed],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    seen: Dict[str, object] = json.loads(out)
    mapped = {label: seen[kind.map_path(path)] for label, path in paths.items()}
    assert mapped == {"alice": "read", "shared": "read", "asset": "read", "jobs": "FileNotFoundError", "auth": "FileNotFoundError",
                      "bob": "FileNotFoundError", "take": "FileNotFoundError"}
    assert all(seen[path] == "FileNotFoundError" for path in paths.values())  # the host's paths mean nothing inside
    assert seen["write"] == "OSError" or seen["write"] in ("PermissionError",)  # its character folder is read-only
    assert not (data_dir / "characters" / "fake" / "alice" / "written-by-the-worker").exists()
    assert seen["network"] != "connected" and seen["uid"] != 0


def test_a_request_path_the_container_cannot_see_is_refused_by_name(supervisor: Supervisor, data_dir: Path) -> None:
    with pytest.raises(BadRequestError, match="characters/piper/bob is outside the folders the fake-\\d+ worker's container can see"):
        supervisor.generate(alice_job(data_dir, "characters/piper/bob"))
    assert supervisor.generate(alice_job(data_dir)).sample_rate == 16000  # the worker serves on


def test_a_gpu_the_engine_cannot_give_is_a_clear_error(builder: EnvironmentBuilder, fake_spec: EnvSpec, tmp_path: Path) -> None:
    """Placed on a GPU (scripted: none exists here), the worker is started with ``--gpus``; an engine without
    NVIDIA's runtime refuses it, and that refusal is what the person reads."""
    kinds = EnvironmentKinds(kind_settings("container", builder.envs_dir, builder.logs_dir))
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path / "run")
    supervisor = Supervisor(settings, {"fake": replace(fake_spec, kind="container")}, memory=ScriptedGpus({"GPU-fake": (24, 20)}),
                            kinds=kinds)
    try:
        with pytest.raises(WorkerBootError, match="(?s)exited with code 125.*could not select device driver"):
            supervisor.generate(JobRequest(architecture="fake", character="plain", audio=TONE, audio_sample_rate=16000))
    finally:
        supervisor.shutdown()
    assert list_containers("label=%s=%s" % (INSTANCE_LABEL, kinds.named("container").instance)) == []


def test_podman_without_cdi_is_refused_instead_of_silently_losing_the_gpu(tmp_path: Path) -> None:
    """Podman accepts ``--gpus`` and ignores it. A stand-in ``podman`` (only its version answer: no podman
    installs here) makes the kind take podman's path; with no CDI specification it refuses before starting."""
    if any(any(Path(folder).glob("nvidia*")) for folder in ("/etc/cdi", "/var/run/cdi")):
        pytest.skip("this machine has NVIDIA's CDI specification")
    podman = tmp_path / "podman"
    podman.write_text("#!/bin/sh\necho 'podman version 4.3.1'\n")
    podman.chmod(podman.stat().st_mode | stat.S_IEXEC)
    kind = ContainerKind(KindSettings(tmp_path / "envs", tmp_path / "logs", container_engine=str(podman)))
    image = BuiltEnv(spec=load_spec(PROJECT_ROOT / "tests" / "envs" / "fake"), kind="container", interpreter="/opt/voicegen/env/bin/python",
                     location="voicegen-env/fake:current")
    with pytest.raises(OSError, match="podman needs NVIDIA's CDI specification"):
        kind.launch(image, ["-c", "pass"], {"CUDA_VISIBLE_DEVICES": "GPU-0"}, tmp_path)
    handle = kind.launch(image, ["-c", "pass"], {"CUDA_VISIBLE_DEVICES": ""}, tmp_path)  # no GPU: it is started
    assert [line.strip() for line in handle.output()] == [b"podman version 4.3.1"] and handle.wait(10) == 0


def list_containers(*filters: str) -> List[str]:
    args = [ENGINE, "ps", "--all", "--format", "{{.Names}}"]
    for item in filters:
        args += ["--filter", item]
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=30).stdout.split()


def test_a_restarted_app_removes_containers_its_predecessor_left(builder: EnvironmentBuilder, fake_spec: EnvSpec, tmp_path: Path) -> None:
    """A container labelled with this data folder's instance whose app is gone, and no record naming it."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    instance = "strays-%d" % os.getpid()
    labels = ["--label", "%s=%s" % (INSTANCE_LABEL, instance)]
    subprocess.run([ENGINE, "run", "-d", "--rm", "--name", "voicegen-stray-%d" % os.getpid(), *labels, "--label",
                    "%s=%d" % (OWNER_LABEL, dead.pid), BASE_IMAGE, "sleep", "600"], check=True, capture_output=True, timeout=60)
    other = subprocess.run([ENGINE, "run", "-d", "--rm", "--label", "%s=another-data-folder" % INSTANCE_LABEL, "--label",
                            "%s=%d" % (OWNER_LABEL, dead.pid), BASE_IMAGE, "sleep", "600"], check=True, capture_output=True, text=True,
                           timeout=60).stdout.strip()
    try:
        assert list_containers("label=%s=%s" % (INSTANCE_LABEL, instance)) != []
        kinds = EnvironmentKinds(kind_settings("container", builder.envs_dir, builder.logs_dir, instance=instance))
        Supervisor(SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path / "run"), {"fake": replace(fake_spec, kind="container")},
                   memory=SystemRamSource(), kinds=kinds).shutdown()
        assert wait_until(lambda: list_containers("label=%s=%s" % (INSTANCE_LABEL, instance)) == [], 10)
        assert list_containers("id=%s" % other) != []  # another data folder's: not ours to remove
    finally:
        subprocess.run([ENGINE, "rm", "--force", other], capture_output=True, check=False)


def test_exit_codes_read_as_a_host_process_would_end() -> None:
    assert [exit_code_of(code) for code in (0, 3, 125, 137, 143, None)] == [0, 3, 125, -9, -15, None]


def test_the_made_dockerfile_installs_the_layers_prunes_and_takes_a_base(tmp_path: Path) -> None:
    """No engine needed: what goes into the build context for a spec with every kind of layer."""
    folder = tmp_path / "spec"
    folder.mkdir()
    (folder / "spec.toml").write_text('name = "demo"\nkind = "container"\npython = "3.10"\nadapter = "a:B"\nprune = ["demo/lib/*.so"]\n')
    (folder / "requirements.txt").write_text("numpy>=1.24\n")
    (folder / "requirements-cpu.txt").write_text("torch==2.13.0\n")
    (folder / "requirements-cuda.txt").write_text("torch==2.13.0+cu128\n")
    (folder / "requirements-nodeps.txt").write_text("demo-package==1.0\n")
    context = tmp_path / "context"
    context.mkdir()
    text = build_context(load_spec(folder), "cpu", context, "ab" * 32).read_text()
    assert "ARG BASE=python:3.10-slim\nFROM $BASE" in text
    assert "-r /opt/voicegen/requirements/requirements.txt -r /opt/voicegen/requirements/requirements-cpu.txt" in text
    assert "--no-deps --find-links /opt/voicegen/wheels -r /opt/voicegen/requirements/requirements-nodeps.txt" in text
    assert "'demo/lib/*.so'" in text and "requirements-cuda.txt" not in text
    assert sorted(path.name for path in (context / "requirements").iterdir()) == [
        "requirements-cpu.txt", "requirements-nodeps.txt", "requirements.txt"]
    wheels = sorted(path.name for path in (context / "wheels").iterdir() if path.suffix == ".whl")
    assert all(name.startswith("torch-") for name in wheels)  # only wheels a requirement names (a CPU torch, where pip has one)
    shipped = tmp_path / "shipped"
    shutil.copytree(folder, shipped)
    (shipped / "Dockerfile").write_text("ARG BASE=debian\nFROM $BASE\n")
    other = tmp_path / "context2"
    other.mkdir()
    assert build_context(load_spec(shipped), "cpu", other, "cd" * 32).read_text() == "ARG BASE=debian\nFROM $BASE\n"


PODMAN_RUN_ARGS = os.environ.get("VOICEGEN_TEST_PODMAN_RUN_ARGS", "--ulimit nofile=20000:20000 --ulimit nproc=32768:32768")
"""This machine's root cannot raise limits, which podman asks for by default (/work/shared/reference/containers.md)."""


@pytest.mark.slow
def test_podman_is_an_engine_too(fake_spec: EnvSpec, builder: EnvironmentBuilder, tmp_path: Path) -> None:
    """Where podman installs: the same image build, a job, the worker's container gone after a stop."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman)")
    kind_settings("container", builder.envs_dir, builder.logs_dir)  # the base image comes from the Docker engine here
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE], check=False).returncode != 0:
        with subprocess.Popen([ENGINE, "save", BASE_IMAGE], stdout=subprocess.PIPE) as saved:  # closes its pipe after
            subprocess.run(["podman", "load"], stdin=saved.stdout, check=True, capture_output=True, timeout=300)
            saved.wait(60)
    instance = "podman-%d" % os.getpid()
    settings = KindSettings(builder.envs_dir, builder.logs_dir, "cpu", container_engine="podman", container_base_image=BASE_IMAGE,
                            container_run_args=PODMAN_RUN_ARGS, instance=instance)
    supervisor = Supervisor(SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path / "run"),
                            {"fake": replace(fake_spec, kind="container")}, memory=SystemRamSource(), kinds=EnvironmentKinds(settings))
    try:
        result = supervisor.generate(JobRequest(architecture="fake", character="plain", audio=TONE, audio_sample_rate=16000,
                                                options={"gain": 2.0}))
        np.testing.assert_allclose(result.audio, TONE * 2.0, rtol=1e-6)
        [row] = supervisor.status()
        assert row["kind"] == "container" and "podman" in " ".join(psutil.Process(row["pid"]).cmdline())
    finally:
        supervisor.shutdown()
    listed = subprocess.run(["podman", "ps", "--all", "--quiet", "--filter", "label=%s=%s" % (INSTANCE_LABEL, instance)],
                            capture_output=True, text=True, check=True).stdout
    assert listed.split() == []
