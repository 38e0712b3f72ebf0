"""Settings are layered: defaults < <data-dir>/config.toml < VOICEGEN_* environment < flags."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings, build_settings


def test_layers_in_order(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('port = 8000\nkeep_alive_s = 60\nhost = "0.0.0.0"\nprewarm = ""\n')
    settings = build_settings({"VOICEGEN_PORT": "8100", "VOICEGEN_ALLOW_CPU_FALLBACK": "true"}, {"data_dir": str(tmp_path), "port": 9000})
    assert settings.port == 9000  # flag beats env beats file
    assert settings.keep_alive_s == 60.0 and settings.host == "0.0.0.0" and settings.prewarm == ""  # from the file
    assert settings.allow_cpu_fallback is True  # from the environment
    assert settings.data_dir == tmp_path.resolve()
    assert settings.built_envs_dir == tmp_path.resolve() / "envs"


def test_defaults_without_anything(tmp_path: Path) -> None:
    settings = build_settings({}, {"data_dir": str(tmp_path)})
    assert (settings.host, settings.port, settings.share, settings.keep_alive_s) == ("127.0.0.1", 7860, False, 300.0)
    assert settings.extra_spec_dirs == () and settings.spec_dirs == (Settings().project_root / "envs",)
    extra = build_settings({"VOICEGEN_EXTRA_SPEC_DIRS": "/a:/b", "VOICEGEN_RAM_BUDGET_MB": "900"}, {"data_dir": str(tmp_path)})
    assert extra.extra_spec_dirs == (Path("/a"), Path("/b")) and extra.ram_budget_mb == 900


def test_a_wrong_value_is_refused_by_name(tmp_path: Path) -> None:
    import subprocess
    import sys

    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="keep_alive_s"):
        build_settings({"VOICEGEN_KEEP_ALIVE_S": "soon"}, {"data_dir": str(tmp_path)})
    (tmp_path / "config.toml").write_text('max_concurrent_jobs = "many"\n')
    with pytest.raises(ValidationError, match="max_concurrent_jobs"):
        build_settings({}, {"data_dir": str(tmp_path)})
    run = subprocess.run([sys.executable, "-m", "app", "serve", "--data-dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=60, cwd=str(Settings().project_root))
    assert run.returncode == 2 and "invalid setting: max_concurrent_jobs" in run.stderr and "Traceback" not in run.stderr
