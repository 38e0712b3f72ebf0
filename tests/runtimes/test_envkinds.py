"""The environment-kind seam (``runtimes.envkinds``): the same cases against every kind the registry
names (``venv``, ``conda`` through a stand-in tool, ``container`` on the local engine), with real builds,
real processes and a real supervisor running the fake architecture through the kind. A new kind joins by
its line in ``KINDS`` (and, where it needs settings of its own, by ``tests.env_kinds.kind_settings``)."""

from __future__ import annotations

import collections
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Type

import numpy as np
import psutil
import pytest

from runtimes.environments import EnvironmentBuilder, EnvSpec, load_spec
from runtimes.envkinds.base import BuiltEnv, EnvironmentKind, KindSettings, Mount, WorkerHandle
from runtimes.envkinds.registry import KINDS, EnvironmentKinds, kind_class
from runtimes.envkinds.venv import VenvHandle, VenvKind
from runtimes.errors import EnvironmentBuildError
from runtimes.memory import MIB, SystemRamSource
from runtimes.protocol import ASSETS_ENV
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.conftest import PROJECT_ROOT, wait_until
from tests.env_kinds import ENGINE, container_engine_problem, kind_settings

TONE = (0.25 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)).astype(np.float32)

# A worker stand-in: reads its secret from stdin, starts a child, says what it got, then lives on.
# argv: [child's session: "same" | "own", exit code once a file "exit-now" appears in its folder ("" = live on),
#        SIGTERM: "obey" | "ignore"]
STAND_IN = r"""
import os, signal, subprocess, sys, time
session, exit_code, on_term = sys.argv[1:4]
if on_term == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the child
secret = sys.stdin.readline().strip()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=session == "own")
print("secret=%s child=%d" % (secret, child.pid), flush=True)
print("cwd=%s marker=%s" % (os.getcwd(), os.environ.get("ENVKIND_MARKER")), flush=True)
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    if exit_code and os.path.exists("exit-now"):
        sys.exit(int(exit_code))
    time.sleep(0.02)
"""


def spec_for(kind: EnvironmentKind, fake_spec: EnvSpec) -> EnvSpec:
    """The fake architecture's spec as this kind builds it."""
    return replace(fake_spec, kind=kind.name)


def settings_of(builder: EnvironmentBuilder, kind: str = "venv") -> KindSettings:
    return kind_settings(kind, builder.envs_dir, builder.logs_dir, builder.layer)


OUTLIVES_ITS_WORKER = {"venv": True, "conda": True, "container": False}
"""Whether a process the worker started in a session of its own outlives the worker (a container's PID
namespace ends every process in it with its PID 1)."""


@pytest.fixture(autouse=True)
def readable_tmp(tmp_path: Path) -> None:
    """pytest makes its folders 0700; a container worker runs as another user and must read (only) these."""
    tmp_path.chmod(0o755)


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest, builder: EnvironmentBuilder, fake_python: Path) -> EnvironmentKind:
    """Each kind, building where the session's fake environment is (built once, cached by its hash)."""
    return EnvironmentKinds(settings_of(builder, str(request.param))).named(str(request.param))


@pytest.fixture
def built(kind: EnvironmentKind, fake_spec: EnvSpec) -> BuiltEnv:
    return kind.build(spec_for(kind, fake_spec))


@pytest.fixture
def launched() -> Iterator[Callable[..., WorkerHandle]]:
    """Launch stand-ins through a kind; whatever is left is killed afterwards."""
    handles: List[WorkerHandle] = []

    def launch(kind: EnvironmentKind, built: BuiltEnv, cwd: Path, session: str = "same", exit_code: str = "",
               on_term: str = "obey", stdin_data: bytes = b"s3cret\n") -> WorkerHandle:
        env = dict(os.environ, ENVKIND_MARKER="from-the-host")
        handle = kind.launch(built, ["-c", STAND_IN, session, exit_code, on_term], env, cwd, stdin_data)
        handles.append(handle)
        return handle

    yield launch
    for handle in handles:
        finish(handle)


