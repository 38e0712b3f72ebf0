"""Environment builds: idempotent by spec hash, failures name the package and leave nothing half-built
behind; a rebuild builds beside the working environment and swaps only when it is complete."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import psutil
import pytest

from runtimes.environments import MARKER_NAME, EnvironmentBuilder, EnvSpec, failing_package, load_spec
from runtimes.errors import EnvironmentBuildError
from runtimes.supervisor import JobRequest
from tests.conftest import SupervisorFactory


def copy_spec(source: EnvSpec, folder: Path) -> EnvSpec:
    shutil.copytree(source.folder, folder)
    return load_spec(folder)


def test_rebuild_only_when_the_spec_changes(tmp_path: Path, fake_spec: EnvSpec) -> None:
    spec = copy_spec(fake_spec, tmp_path / "spec")
    builder = EnvironmentBuilder(tmp_path / "envs", tmp_path / "logs", "cpu")
    lines: list[str] = []
    python = builder.ensure(spec, lines.append)
    assert python.exists() and any("ready" in line for line in lines)
    marker = builder.env_dir(spec) / MARKER_NAME
    first_mtime = marker.stat().st_mtime_ns
    lines.clear()
    assert builder.ensure(spec, lines.append) == python
    assert lines == [] and marker.stat().st_mtime_ns == first_mtime  # nothing rebuilt
    (spec.folder / "requirements-cpu.txt").write_text("# a changed layer\n")
    assert not builder.is_ready(spec)
    builder.ensure(spec, lines.append)
    assert any("building" in line for line in lines)


def test_failed_build_names_the_package_and_leaves_no_env(tmp_path: Path, fake_spec: EnvSpec) -> None:
    spec = copy_spec(fake_spec, tmp_path / "spec")
    (spec.folder / "requirements.txt").write_text("numpy\nthis-package-does-not-exist-voicegen==1.0\n")
    builder = EnvironmentBuilder(tmp_path / "envs", tmp_path / "logs", "cpu")
    with pytest.raises(EnvironmentBuildError) as caught:
        builder.ensure(spec)
    assert caught.value.package == "this-package-does-not-exist-voicegen"
    assert "this-package-does-not-exist-voicegen" in str(caught.value)
    assert not builder.env_dir(spec).exists()
    assert Path(str(caught.value.log_path)).exists()


def test_failing_package_understands_pip_and_uv() -> None:
    pip = "ERROR: Could not find a version that satisfies the requirement nosuchpkg==9 (from versions: none)"
    assert failing_package(pip) == "nosuchpkg"
    uv = "  × No solution found when resolving dependencies:\n  ╰─▶ Because nosuchpkg was not found in the package registry"
    assert failing_package(uv) == "nosuchpkg"
    assert failing_package("all fine") is None


def test_unsupported_kind_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "nix-arch"
    folder.mkdir()
    (folder / "spec.toml").write_text('name = "x"\nkind = "nix"\npython = "3.10"\nadapter = "a:B"\n')
    with pytest.raises(EnvironmentBuildError, match="kind 'nix' is not supported"):
        load_spec(folder)


# issue 17 defect 12: a rebuild builds the new environment beside the working one, then swaps

PROJECT_ROOT = Path(__file__).resolve().parents[2]
UNINSTALLABLE = "numpy>=1.24,<3\nthis-package-does-not-exist-voicegen==1.0\n"


def adapter_runs(python: Path) -> str:
    """What the env's interpreter says importing the fake adapter (as a worker would: project on the path)."""
    out = subprocess.run(
        [str(python), "-c", "import sys, numpy; from tests.fakes.fake_adapter import MANIFEST; print(MANIFEST.architecture, sys.prefix)"],
        cwd=str(PROJECT_ROOT), env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)), capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[0]


def test_a_failed_rebuild_keeps_the_working_env_and_a_good_one_swaps_in(tmp_path: Path, fake_spec: EnvSpec) -> None:
    spec = copy_spec(fake_spec, tmp_path / "spec")
    builder = EnvironmentBuilder(tmp_path / "envs", tmp_path / "logs", "cpu")
    first = builder.ensure(spec)
    good_requirements = (spec.folder / "requirements.txt").read_text()

    (spec.folder / "requirements.txt").write_text(UNINSTALLABLE)  # e.g. an update that cannot install offline
    with pytest.raises(EnvironmentBuildError) as caught:
        builder.ensure(spec)
    assert caught.value.package == "this-package-does-not-exist-voicegen"
    assert "working fake environment was kept" in str(caught.value)
    assert caught.value.kept_python == str(first)
    assert adapter_runs(first) == "fake"  # the old env still runs and imports its adapter
    assert adapter_runs(builder.env_dir(spec) / "bin" / "python") == "fake"  # and is still where it is looked for
    assert not builder.is_ready(spec)
    said: list[str] = []  # the launcher's way: start with the kept env, saying why
    assert builder.ensure_or_keep(spec, said.append) == first
    assert said[-1] == ("could not update the fake environment (package this-package-does-not-exist-voicegen could not be installed); "
                        "using the working one built before")

    (spec.folder / "requirements.txt").write_text(good_requirements + "# a good change\n")
    second = builder.ensure(spec)
    assert second != first and builder.is_ready(spec)
    assert adapter_runs(second) == "fake"
    assert (builder.env_dir(spec) / "bin" / "python").resolve() == second.resolve()
    assert not first.exists()  # the old version went once the new one was in place (no worker used it)
    assert sorted(p.name for p in (tmp_path / "envs").iterdir() if not p.name.startswith(".")) == sorted(
        ["fake", second.parent.parent.name])


