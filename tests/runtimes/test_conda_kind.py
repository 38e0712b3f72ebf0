"""The ``conda`` environment kind (``runtimes.envkinds.conda``) through a stand-in conda tool
(``tests/conda_standin.py``: no conda channel is reachable here): the real command lines, a real prefix
with a real interpreter, the tool's progress and failure output, pip's part by the prefix's own pip, and
a real supervisor running the fake architecture in it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, List

import numpy as np
import psutil
import pytest

from runtimes.environments import EnvSpec, load_spec
from runtimes.envkinds.base import BuiltEnv, KindSettings
from runtimes.envkinds.conda import CondaHandle, CondaKind, conda_failing_package, find_tool, read_environment
from runtimes.envkinds.registry import KINDS, EnvironmentKinds
from runtimes.errors import EnvironmentBuildError
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conda_standin import write_conda_standin
from tests.conftest import PROJECT_ROOT

TONE = (0.25 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)).astype(np.float32)


@dataclass
class Session:
    settings: KindSettings
    kind: CondaKind
    spec: EnvSpec
    built: BuiltEnv
    progress: List[str]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory, fake_spec: EnvSpec) -> Session:
    """The fake architecture built once through the stand-in, for the whole file."""
    root = tmp_path_factory.mktemp("conda")
    tool = write_conda_standin(root / "bin")
    settings = KindSettings(root / "envs", root / "logs", "cpu", conda_executable=str(tool))
    kind = CondaKind(settings)
    spec = replace(fake_spec, kind="conda")
    progress: List[str] = []
    return Session(settings, kind, spec, kind.build(spec, progress.append), progress)


def own_spec(fake_spec: EnvSpec, tmp_path: Path, environment_yml: str) -> EnvSpec:
    folder = Path(shutil.copytree(fake_spec.folder, tmp_path / "spec"))
    (folder / "environment.yml").write_text(environment_yml)
    return replace(load_spec(folder), kind="conda")


def run_in(python: str, code: str) -> str:
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def test_the_registry_names_the_conda_kind() -> None:
    assert KINDS["conda"] is CondaKind and EnvironmentKinds().named("conda").name == "conda"


def test_the_fake_architecture_builds_into_a_prefix_through_the_tool(session: Session) -> None:
    built, prefix = session.built, Path(session.built.location)
    assert built.kind == "conda" and built.current and built.note == "" and built.spec_hash
    assert prefix.parent == session.settings.envs_dir / "conda" and prefix.name.startswith("fake-")
    assert Path(built.interpreter) == prefix / "bin" / "python"
    assert (session.settings.envs_dir / "conda" / "fake").resolve() == prefix.resolve()  # the current version's link
    history = (prefix / "conda-meta" / "history").read_text()
    assert "create --yes --prefix %s --override-channels --channel conda-forge python=3.11 pip" % prefix in history  # generated
    assert run_in(built.interpreter, "import sys, numpy; print('%d.%d' % sys.version_info[:2])") == "3.11"
    said = "\n".join(session.progress)
    for line in ("[fake] conda 24.1.2", "[fake] Solving environment: done", "[fake] Executing transaction: ...working...",
                 "[fake] Python 3.11 at %s" % built.interpreter, "the fake environment is ready"):
        assert line in said
    assert "conda run" not in said


def test_a_build_is_cached_by_the_hash(session: Session, tmp_path: Path) -> None:
    lines: List[str] = []
    assert session.kind.build(session.spec, lines.append) == session.built and lines == []
    assert session.kind.is_current(session.spec)
    other_tool = CondaKind(replace(session.settings, conda_executable=str(write_conda_standin(tmp_path, "micromamba"))))
    assert other_tool.builder.spec_hash(session.spec) != session.built.spec_hash  # another tool solves on its own


def test_a_folders_environment_yml_is_honoured_and_a_failed_update_keeps_the_build(
    session: Session, fake_spec: EnvSpec, tmp_path: Path
) -> None:
    kind = CondaKind(replace(session.settings, envs_dir=tmp_path / "envs"))
    good = "name: ignored\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n      - six\n"
    spec = own_spec(fake_spec, tmp_path, good)
    first = kind.build(spec)
    assert first.current and run_in(first.interpreter, "import six, numpy; print(six.__name__)") == "six"
    history = (Path(first.location) / "conda-meta" / "history").read_text()
    assert "python=3.11 pip\n" in history and "six" not in history  # the pip: section went to pip, not to the tool

    (spec.folder / "environment.yml").write_text(good.replace("  - pip\n", "  - pip\n  - no-such-conda-package-voicegen>=1.0\n"))
    assert not kind.is_current(spec)
    lines: List[str] = []
    kept = kind.build(spec, lines.append)
    assert not kept.current and "no-such-conda-package-voicegen" in kept.note and lines[-1] == kept.note
    assert (kept.interpreter, kept.location, kept.spec_hash) == (first.interpreter, first.location, first.spec_hash)
    assert "[fake] Solving environment: failed" in lines

    (spec.folder / "environment.yml").write_text(good.replace("python=3.11", "python=3.10"))
    with pytest.raises(EnvironmentBuildError, match=r"(?s)the prefix has Python 3.10, but spec.toml asks for 3.11.*working fake env"):
        kind.builder.ensure(spec)


def test_a_first_build_that_fails_names_the_package(session: Session, fake_spec: EnvSpec, tmp_path: Path) -> None:
    kind = CondaKind(replace(session.settings, envs_dir=tmp_path / "envs"))
    spec = own_spec(fake_spec, tmp_path, "dependencies:\n  - python=3.11\n  - ffmpeg=6\n")
    with pytest.raises(EnvironmentBuildError, match=r"building the fake environment failed \(package ffmpeg; log ") as caught:
        kind.build(spec)
    assert caught.value.package == "ffmpeg" and caught.value.kept_python is None
    assert "PackagesNotFoundError" in str(caught.value) and not list((tmp_path / "envs").glob("fake-*"))


def test_no_tool_found_says_what_to_install(session: Session, fake_spec: EnvSpec, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("MAMBA_EXE", raising=False)
    monkeypatch.delenv("CONDA_EXE", raising=False)
    assert find_tool() is None
    kind = CondaKind(KindSettings(tmp_path / "envs", tmp_path / "logs", "cpu"))
    with pytest.raises(EnvironmentBuildError, match=r"no conda tool was found: install micromamba \(or mamba, or conda\), or set"):
        kind.build(session.spec)
    named = CondaKind(KindSettings(tmp_path / "envs", tmp_path / "logs", "cpu", conda_executable="/nowhere/micromamba"))
    with pytest.raises(EnvironmentBuildError, match=r"set conda_executable to its path \(now '/nowhere/micromamba', not found\)"):
        named.build(session.spec)
    unusable = tmp_path / "conda"
    unusable.write_text("not a program")  # found, but it cannot start: said, not a traceback
    broken = CondaKind(KindSettings(tmp_path / "envs", tmp_path / "logs", "cpu", conda_executable=str(unusable)))
    with pytest.raises(EnvironmentBuildError, match=r"(?s)building the fake environment failed.*cannot run %s: \[Errno 13\]" % unusable):
        broken.build(session.spec)


def test_the_tool_is_found_on_path_then_through_its_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conda = write_conda_standin(tmp_path / "a", "conda")
    micromamba = write_conda_standin(tmp_path / "b", "micromamba")
    monkeypatch.delenv("MAMBA_EXE", raising=False)
    monkeypatch.setenv("PATH", "%s:%s" % (conda.parent, micromamba.parent))
    assert find_tool() == str(micromamba)  # micromamba before conda, wherever they are on PATH
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("CONDA_EXE", str(conda))
    assert find_tool() == str(conda)
    assert find_tool("micromamba") is None and find_tool(str(micromamba)) == str(micromamba)


def test_conda_and_mamba_failure_wordings_name_the_package() -> None:
    assert conda_failing_package("PackagesNotFoundError: The following packages are not available from current channels:\n\n"
                                 "  - foo-bar[version='>=2']\n") == "foo-bar"
    assert conda_failing_package("Encountered problems while solving:\n  - nothing provides requested torchaudio 9.9.*\n") == "torchaudio"
    assert conda_failing_package("error    libmamba Could not solve for environment specs\n    The following package could not be "
                                 "installed\n    └─ espeakng =* * does not exist (perhaps a typo or a missing channel).") == "espeakng"
    assert conda_failing_package("ERROR: No matching distribution found for some-wheel") == "some-wheel"  # pip's, after the tool


def test_the_pip_section_and_a_missing_python_are_read_from_the_file(fake_spec: EnvSpec, tmp_path: Path) -> None:
    pip = ["six", "-r extra.txt", "-e ./local", "--constraint=/abs/c.txt", "git+https://example.org/x.git", "../sibling"]
    yml = "channels: [pytorch, conda-forge]\ndependencies:\n  - conda-forge::ffmpeg\n  - pip:\n%s" % "".join("    - %s\n" % p for p in pip)
    spec = own_spec(fake_spec, tmp_path, yml)
    environment = read_environment(spec)
    folder = spec.folder
    assert environment.channels == ("pytorch", "conda-forge")
    assert environment.pip == ("six", "-r %s" % (folder / "extra.txt"), "-e %s" % (folder / "local"), "--constraint /abs/c.txt",
                               "git+https://example.org/x.git", str(folder / "../sibling"))  # paths as read from the file's folder
    assert environment.conda == ("python=3.11", "conda-forge::ffmpeg", "pip")  # the spec's python, and pip for the pip part


@pytest.fixture
def supervisor(session: Session, tmp_path: Path) -> Iterator[Supervisor]:
    made = Supervisor(SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path / "run"), {"fake": session.spec}, None,
                      memory=SystemRamSource(), kinds=EnvironmentKinds(session.settings))
    yield made
    made.shutdown()


def test_the_supervisor_runs_the_fake_adapter_as_the_prefixs_python(session: Session, supervisor: Supervisor) -> None:
    result = supervisor.generate(JobRequest(architecture="fake", character="plain", audio=TONE, audio_sample_rate=16000,
                                            options={"gain": 2.0}))
    np.testing.assert_allclose(result.audio, TONE * 2.0, rtol=1e-6)
    [worker] = supervisor.table.live()
    handle = worker.process.handle
    assert isinstance(handle, CondaHandle) and handle.kind == "conda"
    command = psutil.Process(handle.main_pid).cmdline()
    assert command[0] == session.built.interpreter and Path(command[0]).is_relative_to(session.built.location)
    assert not any("conda" == Path(part).name or part == "run" for part in command)  # no `conda run` between
    environ = psutil.Process(handle.main_pid).environ()  # activated as conda would: its programs first on PATH
    assert environ["CONDA_PREFIX"] == session.built.location
    assert environ["PATH"].split(os.pathsep)[0] == str(Path(session.built.location) / "bin")
    record = json.loads(supervisor.table.record.path.read_text())
    assert [entry["kind"] for entry in record] == ["conda"]
    assert supervisor.stop(worker.name)
    assert handle.poll() is not None and handle.wait_all(1.0)