def finish(handle: WorkerHandle) -> None:
    """Kill what is left and read the output to its end (which closes it, as the supervisor's reader does;
    bounded: a process the handle never noted may still hold it open)."""
    handle.kill()
    handle.wait_all(5.0)
    output = _outputs.pop(handle, None) or handle.output()
    reader = threading.Thread(target=lambda: collections.deque(output, maxlen=0), daemon=True)
    reader.start()
    reader.join(5.0)


_outputs: weakref.WeakKeyDictionary[WorkerHandle, Iterator[bytes]] = weakref.WeakKeyDictionary()


def said(handle: WorkerHandle, count: int) -> List[str]:
    """The next ``count`` lines the worker wrote (waits for them; fewer if its output closes). One reader
    per handle, kept open: a reader dropped early would close the worker's output under it."""
    output = _outputs.setdefault(handle, handle.output())
    return [raw.decode().strip() for raw in itertools.islice(output, count)]


def child_of(handle: WorkerHandle, line: str) -> psutil.Process:
    """The child the stand-in reported, as a host process: a worker in a container reports its pid in the
    container's PID namespace, which ``NSpid`` in /proc ties to the host's."""
    reported = int(line.split("child=")[1])
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        for pid in handle.pids():
            try:
                nspids = [int(part) for part in Path("/proc/%d/status" % pid).read_text().split("NSpid:")[1].splitlines()[0].split()]
            except (OSError, IndexError, ValueError):
                continue
            if nspids[-1] == reported:
                return psutil.Process(pid)
        time.sleep(0.05)
    raise AssertionError("the child %d is not among the worker's processes %s" % (reported, handle.pids()))


def running(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running()) and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture
def make_supervisor_with(tmp_path: Path) -> Iterator[Callable[..., Supervisor]]:
    made: List[Supervisor] = []

    def make(specs: Dict[str, EnvSpec], kinds: Optional[EnvironmentKinds] = None, resolve: Optional[Callable[..., Any]] = None,
             **overrides: Any) -> Supervisor:
        settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path / "run", **overrides)
        supervisor = Supervisor(settings, specs, resolve, memory=SystemRamSource(), kinds=kinds)
        made.append(supervisor)
        return supervisor

    yield make
    for supervisor in made:
        supervisor.shutdown()


def recording(kind_type: Type[EnvironmentKind], mapped: Optional[Tuple[Path, Path]] = None) -> Type[EnvironmentKind]:
    """The kind, noting each launch and each path it maps; with ``mapped`` (host folder, the folder the
    worker sees it as), paths under the first are handed over under the second, as a container's mount is."""

    class Recording(kind_type):  # type: ignore[valid-type,misc]
        calls: List[Tuple[str, str]] = []

        def launch(self, built: BuiltEnv, argv_tail: Sequence[str], env: Mapping[str, str], cwd: Path,
                   stdin_data: bytes = b"", mounts: Sequence[Mount] = ()) -> WorkerHandle:
            self.calls.append(("launch", built.kind))
            return super().launch(built, argv_tail, env, cwd, stdin_data, mounts)  # type: ignore[no-any-return]

        def map_path(self, host_path: str) -> str:
            self.calls.append(("map_path", host_path))
            seen = super().map_path(host_path)
            if mapped is not None and Path(seen).is_relative_to(mapped[0]):
                seen = str(mapped[1] / Path(seen).relative_to(mapped[0]))
            return str(seen)

    Recording.calls = []
    return Recording


def forget_images(name: str) -> None:
    """Remove a test spec's container images, where an engine runs (a venv's or conda's build is in its folder)."""
    if container_engine_problem() is None:
        listed = subprocess.run([ENGINE, "images", "--format", "{{.Repository}}:{{.Tag}}", "voicegen-env/%s" % name],
                                capture_output=True, text=True, check=False).stdout.split()
        if listed:
            subprocess.run([ENGINE, "rmi", "--force", *listed], capture_output=True, check=False)


# the registry


