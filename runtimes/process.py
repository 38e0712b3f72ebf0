"""One worker: launched through its environment kind (a ``WorkerHandle``), handshake, talk, stop with escalation."""

from __future__ import annotations

import collections
import logging
import os
import signal
import socket
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence

import numpy as np

from runtimes.envkinds.base import BuiltEnv, EnvironmentKind, Mount, WorkerHandle
from runtimes.errors import BadRequestError, ProtocolError, WorkerBootError
from runtimes.manifest import Manifest
from runtimes.protocol import (
    EXIT_CODE_BOOT_FAILED,
    EXIT_CODE_CONNECT_FAILED,
    PROTOCOL_VERSION,
    Channel,
    Header,
    address_to_text,
    socket_family,
)

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 40
ControlHandler = Callable[[Header], None]


PRIVATE_ENV_PREFIXES = ("VOICEGEN_",)
PRIVATE_ENV_WORDS = ("PASSWORD", "SECRET", "TOKEN", "AUTH", "CREDENTIAL", "API_KEY")


def worker_environment(environ: Mapping[str, str]) -> Dict[str, str]:
    """The app's environment minus what third-party model code must not see: the app's own settings
    (credentials among them) and anything named like a secret. The worker gets what it needs explicitly."""
    return {name: value for name, value in environ.items()
            if not name.startswith(PRIVATE_ENV_PREFIXES) and not any(word in name.upper() for word in PRIVATE_ENV_WORDS)}


def describe_exit(returncode: Optional[int]) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return "killed by %s" % signal.Signals(-returncode).name
        except ValueError:
            return "killed by signal %d" % -returncode
    if returncode == EXIT_CODE_BOOT_FAILED:
        return "failed to boot (exit code %d)" % returncode
    if returncode == EXIT_CODE_CONNECT_FAILED:
        return "could not connect to the app (exit code %d)" % returncode
    return "exited with code %d" % returncode


