"""compose.yaml with Compose v1.29 (``docker-compose``, the last v1, a Python package), which some servers still run:
it must read the file as Compose v2 does (the same services per profile, environment, images, ports, secrets, GPU
reservation) and ``--profile piper up -d`` must serve through the edge. v1.29.2 does not install from PyPI on Python 3.11
as it is (its PyYAML 5.4.1 has no wheel there and builds only with Cython < 3; docker-py 7 dropped an argument it
passes; requests 2.32 broke docker-py 6's socket adapter), so the test makes a venv of its own with those pins, kept
in the temp folder between runs, and skips naming why where that cannot be done. ``VOICEGEN_COMPOSE_V1`` names an
existing ``docker-compose`` 1.29 instead (Debian's ``apt-get install docker-compose`` is one)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import httpx
import pytest
import yaml

from tests.env_kinds import BASE_IMAGE, require_container_engine
from tests.test_server_mode import LOGIN, ROOT, SERVER_NAME, compose_command, free_ports, run_compose, self_signed_certificate, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BUILD_PINS = ("cython<3", "wheel")
PYYAML = "PyYAML==5.4.1"  # built with --no-build-isolation against the Cython above
COMPOSE_V1 = ("docker-compose==1.29.2", "docker==6.1.3", "requests==2.31.0")


def is_compose_v1(executable: str) -> bool:
    try:
        said = subprocess.run([executable, "version", "--short"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return said.returncode == 0 and said.stdout.strip().startswith("1.29.")


def install_compose_v1() -> str:
    """A venv with docker-compose 1.29.2, made once (a half-made one is made again; a lock keeps two runs apart); skips
    naming why where pip cannot make it."""
    pins = " ".join((*BUILD_PINS, PYYAML, *COMPOSE_V1, sys.version))
    venv = Path(tempfile.gettempdir()) / ("voicegen-compose-v1-" + hashlib.sha256(pins.encode()).hexdigest()[:12])
    executable = str(venv / "bin" / "docker-compose")
    with open(str(venv) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_compose_v1(executable):
            return executable
        shutil.rmtree(venv, ignore_errors=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        steps = (("python -m venv", [sys.executable, "-m", "venv", str(venv)]),
                 ("pip install " + " ".join(BUILD_PINS), [*pip, *BUILD_PINS]),
                 ("pip install --no-build-isolation " + PYYAML, [*pip, "--no-build-isolation", PYYAML]),
                 ("pip install " + " ".join(COMPOSE_V1), [*pip, *COMPOSE_V1]))
        for label, step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                said = [line for line in done.stderr.splitlines() if line.strip() and "is ignored" not in line][-2:]
                pytest.skip("docker-compose 1.29.2 cannot be installed here (`%s` exited %d): %s"
                            % (label, done.returncode, " | ".join(said)))
        if not is_compose_v1(executable):
            pytest.skip("docker-compose 1.29.2 installed in %s but `docker-compose version` does not answer 1.29" % venv)
    return executable


@pytest.fixture(scope="module")
def compose_v1() -> str:
    given = os.environ.get("VOICEGEN_COMPOSE_V1")
    if given:
        assert is_compose_v1(given), "VOICEGEN_COMPOSE_V1=%s is not a docker-compose 1.29" % given
        return given
    return install_compose_v1()


def config(compose: List[str], env: Dict[str, str], *files: str, profile: str = "piper") -> Dict[str, Any]:
    arguments = [arg for name in files for arg in ("--file", str(ROOT / name))]
    done = subprocess.run([*compose, "--env-file", env["EMPTY_ENV"], *arguments, "--profile", profile, "config"], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, "%s config refused the file:\n%s" % (compose[0], done.stderr[-3000:])
    return dict(yaml.safe_load(done.stdout))


def essentials(service: Dict[str, Any]) -> Dict[str, Any]:
    """What a service runs with, in one shape for both versions' ``config`` output (they spell defaults differently)."""
    ports = sorted((str(port.get("published")), str(port["target"])) for port in service.get("ports", []))
    volumes = sorted("%s:%s%s" % (volume["source"], volume["target"], ":ro" if volume.get("read_only") else "") if isinstance(volume, dict)
                     else str(volume).removesuffix(":rw") for volume in service.get("volumes", []))
    depends = service.get("depends_on", {})
    deploy = json.loads(json.dumps(service.get("deploy")))
    for device in (deploy or {}).get("resources", {}).get("reservations", {}).get("devices", []):
        device["count"] = -1 if device.get("count") == "all" else device.get("count")  # v2 writes `all` as -1
    return {"image": service.get("image"), "build": {"context": service["build"]["context"], "args": service["build"].get("args")},
            "command": service.get("command"), "environment": service.get("environment"), "restart": service.get("restart"),
            "profiles": service.get("profiles"), "depends_on": sorted(depends), "ports": ports, "volumes": volumes,
            "secrets": sorted(secret["source"] if isinstance(secret, dict) else secret for secret in service.get("secrets", [])),
            "deploy": deploy, "stop_grace_period": service.get("stop_grace_period")}