def test_an_unknown_kind_is_refused_naming_the_kinds_known(tmp_path: Path, fake_spec: EnvSpec,
                                                           make_supervisor_with: Callable[..., Supervisor]) -> None:
    known = ", ".join(sorted(KINDS))
    with pytest.raises(EnvironmentBuildError, match=r"unknown environment kind 'lxc' \(known kinds: %s\)" % known):
        kind_class("lxc")
    with pytest.raises(EnvironmentBuildError, match="unknown environment kind 'podman'"):
        EnvironmentKinds().of(replace(fake_spec, kind="podman"))
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "spec.toml").write_text('name = "x"\nkind = "flatpak"\npython = "3.11"\nadapter = "a:B"\n')
    with pytest.raises(EnvironmentBuildError, match=r"kind 'flatpak' is not supported yet \(supported: %s\)" % known):
        load_spec(folder)

    asked: List[str] = []  # the supervisor refuses it before building anything
    supervisor = make_supervisor_with({"fake": replace(fake_spec, kind="lxc")},
                                      resolve=lambda spec, progress: asked.append(spec.name))
    with pytest.raises(EnvironmentBuildError, match=r"unknown environment kind 'lxc' \(known kinds: %s\)" % known):
        supervisor.generate(JobRequest(architecture="fake", character="plain", audio=TONE, audio_sample_rate=16000))
    assert asked == [] and supervisor.table.live() == []


def test_the_registry_makes_one_object_per_kind(builder: EnvironmentBuilder) -> None:
    kinds = EnvironmentKinds(settings_of(builder))
    assert kinds.names() == sorted(KINDS) and "venv" in KINDS and KINDS["venv"] is VenvKind
    for name in kinds.names():
        assert kinds.named(name) is kinds.named(name) and kinds.named(name).name == name
    with pytest.raises(EnvironmentBuildError, match="made without settings: it cannot build"):
        EnvironmentKinds().named("venv").build(load_spec(PROJECT_ROOT / "tests" / "envs" / "fake"))


def test_a_supervisor_needs_kinds_or_a_resolver(tmp_path: Path, fake_spec: EnvSpec) -> None:
    with pytest.raises(TypeError, match="environment kinds"):
        Supervisor(SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path), {"fake": fake_spec}, memory=SystemRamSource())


# build and is-current


def test_a_build_is_cached_by_the_specs_hash(kind: EnvironmentKind, fake_spec: EnvSpec, built: BuiltEnv) -> None:
    spec = spec_for(kind, fake_spec)
    lines: List[str] = []
    assert kind.build(spec, lines.append) == built and lines == []  # nothing rebuilt, nothing said
    assert built.kind == kind.name and built.spec == spec and built.current and built.note == ""
    assert built.spec_hash and built.interpreter and built.location
    assert kind.is_current(spec)


def test_is_current_follows_the_spec(kind: EnvironmentKind, fake_spec: EnvSpec, built: BuiltEnv, tmp_path: Path) -> None:
    copied = spec_for(kind, load_spec(Path(shutil.copytree(fake_spec.folder, tmp_path / "spec"))))
    assert kind.is_current(copied)  # the same files: what is built matches
    (copied.folder / "requirements.txt").write_text((copied.folder / "requirements.txt").read_text() + "# a change\n")
    assert not kind.is_current(copied)  # (not built here: the session's environment stays as it is)


def test_an_update_builds_beside_and_a_failed_one_keeps_the_working_build(kind: EnvironmentKind, fake_spec: EnvSpec,
                                                                         tmp_path: Path, request: pytest.FixtureRequest) -> None:
    own = EnvironmentKinds(kind_settings(kind.name, tmp_path / "envs", tmp_path / "logs")).named(kind.name)
    # its own name: what a kind keeps outside the folder (a container's images) must not touch the session's
    spec = replace(spec_for(own, load_spec(Path(shutil.copytree(fake_spec.folder, tmp_path / "spec")))), name="fake-update")
    forget_images(spec.name)
    request.addfinalizer(lambda: forget_images(spec.name))
    assert not own.is_current(spec)
    first = own.build(spec)
    assert own.is_current(spec) and first.current
    requirements = spec.folder / "requirements.txt"
    good = requirements.read_text()

    requirements.write_text("numpy>=1.24,<3\nthis-package-does-not-exist-voicegen==1.0\n")  # an update that cannot install
    lines: List[str] = []
    kept = own.build(spec, lines.append)
    assert not kept.current and "this-package-does-not-exist-voicegen" in kept.note and lines[-1] == kept.note
    assert (kept.interpreter, kept.location, kept.spec_hash) == (first.interpreter, first.location, first.spec_hash)
    assert not own.is_current(spec)

    requirements.write_text(good + "# a good change\n")
    second = own.build(spec)
    assert second.current and second.spec_hash != first.spec_hash and second.location != first.location
    assert own.is_current(spec)