def test_an_old_version_stays_while_a_process_runs_from_it(tmp_path: Path, fake_spec: EnvSpec) -> None:
    spec = copy_spec(fake_spec, tmp_path / "spec")
    builder = EnvironmentBuilder(tmp_path / "envs", tmp_path / "logs", "cpu")
    first = builder.ensure(spec)
    running = subprocess.Popen([str(first), "-c", "import time; time.sleep(600)"])  # a worker of the old version
    try:
        (spec.folder / "requirements.txt").write_text("numpy>=1.24,<3\n# changed\n")
        second = builder.ensure(spec)
        assert second != first
        assert first.exists() and adapter_runs(first) == "fake"  # still whole under the running process
    finally:
        running.kill()
        running.wait()
    assert builder.ensure(spec) == second  # the next start removes it
    assert not first.parent.parent.exists()


def test_an_env_built_before_versions_is_used_then_replaced(tmp_path: Path, fake_spec: EnvSpec) -> None:
    """``data/envs/<arch>/`` as earlier builders made it (a plain folder with the marker) is used as it is,
    and a rebuild puts a versioned one in its place."""
    spec = copy_spec(fake_spec, tmp_path / "spec")
    builder = EnvironmentBuilder(tmp_path / "envs", tmp_path / "logs", "cpu")
    legacy = builder.env_dir(spec)
    with (tmp_path / "legacy.log").open("w") as log:
        for command in builder._commands(spec, legacy):
            builder._run(command, log, lambda line: None, spec.name)
    (legacy / MARKER_NAME).write_text(json.dumps({"spec_hash": builder.spec_hash(spec), "layer": "cpu", "python": spec.python}))
    assert builder.is_ready(spec)
    assert builder.ensure(spec) == legacy / "bin" / "python"  # nothing rebuilt

    (spec.folder / "requirements.txt").write_text(UNINSTALLABLE)
    with pytest.raises(EnvironmentBuildError, match="was kept"):
        builder.ensure(spec)
    assert adapter_runs(legacy / "bin" / "python") == "fake" and not legacy.is_symlink()

    (spec.folder / "requirements.txt").write_text("numpy>=1.24,<3\n# changed\n")
    new = builder.ensure(spec)
    assert legacy.is_symlink() and adapter_runs(legacy / "bin" / "python") == "fake"
    assert sorted(p.name for p in (tmp_path / "envs").iterdir() if not p.name.startswith(".")) == sorted(["fake", new.parent.parent.name])


def test_the_supervisor_keeps_serving_from_the_kept_env_when_an_update_fails(
    tmp_path: Path, fake_spec: EnvSpec, make_supervisor: SupervisorFactory
) -> None:
    spec = copy_spec(fake_spec, tmp_path / "spec")
    builder = EnvironmentBuilder(tmp_path / "envs", tmp_path / "logs", "cpu")
    first = builder.ensure(spec)
    (spec.folder / "requirements.txt").write_text(UNINSTALLABLE)
    supervisor = make_supervisor({"fake": spec}, resolve_python=lambda s, progress: builder.ensure(s, lambda line: progress(None, line)))
    said: list[str] = []
    tone = np.zeros(1600, dtype=np.float32)
    result = supervisor.generate(JobRequest(architecture="fake", character="plain", audio=tone, audio_sample_rate=16000),
                                 lambda fraction, message: said.append(message))
    assert result.sample_rate == 16000
    assert any("could not update the fake environment" in line and "this-package-does-not-exist-voicegen" in line for line in said), said
    [row] = supervisor.status()
    assert psutil.Process(row["pid"]).cmdline()[0] == str(first)


def test_where_links_cannot_be_made_a_small_file_names_the_current_version(
    tmp_path: Path, fake_spec: EnvSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows without the right to make symbolic links: ``<name>.current`` is replaced atomically instead."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("symbolic links are not allowed here")

    monkeypatch.setattr(os, "symlink", refuse)
    spec = copy_spec(fake_spec, tmp_path / "spec")
    builder = EnvironmentBuilder(tmp_path / "envs", tmp_path / "logs", "cpu")
    first = builder.ensure(spec)
    assert (tmp_path / "envs" / "fake.current").read_text() == first.parent.parent.name
    assert builder.is_ready(spec) and builder.ensure(spec) == first
    (spec.folder / "requirements.txt").write_text("numpy>=1.24,<3\n# changed\n")
    second = builder.ensure(spec)
    assert (tmp_path / "envs" / "fake.current").read_text() == second.parent.parent.name
    assert adapter_runs(second) == "fake" and not first.exists()
