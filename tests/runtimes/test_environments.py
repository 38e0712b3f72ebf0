"""Environment builds: idempotent by spec hash, failures name the package and leave nothing behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runtimes.environments import MARKER_NAME, EnvironmentBuilder, EnvSpec, failing_package, load_spec
from runtimes.errors import EnvironmentBuildError


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
    folder = tmp_path / "conda-arch"
    folder.mkdir()
    (folder / "spec.toml").write_text('name = "x"\nkind = "conda"\npython = "3.10"\nadapter = "a:B"\n')
    with pytest.raises(EnvironmentBuildError, match="kind 'conda' is not supported"):
        load_spec(folder)