# launch and the handle


def test_launch_hands_over_argv_env_cwd_and_stdin(kind: EnvironmentKind, built: BuiltEnv, tmp_path: Path,
                                                  launched: Callable[..., WorkerHandle]) -> None:
    handle = launched(kind, built, tmp_path)
    first, second = said(handle, 2)
    assert first.startswith("secret=s3cret child=")
    assert second == "cwd=%s marker=from-the-host" % kind.map_path(str(tmp_path))
    assert handle.kind == kind.name and handle.poll() is None


def test_pids_poll_memory_and_terminate(kind: EnvironmentKind, built: BuiltEnv, tmp_path: Path,
                                        launched: Callable[..., WorkerHandle]) -> None:
    handle = launched(kind, built, tmp_path)
    child = child_of(handle, said(handle, 1)[0])
    pids = handle.pids()
    assert pids[0] == handle.main_pid and child.pid in pids
    assert handle.poll() is None and handle.wait(0.1) is None
    used = handle.memory_bytes()
    assert used is not None and used > 5 * MIB  # two Python processes (resident, or what their cgroup is charged)
    handle.terminate()
    assert handle.wait_all(5.0)
    assert handle.poll() == -signal.SIGTERM and not running(child)
    assert handle.pids() == [handle.main_pid]


def test_kill_ends_what_ignores_terminate(kind: EnvironmentKind, built: BuiltEnv, tmp_path: Path,
                                          launched: Callable[..., WorkerHandle]) -> None:
    handle = launched(kind, built, tmp_path, on_term="ignore")
    child = child_of(handle, said(handle, 1)[0])
    handle.terminate()
    assert not handle.wait_all(0.5) and handle.poll() is None and running(child)
    handle.kill()
    assert handle.wait_all(5.0)
    assert handle.wait(0) == -signal.SIGKILL and not running(child)


def test_processes_noted_while_the_worker_ran_are_reached_after_it_is_gone(
    kind: EnvironmentKind, built: BuiltEnv, tmp_path: Path, launched: Callable[..., WorkerHandle]
) -> None:
    """A child in a session of its own (out of the group's reach), left behind when the worker exits (where
    the kind lets it outlive the worker at all)."""
    handle = launched(kind, built, tmp_path, session="own", exit_code="3")
    child = child_of(handle, said(handle, 1)[0])
    try:
        assert child.pid in handle.pids()  # noted while the worker runs
        (tmp_path / "exit-now").touch()
        assert handle.wait(10.0) == 3
        if not OUTLIVES_ITS_WORKER[kind.name]:
            assert wait_until(lambda: not running(child), 5) and handle.wait_all(1.0)
            return
        assert running(child) and child.pid in handle.pids() and not handle.wait_all(0.2)
        handle.terminate()
        assert handle.wait_all(5.0) and not running(child)
    finally:
        if running(child):
            child.kill()


def test_a_record_entry_lets_a_later_app_reap_the_worker(kind: EnvironmentKind, built: BuiltEnv, tmp_path: Path,
                                                        launched: Callable[..., WorkerHandle]) -> None:
    handle = launched(kind, built, tmp_path)
    child = child_of(handle, said(handle, 1)[0])
    entry = json.loads(json.dumps(handle.record_entry()))  # as the record keeps it
    assert entry["kind"] == kind.name
    later = EnvironmentKinds().named(entry["kind"])  # a restarted app's: no settings needed to reap
    assert later.reap_leftover(entry)
    assert handle.wait(5.0) is not None and wait_until(lambda: not running(child), 5)
    assert not later.reap_leftover(entry)  # gone: nothing to end, no stranger touched