@pytest.fixture
def env(tmp_path: Path) -> Dict[str, str]:
    (tmp_path / "empty.env").write_text("")
    return dict(os.environ, EMPTY_ENV=str(tmp_path / "empty.env"), BASE=BASE_IMAGE, VOICEGEN_IMAGE_TAG="test",
                VOICEGEN_SERVER_NAME=SERVER_NAME, VOICEGEN_AUTH_FILE=str(tmp_path / "empty.env"), VOICEGEN_ADMINS=LOGIN[0])


def test_compose_v1_reads_the_file_as_v2_does(compose_v1: str, env: Dict[str, str]) -> None:
    v2 = compose_command()
    for files, profile in ((("compose.yaml",), "piper"), (("compose.yaml",), "rvc"), (("compose.yaml", "compose.gpu.yaml"), "piper")):
        old, new = config([compose_v1], env, *files, profile=profile), config(v2, env, *files, profile=profile)
        # v1's `config` prints every service whatever the profiles; v2 only the active ones, which v1 also starts
        assert set(new["services"]) == {"app", "edge", "setup-" + profile}
        for name, service in new["services"].items():
            assert essentials(old["services"][name]) == essentials(service), (files, name)
        assert set(old["services"]) == {"app", "edge"} | {name for name in old["services"] if name.startswith("setup-")}
        assert old["secrets"] == {"voicegen_auth": {"file": env["VOICEGEN_AUTH_FILE"]}} and set(old["volumes"]) == {"voicegen-data"}
    assert new["services"]["app"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


@pytest.mark.container
def test_compose_v1_serves_the_piper_profile_through_the_edge(compose_v1: str, tmp_path: Path) -> None:
    require_container_engine()
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make the test certificate")
    self_signed_certificate(tmp_path / "certs")
    auth = tmp_path / "auth.txt"
    auth.write_text("%s:%s\n" % LOGIN)
    auth.chmod(0o644)  # the app runs as uid 10001
    (tmp_path / "empty.env").write_text("")
    https_port, http_port = free_ports(2)
    env = dict(os.environ, DOCKER_BUILDKIT="0", COMPOSE_DOCKER_CLI_BUILD="0", BASE=BASE_IMAGE, VOICEGEN_IMAGE_TAG="test",
               VOICEGEN_SERVER_NAME=SERVER_NAME, VOICEGEN_CERT_DIR=str(tmp_path / "certs"), VOICEGEN_AUTH_FILE=str(auth),
               VOICEGEN_HTTPS_PORT=str(https_port), VOICEGEN_HTTP_PORT=str(http_port), VOICEGEN_ADMINS=LOGIN[0])
    project = [compose_v1, "--project-name", "voicegen-v1-test-%d" % os.getpid(), "--env-file", str(tmp_path / "empty.env"),
               "--file", str(ROOT / "compose.yaml"), "--profile", "piper"]
    try:
        started = time.monotonic()
        run_compose(project, env, "build", "app", "edge")  # the images test_server_mode builds: a cache hit after it
        built_s = time.monotonic() - started
        run_compose(project, env, "up", "-d", timeout_s=300)
        ready_s = wait_ready("https://%s:%d/" % (SERVER_NAME, https_port), 180)
        print("compose v1: images built in %.1f s, ready through the edge %.1f s after up" % (built_s, ready_s))
        answer = httpx.post("https://%s:%d/v1/audio/speech" % (SERVER_NAME, https_port), auth=LOGIN, verify=False, timeout=120,
                            json={"model": "piper", "voice": "joe", "input": "Hello through compose one.", "response_format": "wav"})
        assert answer.status_code == 200 and answer.content[:4] == b"RIFF", answer.text[:300]
        moved = httpx.get("http://%s:%d/healthz" % (SERVER_NAME, http_port), follow_redirects=False)
        assert moved.status_code == 301 and moved.headers["location"].startswith("https://")
        # the profile's setup service ran once and finished; no other architecture's was started
        states = subprocess.run(["docker", "ps", "--all", "--filter", "label=com.docker.compose.project=" + project[2],
                                 "--format", "{{json .}}"], capture_output=True, text=True, timeout=60, check=True).stdout
        services = {row["Labels"].split("com.docker.compose.service=")[1].split(",")[0]: row["Status"]
                    for row in map(json.loads, states.splitlines())}
        assert set(services) == {"app", "edge", "setup-piper"}, services
        assert services["setup-piper"].startswith("Exited (0)") and services["app"].startswith("Up"), services
    finally:
        subprocess.run([*project, "down", "--volumes", "--remove-orphans", "--timeout", "10"], cwd=str(ROOT), env=env,
                       capture_output=True, timeout=180)