class WorkerProcess:
    """A live worker and its ``data`` and ``control`` channels."""

    def __init__(
        self,
        name: str,
        kind: EnvironmentKind,
        built: BuiltEnv,
        project_root: Path,
        private_dir: Path,
        authkey: bytes,
        extra_env: Optional[Dict[str, str]] = None,
        path_env: Optional[Dict[str, Path]] = None,
        readable_dirs: Sequence[Path] = (),
        writable_env: Optional[Dict[str, Path]] = None,
    ) -> None:
        """Launch a worker of ``built`` through its ``kind``. ``path_env``: variables naming host paths
        (the shared assets folder), handed to the worker mapped as it sees them. ``readable_dirs``: the host
        folders whose files requests name (the architecture's characters): a kind that does not share the
        host's files mounts them, with the code, the ``path_env`` folders and the socket's own folder. ``writable_env``: like
        ``path_env``, folders the worker may write (its conditioning cache)."""
        self.name = name
        self.kind = kind
        self.log_tail: Deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.worker_logger = logging.getLogger("worker.%s" % name)
        family = socket_family()
        socket_dir = private_dir / name  # a folder of its own: what a container mounts of the app's sockets
        socket_dir.mkdir(mode=0o700)
        self._socket_dir = socket_dir
        self.mounts: List[Mount] = [Mount(str(socket_dir), writable=True), Mount(str(project_root)),
                                    *(Mount(str(path)) for path in [*(path_env or {}).values(), *readable_dirs] if Path(path).is_dir()),
                                    *(Mount(str(path), writable=True) for path in (writable_env or {}).values())]
        where: Any = str(socket_dir / "worker.sock") if family == "AF_UNIX" else ("127.0.0.1", 0)
        # The standard library does accept + HMAC challenge; the socket lives in our 0700 directory.
        self._listener = Listener(where, family=family, backlog=2, authkey=authkey)
        self._address = self._listener.address
        self._listener_closed = False
        env = worker_environment(os.environ)
        env.update(extra_env or {})
        env.update({variable: kind.map_path(str(path)) for variable, path in {**(path_env or {}), **(writable_env or {})}.items()})
        env["PYTHONPATH"] = os.pathsep.join([kind.map_path(str(project_root)), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["PYTHONUNBUFFERED"] = "1"
        address = address_to_text(self._address)
        if family == "AF_UNIX":
            address = kind.map_path(address)
        argv_tail = ["-m", "runtimes.worker", "--adapter", built.spec.adapter, "--address", address, "--name", name]
        try:
            self.handle: WorkerHandle = kind.launch(built, argv_tail, env, project_root, authkey.hex().encode() + b"\n", self.mounts)
        except BaseException:
            self._close_listener()
            raise
        self._log_thread = threading.Thread(target=self._pump_log, name="log-%s" % name, daemon=True)
        self._log_thread.start()
        self.data: Optional[Channel] = None
        self.control: Optional[Channel] = None
        self.control_lock = threading.Lock()
        self.manifest: Optional[Manifest] = None
        self.hello: Header = {}

    @property
    def pid(self) -> int:
        """The worker's main process id (status rows, tests): the handle's ``main_pid``."""
        return self.handle.main_pid

    def map_path(self, host_path: str) -> str:
        """The one place a host path (a character folder, the assets folder, the socket, the code) becomes
        the path the worker sees: the environment kind's mapping (identity for a venv). A kind that does
        not share the host's files sees only what was mounted: any other path is refused by name."""
        if not self.kind.shares_host_files and not any(Path(host_path).absolute().is_relative_to(mount.host_path) for mount in self.mounts):
            raise BadRequestError("%s is outside the folders the %s worker's container can see (%s)"
                                  % (host_path, self.name, ", ".join(mount.host_path for mount in self.mounts[1:])))
        return self.kind.map_path(host_path)

    # start-up
    def handshake(self, timeout_s: float) -> Manifest:
        """Accept both connections and read ``hello``; readiness comes from this, never a sleep.
        Every way it can go wrong is a ``WorkerBootError``; ``cannot_boot`` only for the reserved exit code."""
        deadline = time.monotonic() + timeout_s
        try:
            self.data = Channel(self._accept(deadline))
            self.control = Channel(self._accept(deadline))
            if not self.data.poll(max(0.0, deadline - time.monotonic())):
                raise self.boot_error("sent no hello within %.0f s" % timeout_s)
            header, _ = self.data.recv()
            if header.get("type") != "hello" or header.get("protocol") != PROTOCOL_VERSION:
                raise self.boot_error("spoke an unexpected protocol (%r, version %r)" % (header.get("type"), header.get("protocol")))
            self.manifest = Manifest.from_dict(header["manifest"])
        except AuthenticationError as exc:
            raise self.boot_error("failed authentication (%s)" % exc) from exc
        except (EOFError, OSError, ProtocolError) as exc:
            raise self.boot_error("broke off its handshake (%s)" % (exc or type(exc).__name__)) from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self.boot_error("sent a malformed manifest (%s: %s)" % (type(exc).__name__, exc)) from exc
        finally:
            self._close_listener()
        self.hello = header
        return self.manifest

    def _accept(self, deadline: float) -> Connection:
        """``Listener.accept`` has no timeout: it runs on a helper thread that we wake when time is up."""
        box: Dict[str, Any] = {}

        def accept() -> None:
            try:
                box["connection"] = self._listener.accept()
            except BaseException as exc:  # handed to the waiting thread below
                box["error"] = exc

        helper = threading.Thread(target=accept, name="accept-%s" % self.name, daemon=True)
        helper.start()
        while helper.is_alive():
            helper.join(0.05)
            if not helper.is_alive():
                break
            if not self.alive():
                self._wake_listener()
                raise self.boot_error(self.describe_exit())
            if time.monotonic() > deadline:
                self._wake_listener()
                raise self.boot_error("did not connect within the start-up timeout")
        if "error" in box:
            raise box["error"]
        return box["connection"]  # type: ignore[no-any-return]

    def _wake_listener(self) -> None:
        """Unblock a pending ``accept``: connect and hang up, which fails its challenge."""
        if socket_family() != "AF_UNIX":  # pragma: no cover - loopback TCP
            family = socket.AF_INET
        else:
            family = socket.AF_UNIX
        try:
            with socket.socket(family, socket.SOCK_STREAM) as waker:
                waker.settimeout(1.0)
                waker.connect(self._address)
        except OSError:
            pass

    def _close_listener(self) -> None:
        if not self._listener_closed:
            self._listener_closed = True
            self._listener.close()  # also removes the socket file
            try:
                self._socket_dir.rmdir()
            except OSError:
                pass

    def boot_error(self, what: str) -> WorkerBootError:
        self.wait_log_drained(1.0)
        tail = "\n".join(list(self.log_tail)[-12:])
        cannot_boot = self.returncode() == EXIT_CODE_BOOT_FAILED
        return WorkerBootError("the %s worker %s%s" % (self.name, what, (":\n" + tail) if tail else ""), cannot_boot=cannot_boot)

    # log
    def _pump_log(self) -> None:
        for raw in self.handle.output():
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                self.log_tail.append(line)
                self.worker_logger.info("%s", line)

    def wait_log_drained(self, timeout_s: float) -> None:
        if not self.alive():
            self._log_thread.join(timeout_s)

    # traffic
    def send(self, header: Header, audio: Optional[np.ndarray] = None) -> None:
        assert self.data is not None
        self.data.send(header, audio)

    def send_control(self, header: Header) -> None:
        assert self.control is not None
        with self.control_lock:
            self.control.send(header)

    def read_control_forever(self, handler: ControlHandler) -> None:
        """Runs on its own thread; returns when the control channel closes."""
        assert self.control is not None
        while True:
            try:
                header, _ = self.control.recv()
            except (EOFError, OSError, ProtocolError):
                return
            handler(header)

    # exit and reaping
    def returncode(self) -> Optional[int]:
        return self.handle.poll()

    def alive(self) -> bool:
        return self.returncode() is None

    def wait_exit(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the worker process to exit (and reap it); True when it has."""
        return self.handle.wait(timeout_s) is not None

    # stop: ask -> wait -> terminate group -> kill group -> reap
    def stop(self, graceful_timeout_s: float = 3.0) -> None:
        self.handle.pids()  # noted while the main process lives: its children are still its children
        if self.alive() and self.control is not None:
            try:
                self.send_control({"type": "shutdown"})
            except (OSError, ValueError):
                pass
            self.wait_exit(graceful_timeout_s)
        for signal_all, wait_s in ((self.handle.terminate, 2.0), (self.handle.kill, 5.0)):
            signal_all()
            if self.handle.wait_all(wait_s):
                break
        self.wait_exit(1.0)
        self.close_channels()
        self._close_listener()

    def kill(self) -> None:
        self.handle.kill()
        self.wait_exit(5.0)
        self.close_channels()
        self._close_listener()

    def close_channels(self) -> None:
        for channel in (self.data, self.control):
            if channel is not None:
                try:
                    channel.close()
                except OSError:
                    pass

    def describe_exit(self) -> str:
        return describe_exit(self.returncode())