def test_a_host_path_reaches_the_worker_through_map_path(kind: EnvironmentKind, built: BuiltEnv, tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("read through the mapping")
    code = "import sys; print(open(sys.argv[1]).read(), flush=True)"
    handle = kind.launch(built, ["-c", code, kind.map_path(str(note))], dict(os.environ), tmp_path)
    try:
        assert said(handle, 1) == ["read through the mapping"]
        assert handle.wait(10.0) == 0
    finally:
        finish(handle)


# the kind's own promises


def test_venv_shares_the_hosts_paths_and_files(builder: EnvironmentBuilder, tmp_path: Path) -> None:
    venv = EnvironmentKinds(settings_of(builder)).named("venv")
    assert venv.map_path(str(tmp_path)) == str(tmp_path) and venv.map_path("/") == "/"


def test_venv_never_reaps_a_recycled_pid(builder: EnvironmentBuilder, fake_spec: EnvSpec, tmp_path: Path,
                                         launched: Callable[..., WorkerHandle]) -> None:
    venv = EnvironmentKinds(settings_of(builder)).named("venv")
    handle = launched(venv, venv.build(fake_spec), tmp_path)
    assert isinstance(handle, VenvHandle)
    entry = handle.record_entry()
    stranger = dict(entry, create_time=entry["create_time"] - 100.0)  # the same pid, another process's start
    assert not venv.reap_leftover(stranger) and handle.poll() is None
    assert venv.reap_leftover(entry) and handle.wait(5.0) == -signal.SIGKILL


# through the supervisor


def test_the_supervisor_builds_launches_and_measures_through_the_kind(
    kind: EnvironmentKind, builder: EnvironmentBuilder, fake_spec: EnvSpec, make_supervisor_with: Callable[..., Supervisor]
) -> None:
    kind_type = recording(type(kind))
    kinds = EnvironmentKinds(settings_of(builder, kind.name), registry={**KINDS, kind.name: kind_type})
    supervisor = make_supervisor_with({"fake": spec_for(kind, fake_spec)}, kinds)  # no resolver: the kind builds
    result = supervisor.generate(JobRequest(architecture="fake", character="plain", audio=TONE, audio_sample_rate=16000,
                                            options={"gain": 2.0}))
    np.testing.assert_allclose(result.audio, TONE * 2.0, rtol=1e-6)
    assert ("launch", kind.name) in kind_type.calls  # type: ignore[attr-defined]
    [worker] = supervisor.table.live()
    handle = worker.process.handle
    [row] = supervisor.status()
    assert row["pid"] == handle.main_pid == handle.pids()[0] and handle.poll() is None
    assert row["base_memory_mb"] > 10 and (handle.memory_bytes() or 0) > 10 * MIB  # measured through the handle
    record = json.loads(supervisor.table.record.path.read_text())
    assert [{k: v for k, v in entry.items() if k != "owner"} for entry in record] == [handle.record_entry()]
    assert supervisor.stop(worker.name)
    assert handle.poll() is not None and handle.wait_all(1.0) and supervisor.status() == []


def test_host_paths_in_requests_pass_through_map_path(
    kind: EnvironmentKind, builder: EnvironmentBuilder, fake_spec: EnvSpec, tmp_path: Path,
    make_supervisor_with: Callable[..., Supervisor]
) -> None:
    """The character folder and the assets folder are handed to the worker as it sees them (here a
    mapping like a container's mount), and the worker's key for a character is the mapped one."""
    host, seen = tmp_path / "host", tmp_path / "seen"
    (host / "characters" / "fake" / "alice").mkdir(parents=True)
    (host / "assets").mkdir()
    for folder in (host, host / "characters", host / "characters" / "fake"):
        folder.chmod(0o755)
    seen.symlink_to(host)
    kind_type = recording(type(kind), mapped=(host, seen))
    kinds = EnvironmentKinds(settings_of(builder, kind.name), registry={**KINDS, kind.name: kind_type})
    supervisor = make_supervisor_with({"fake": spec_for(kind, fake_spec)}, kinds, assets_dir=host / "assets",
                                      model_roots=(host / "characters",))
    alice = str(host / "characters" / "fake" / "alice")
    job = JobRequest(architecture="fake", character="alice", character_path=alice, audio=TONE, audio_sample_rate=16000,
                     options={"mode": "report"})
    shared, loads_of_alice, held = supervisor.generate(job).audio  # generate found alice by her key in the worker
    assert (shared, loads_of_alice, held) == (1.0, 1.0, 1.0)
    asked = [path for call, path in kind_type.calls if call == "map_path"]  # type: ignore[attr-defined]
    assert alice in asked and str(host / "assets") in asked
    [row] = supervisor.status()
    assert psutil.Process(row["pid"]).environ()[ASSETS_ENV] == kinds.named(kind.name).map_path(str(host / "assets"))
    assert row["characters"] == ["alice"]
    assert supervisor.unload("fake", "alice", alice)  # unloaded by the mapped key too: the next job loads her again
    assert supervisor.generate(job).audio.tolist() == [1.0, 2.0, 1.0]


def test_a_restarted_app_reaps_through_the_kind(
    kind: EnvironmentKind, built: BuiltEnv, tmp_path: Path, launched: Callable[..., WorkerHandle], builder: EnvironmentBuilder,
    make_supervisor_with: Callable[..., Supervisor], fake_spec: EnvSpec
) -> None:
    handle = launched(kind, built, tmp_path)
    child = child_of(handle, said(handle, 1)[0])
    dead = psutil.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    left = run_dir / ("workers-%d.json" % dead.pid)
    unknown = {"kind": "no-such-kind", "pid": handle.main_pid, "owner": dead.pid}  # e.g. written by a newer app
    left.write_text(json.dumps([unknown, dict(handle.record_entry(), owner=dead.pid)]))
    make_supervisor_with({"fake": fake_spec}, EnvironmentKinds(settings_of(builder)))
    assert handle.wait(5.0) is not None and wait_until(lambda: not running(child), 5)
    assert not left.exists()


# an app that dies

APP = r"""
import json, sys, time
from dataclasses import replace
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[1])
from runtimes.envkinds.registry import EnvironmentKinds
from runtimes.environments import load_spec
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, Supervisor, SupervisorSettings
from tests.env_kinds import kind_settings
root, kind, envs, logs, run_dir, instance = sys.argv[1:7]
spec = replace(load_spec(Path(root) / "tests" / "envs" / "fake"), kind=kind)
kinds = EnvironmentKinds(kind_settings(kind, Path(envs), Path(logs), instance=instance))
settings = SupervisorSettings(project_root=Path(root), run_dir=Path(run_dir))
supervisor = Supervisor(settings, {"fake": spec}, memory=SystemRamSource(), kinds=kinds)
supervisor.generate(JobRequest(architecture="fake", character="plain", audio=np.zeros(1600, np.float32), audio_sample_rate=16000))
[worker] = supervisor.table.live()
print(json.dumps(worker.process.handle.pids()), flush=True)
time.sleep(600)
"""


def test_a_sigkilled_app_leaves_no_worker_behind(kind: EnvironmentKind, built: BuiltEnv, builder: EnvironmentBuilder,
                                                 tmp_path: Path) -> None:
    """The app is SIGKILLed with a warm worker: within 10 s none of the worker's processes runs (a container's
    included: the engine lists nothing with the app's instance label)."""
    instance = "sigkill-%d-%s" % (os.getpid(), kind.name)
    app = subprocess.Popen([sys.executable, "-c", APP, str(PROJECT_ROOT), kind.name, str(builder.envs_dir), str(builder.logs_dir),
                            str(tmp_path / "run"), instance], stdout=subprocess.PIPE, text=True)
    try:
        assert app.stdout is not None
        pids = json.loads(app.stdout.readline())
        processes = [psutil.Process(pid) for pid in pids]
        assert processes and all(running(process) for process in processes)
    finally:
        app.kill()
        app.wait()
        if app.stdout is not None:
            app.stdout.close()
    assert wait_until(lambda: not any(running(process) for process in processes), 10)
    if not kind.shares_host_files:
        listed = subprocess.run([ENGINE, "ps", "--all", "--quiet", "--filter", "label=voicegen.instance=%s" % instance],
                                capture_output=True, text=True, check=True).stdout
        assert listed.split() == []
