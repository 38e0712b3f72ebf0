"""The ``container`` environment kind: an image per architecture, and each worker in a container of its own.

Build: the image comes from ``envs/<arch>/``: the folder's own ``Dockerfile`` when it ships one, else one
made here from the spec's requirement layers (``runtimes.envkinds.dockerfile``). It is tagged by the
spec's hash (``voicegen-env/<name>:<hash>``) and, once complete, also tagged ``:current``: the swap. A
failed rebuild leaves ``:current`` on the working image and says so; a running container keeps its image
whatever the tags. ``ARG BASE`` picks the base image (``KindSettings.container_base_image``), so tests here
use a local one (no registry is reachable).

Launch: ``<engine> run --rm --init`` (``docker`` or ``podman``) as a non-root user, with no network (the
worker talks to the app over a Unix socket in a mounted folder), no capabilities, and only the folders the
worker needs mounted, each at ``/voicegen/host`` + its host path (so relative links between them still
resolve): its socket's folder (writable), the code and the architecture's character, shared-model and asset
folders (read-only), and a scratch ``tmpfs``. Never the job database, the auth file or another
architecture's models. The worker's variables reach it by name (``-e NAME``, values from the engine client's
environment, never on a command line).

The handle: the engine client (``run``, attached) is the host process we launched: its exit is the
container's (``128 + n`` read as "killed by signal n", as a venv worker's would be), its output the
worker's. The container's processes are host processes too (the engine's PID namespace is a child of ours):
they are listed from its init's host pid for NVML and memory. Signals go through the engine
(``kill --signal``): the worker may run as another user. Memory on the CPU is the container's cgroup
(what the engine counts), less its inactive page cache, as ``docker stats`` reports it.

No orphans: every container carries labels naming this app's data folder (``voicegen.instance``) and the
app's pid (``voicegen.owner``). A worker whose app dies loses its sockets and ends (the scaffold's watch);
PID 1 (``--init``) then ends the container and ``--rm`` removes it. A restarted app removes what its record
names and anything else labelled with its instance whose owner is gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Mapping, Optional, Sequence, TextIO

import psutil

from runtimes.envkinds.base import BuiltEnv, EnvironmentKind, KindSettings, Mount, WorkerHandle, no_progress, process_running, run_logged
from runtimes.envkinds.dockerfile import CONTAINER_INTERPRETER, INTERPRETER_LABEL, build_context
from runtimes.envspec import EnvSpec, Progress, failing_package, update_failed_note
from runtimes.errors import EnvironmentBuildError
from runtimes.protocol import socket_family

logger = logging.getLogger(__name__)

BUILDER_VERSION = "1"
IMAGE_REPOSITORY = "voicegen-env"
HOST_ROOT = "/voicegen/host"
"""Where a host path appears in a container: under this folder, at its own path."""
SCRATCH_DIR = "/scratch"
CONTAINER_USER_ID = 10001
"""The worker's user in a container when the app runs as root (otherwise the app's own user)."""
INSTANCE_LABEL = "voicegen.instance"
OWNER_LABEL = "voicegen.owner"
HASH_LABEL = "voicegen.spec-hash"
ENGINE_TIMEOUT_S = 30.0
HOST_ONLY_VARIABLES = frozenset({
    "PATH", "HOME", "TMPDIR", "TEMP", "TMP", "PWD", "OLDPWD", "SHELL", "USER", "LOGNAME", "HOSTNAME", "MAIL", "TERM",
    "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONHOME", "PYTHONSTARTUP", "LD_LIBRARY_PATH", "LD_PRELOAD", "SSL_CERT_FILE",
    "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "XDG_RUNTIME_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
    "XDG_DATA_HOME", "DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "SSH_AUTH_SOCK",
})
"""The host's own settings (paths that mean nothing inside the image, the desktop session): not handed over."""
HOST_ONLY_PREFIXES = ("PIP_", "UV_", "DOCKER_", "CONTAINER_", "PODMAN_", "CONDA_", "MAMBA_")
SIGNAL_EXIT_BASE = 128


class EngineError(EnvironmentBuildError):
    """The container engine is missing, does not answer, or refused a command."""


class Engine:
    """The engine's command line (``docker`` or ``podman``): the few commands the kind needs, each bounded."""

    def __init__(self, command: str) -> None:
        self.command = command or "docker"
        self._is_podman: Optional[bool] = None

    def path(self) -> str:
        found = shutil.which(self.command)
        if found is None:
            raise EngineError("the container environment kind needs a container engine, and %r was not found on PATH "
                              "(install Docker or Podman, or set the container engine setting to its path)" % self.command)
        return found

    def run(self, *args: str, timeout_s: float = ENGINE_TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run([self.path(), *args], capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise EngineError("%s %s did not answer within %.0f s: is its engine running?" % (self.command, args[0], timeout_s)) from exc
        except OSError as exc:
            raise EngineError("cannot run %s: %s" % (self.command, exc)) from exc
        if check and done.returncode != 0:
            raise EngineError("%s %s failed: %s" % (self.command, args[0], (done.stderr or done.stdout).strip()[-800:]))
        return done

    def is_podman(self) -> bool:
        if self._is_podman is None:
            done = self.run("--version", check=False)
            self._is_podman = "podman" in (done.stdout + done.stderr).lower()
        return self._is_podman

    def check_running(self) -> None:
        """A clear error when the client is there but no engine answers (a daemon not started)."""
        done = self.run("info", check=False)
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise EngineError("the %s engine does not answer (%s): start it (e.g. `sudo systemctl start docker`, or `dockerd &`)"
                              % (self.command, said[-1] if said else "no output"))

    def image_labels(self, image: str) -> Optional[Dict[str, str]]:
        """The image's labels; None when there is no such image."""
        done = self.run("image", "inspect", "--format", "{{json .Config.Labels}}", image, check=False)
        if done.returncode != 0:
            return None
        try:
            labels = json.loads(done.stdout.strip() or "null")
        except ValueError:
            return None
        return {str(k): str(v) for k, v in (labels or {}).items()}

    def containers(self, *filters: str) -> List[Dict[str, str]]:
        """Containers (running or not) matching every ``key=value`` filter, each with its name and labels."""
        args = ["ps", "--all", "--no-trunc", "--format", "{{.Names}}\t{{.Labels}}"]
        for item in filters:
            args += ["--filter", item]
        found = []
        for line in self.run(*args).stdout.splitlines():
            name, _, labels = line.partition("\t")
            pairs = dict(part.split("=", 1) for part in labels.split(",") if "=" in part)
            found.append({"name": name.strip(), **pairs})
        return found

    def remove(self, name: str) -> bool:
        """Kill and remove a container; True when there was one to remove."""
        return self.run("rm", "--force", name, check=False).returncode == 0

    def host_pid(self, name: str) -> Optional[int]:
        """The host pid of the container's PID 1 while it runs; None before it starts or after it ends."""
        done = self.run("inspect", "--format", "{{.State.Pid}}", name, check=False, timeout_s=10.0)
        try:
            pid = int(done.stdout.strip())
        except ValueError:
            return None
        return pid or None


def image_name(spec: EnvSpec, tag: str) -> str:
    return "%s/%s:%s" % (IMAGE_REPOSITORY, spec.name.lower(), tag)


def map_host_path(host_path: str) -> str:
    return HOST_ROOT + str(Path(host_path).absolute())


def container_user() -> str:
    """The worker's user: the app's own where it is not root (mounted files stay its), else an unprivileged one."""
    if not hasattr(os, "getuid") or os.getuid() == 0:
        return "%d:%d" % (CONTAINER_USER_ID, CONTAINER_USER_ID)
    return "%d:%d" % (os.getuid(), os.getgid())


def handed_over(name: str) -> bool:
    return name not in HOST_ONLY_VARIABLES and not name.startswith(HOST_ONLY_PREFIXES)


def exit_code_of(engine_code: Optional[int]) -> Optional[int]:
    """The engine client's exit as a host process's would be: a container ended by signal n exits 128 + n."""
    if engine_code is not None and SIGNAL_EXIT_BASE < engine_code < SIGNAL_EXIT_BASE + 65:
        return -(engine_code - SIGNAL_EXIT_BASE)
    return engine_code


class ContainerBuilder:
    """Builds (or reuses) each architecture's image, tagged by its spec's hash; ``:current`` is the one in use."""

    def __init__(self, settings: KindSettings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    def spec_hash(self, spec: EnvSpec) -> str:
        digest = hashlib.sha256()
        parts = (BUILDER_VERSION, spec.kind, spec.python, spec.adapter, self.settings.layer, self.settings.container_base_image)
        digest.update("|".join(parts).encode())
        files = [spec.folder / "spec.toml", *spec.requirement_files(self.settings.layer), *filter(None, [spec.no_deps_file()])]
        shipped = spec.folder / "Dockerfile"
        for path in [*files, *([shipped] if shipped.exists() else [])]:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()

    def wanted_tag(self, spec: EnvSpec) -> str:
        return self.spec_hash(spec)[:12]

    def current(self, spec: EnvSpec) -> Optional[Dict[str, str]]:
        """The labels of the image in use (tag ``current``); None when there is none."""
        return self.engine.image_labels(image_name(spec, "current"))

    def is_ready(self, spec: EnvSpec) -> bool:
        labels = self.current(spec)
        return labels is not None and labels.get(HASH_LABEL) == self.spec_hash(spec)

    def ensure(self, spec: EnvSpec, progress: Progress) -> BuiltEnv:
        self.engine.check_running()
        wanted = self.spec_hash(spec)
        labels = self.current(spec)
        if labels is not None and labels.get(HASH_LABEL) == wanted:
            return self._built(spec, labels)
        with self._build_lock(spec):
            labels = self.current(spec)  # another app may have built it meanwhile
            if labels is None or labels.get(HASH_LABEL) != wanted:
                labels = self._build(spec, wanted, labels, progress)
            return self._built(spec, labels)

    def _built(self, spec: EnvSpec, labels: Mapping[str, str], note: str = "") -> BuiltEnv:
        spec_hash = labels.get(HASH_LABEL, "")
        return BuiltEnv(spec=spec, kind="container", interpreter=labels.get(INTERPRETER_LABEL) or CONTAINER_INTERPRETER,
                        location=image_name(spec, spec_hash[:12] or "current"), spec_hash=spec_hash, current=not note, note=note)

    def _build(self, spec: EnvSpec, wanted: str, kept: Optional[Mapping[str, str]], progress: Progress) -> Dict[str, str]:
        tag = image_name(spec, wanted[:12])
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.settings.logs_dir / ("env-%s.log" % spec.name)
        progress("building the %s container image %s (log: %s)" % (spec.name, tag, log_path))
        with tempfile.TemporaryDirectory(prefix="voicegen-image-") as context_dir:
            context = Path(context_dir)
            dockerfile = build_context(spec, self.settings.layer, context, wanted)
            command = [self.engine.path(), "build", "--force-rm", "--tag", tag, "--file", str(dockerfile),
                       "--label", "%s=%s" % (HASH_LABEL, wanted)]
            if self.settings.container_base_image:
                command += ["--build-arg", "BASE=%s" % self.settings.container_base_image]
            command.append(str(context))
            try:
                with log_path.open("w", encoding="utf-8") as log:
                    self._run(command, log, progress, spec.name)
            except EnvironmentBuildError as exc:
                text = log_path.read_text(encoding="utf-8", errors="replace")
                package = failing_package(text)
                tail = "\n".join(text.strip().splitlines()[-8:])
                keeps = ("\nThe working %s image was kept; it still serves, built from the earlier spec." % spec.name) if kept else ""
                raise EnvironmentBuildError(
                    "building the %s container image failed (%s; log %s):\n%s%s"
                    % (spec.name, "package %s" % package if package else "see the log", log_path, tail, keeps),
                    package=package, log_path=str(log_path),
                    kept_python=kept.get(INTERPRETER_LABEL, CONTAINER_INTERPRETER) if kept else None,
                ) from exc
        self.engine.run("tag", tag, image_name(spec, "current"))  # the swap: one tag moves
        self._remove_old_images(spec, keep=tag)
        progress("the %s container image is ready" % spec.name)
        labels = self.current(spec)
        if labels is None:
            raise EnvironmentBuildError("the %s image %s was built but cannot be found" % (spec.name, tag))
        return labels

    def _remove_old_images(self, spec: EnvSpec, keep: str) -> None:
        """Earlier images of the spec; the engine refuses to remove one a container still uses, which stays."""
        repository = "%s/%s" % (IMAGE_REPOSITORY, spec.name.lower())
        listed = self.engine.run("images", "--format", "{{.Repository}}:{{.Tag}}", repository, check=False)
        for name in listed.stdout.split():
            if name.removeprefix("localhost/") not in (keep, image_name(spec, "current")):  # podman names local images localhost/...
                self.engine.run("rmi", name, check=False)

    @staticmethod
    def _run(command: List[str], log_file: TextIO, progress: Progress, name: str) -> None:
        # the classic builder: no buildx plugin needed, a local FROM is used as is
        run_logged(command, log_file, progress, name, what="%s build" % Path(command[0]).name, env=dict(os.environ, DOCKER_BUILDKIT="0"))

    @contextmanager
    def _build_lock(self, spec: EnvSpec) -> Iterator[None]:
        """One build of a name's image at a time, across app processes."""
        self.settings.envs_dir.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        with open(self.settings.envs_dir / (".%s.image.lock" % spec.name), "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def cgroup_memory_bytes(pid: int) -> Optional[int]:
    """The memory the engine counts for the cgroup ``pid`` is in, less inactive page cache (as ``docker stats``)."""
    try:
        lines = Path("/proc/%d/cgroup" % pid).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: one unified hierarchy
            folder = Path("/sys/fs/cgroup") / path.lstrip("/")
            used, stat, inactive = folder / "memory.current", folder / "memory.stat", "inactive_file"
        elif "memory" in controllers.split(","):
            folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            used, stat, inactive = folder / "memory.usage_in_bytes", folder / "memory.stat", "total_inactive_file"
        else:
            continue
        try:
            total = int(used.read_text())
            stats = dict(row.split() for row in stat.read_text().splitlines() if len(row.split()) == 2)
        except (OSError, ValueError):
            continue
        return max(0, total - int(stats.get(inactive, 0)))
    return None


class ContainerHandle(WorkerHandle):
    """A worker in a container: the attached engine client on this host, and the container's processes."""

    kind = "container"

    def __init__(self, popen: subprocess.Popen[bytes], engine: Engine, name: str, instance: str) -> None:
        self.popen = popen
        self.engine = engine
        self.name = name
        self.instance = instance
        self._lock = threading.Lock()
        self._init: Optional[psutil.Process] = None
        self._noted: List[psutil.Process] = []

    @property
    def main_pid(self) -> int:
        return self.popen.pid

    def _container_init(self) -> Optional[psutil.Process]:
        """The container's PID 1 on this host, once it runs (asked of the engine once, then kept)."""
        if self._init is None and self.popen.poll() is None:
            pid = self.engine.host_pid(self.name)
            if pid:
                try:
                    self._init = psutil.Process(pid)
                except psutil.Error:
                    self._init = None
        return self._init

    def _members(self) -> List[psutil.Process]:
        init = self._container_init()
        found: List[psutil.Process] = []
        if init is not None and process_running(init):
            try:
                found = [init, *init.children(recursive=True)]
            except psutil.Error:
                found = [init]
        with self._lock:
            self._noted.extend(process for process in found if process not in self._noted)
            self._noted = [process for process in self._noted if process_running(process)]
            return list(self._noted)

    def pids(self) -> List[int]:
        return [self.popen.pid, *(process.pid for process in self._members())]

    def poll(self) -> Optional[int]:
        return exit_code_of(self.popen.poll())

    def wait(self, timeout_s: float) -> Optional[int]:
        try:
            return exit_code_of(self.popen.wait(timeout=max(0.0, timeout_s)))
        except subprocess.TimeoutExpired:
            return None

    def wait_all(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            members = list(self._noted)
        while (still := [process for process in members if process_running(process)]) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.wait(max(0.0, deadline - time.monotonic())) is not None and not still

    def terminate(self) -> None:
        self._members()
        if self.engine.run("kill", "--signal", "TERM", self.name, check=False, timeout_s=10.0).returncode != 0:
            self._signal_client(signal.SIGTERM)  # not created yet (or already gone): the client forwards it or ends

    def kill(self) -> None:
        self._members()
        self.engine.remove(self.name)
        self._signal_client(signal.SIGKILL)  # a client still creating the container: --rm cleans up after it

    def _signal_client(self, sig: int) -> None:
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
            except OSError:
                pass

    def memory_bytes(self) -> Optional[int]:
        init = self._container_init()
        if init is None:
            return None
        counted = cgroup_memory_bytes(init.pid)
        if counted is not None:
            return counted
        total = 0
        for process in self._members():  # no cgroup memory controller to read: the processes' resident memory
            try:
                total += int(process.memory_info().rss)
            except psutil.Error:
                continue
        return total

    def output(self) -> Iterator[bytes]:
        stream: Optional[IO[bytes]] = self.popen.stdout
        if stream is None:
            return
        with stream:
            yield from stream

    def record_entry(self) -> Dict[str, Any]:
        return {"kind": self.kind, "engine": self.engine.command, "name": self.name, "instance": self.instance}


class ContainerKind(EnvironmentKind):
    """Builds an image per architecture; runs each worker in a container of its own."""

    name = "container"
    shares_host_files = False

    def __init__(self, settings: Optional[KindSettings] = None) -> None:
        super().__init__(settings)
        self.engine = Engine(settings.container_engine if settings is not None else os.environ.get("VOICEGEN_CONTAINER_ENGINE", "docker"))
        self.instance = settings.instance if settings is not None else ""
        self.run_args = settings.container_run_args if settings is not None else ""

    @property
    def builder(self) -> ContainerBuilder:
        return ContainerBuilder(self.require_settings(), self.engine)

    def build(self, spec: EnvSpec, progress: Progress = no_progress) -> BuiltEnv:
        builder = self.builder
        try:
            return builder.ensure(spec, progress)
        except EnvironmentBuildError as exc:
            labels = builder.current(spec) if exc.kept_python is not None else None
            if labels is None:
                raise
            logger.warning("%s", exc)
            note = update_failed_note(spec.name, exc)
            progress(note)
            return builder._built(spec, labels, note)

    def is_current(self, spec: EnvSpec) -> bool:
        try:
            return self.builder.is_ready(spec)
        except EngineError:
            return False

    def map_path(self, host_path: str) -> str:
        return map_host_path(host_path)

    def launch(
        self, built: BuiltEnv, argv_tail: Sequence[str], env: Mapping[str, str], cwd: Path, stdin_data: bytes = b"",
        mounts: Sequence[Mount] = (),
    ) -> WorkerHandle:
        if socket_family() != "AF_UNIX":
            raise OSError("container workers talk over a Unix socket, which this platform lacks")
        name = "voicegen-%s-%s" % (re.sub(r"[^a-zA-Z0-9_.-]", "-", built.spec.name), secrets.token_hex(4))
        user = container_user()
        folders = [*mounts]
        if not any(Path(cwd).absolute().is_relative_to(mount.host_path) for mount in folders):
            folders.append(Mount(str(cwd)))
        command = [self.engine.path(), "run", "--rm", "--init", "--interactive", "--pull", "never", "--name", name,
                   "--label", "%s=%s" % (INSTANCE_LABEL, self.instance), "--label", "%s=%d" % (OWNER_LABEL, os.getpid()),
                   "--user", user, "--network", "none", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                   "--tmpfs", "%s:rw,exec,mode=1777" % SCRATCH_DIR, "--workdir", self.map_path(str(cwd)),
                   "--env", "HOME=%s" % SCRATCH_DIR, "--env", "TMPDIR=%s" % SCRATCH_DIR]
        for mount in folders:
            self._share(mount, user)
            access = "rw" if mount.writable else "ro"
            command += ["--volume", "%s:%s:%s" % (Path(mount.host_path).absolute(), self.map_path(mount.host_path), access)]
        command += self._gpu_arguments(env.get("CUDA_VISIBLE_DEVICES", ""))
        command += self._init_arguments() + shlex.split(self.run_args)
        handed = {variable: value for variable, value in env.items() if handed_over(variable)}
        for variable in handed:
            command += ["--env", variable]  # by name: the value comes from the client's environment, not its command line
        command += [built.location, built.interpreter, *argv_tail]
        client_env = {**os.environ, **handed}
        popen = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 env=client_env, start_new_session=True)
        handle = ContainerHandle(popen, self.engine, name, self.instance)
        assert popen.stdin is not None
        try:
            popen.stdin.write(stdin_data)
            popen.stdin.close()
        except OSError:
            pass
        return handle

    @staticmethod
    def _share(mount: Mount, user: str) -> None:
        """A writable folder (the socket's) must be the worker user's: as root we give it (and what is in it) to them."""
        if not mount.writable or not hasattr(os, "getuid") or os.getuid() != 0:
            return
        uid, gid = (int(part) for part in user.split(":"))
        folder = Path(mount.host_path)
        for path in [folder, *folder.iterdir()]:
            os.chown(path, uid, gid)

    def _init_arguments(self) -> List[str]:
        """Podman's ``--init`` wants its own catatonit; where only tini (Docker's init) is installed, name that one."""
        if not self.engine.is_podman():
            return []
        for candidate in ("/usr/libexec/podman/catatonit", "/usr/bin/catatonit", "/usr/bin/tini", "/usr/bin/docker-init"):
            if Path(candidate).exists():
                return ["--init-path", candidate]
        return []

    def _gpu_arguments(self, visible: str) -> List[str]:
        """The GPU the supervisor placed the worker on; "" (or unset): none."""
        if not visible:
            return []
        if self.engine.is_podman():  # podman accepts --gpus and silently ignores it: CDI names the device
            if not any(any(Path(folder).glob("nvidia*")) for folder in ("/etc/cdi", "/var/run/cdi")):
                raise OSError("podman needs NVIDIA's CDI specification to pass a GPU (`nvidia-ctk cdi generate "
                              "--output=/etc/cdi/nvidia.yaml`); without it the worker would silently run without the GPU")
            return ["--device", "nvidia.com/gpu=%s" % visible]
        return ["--gpus", "device=%s" % visible]

    def reap_leftover(self, entry: Mapping[str, Any]) -> bool:
        engine = Engine(str(entry.get("engine") or self.engine.command))
        name = str(entry["name"])
        try:
            found = engine.containers("name=^/?%s$" % re.escape(name), "label=%s=%s" % (INSTANCE_LABEL, entry.get("instance", "")))
        except EngineError:
            return False
        return bool(found) and engine.remove(name)

    def reap_strays(self) -> int:
        """Containers labelled with this app's instance whose app is gone (a record lost with a crash)."""
        if not self.instance:
            return 0
        try:
            found = self.engine.containers("label=%s=%s" % (INSTANCE_LABEL, self.instance))
        except EngineError:
            return 0
        removed = 0
        for container in found:
            try:
                owner = int(container.get(OWNER_LABEL, "0"))
            except ValueError:
                owner = 0
            if owner != os.getpid() and (owner <= 0 or not psutil.pid_exists(owner)) and self.engine.remove(container["name"]):
                removed += 1
        if removed:
            logger.warning("removed %d container(s) an earlier app of this data folder left", removed)
        return removed
