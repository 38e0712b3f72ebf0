"""One worker subprocess: spawn in its own process group, handshake, talk, stop with escalation."""

from __future__ import annotations

import collections
import logging
import os
import select
import signal
import socket
import subprocess
import threading
import time
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Optional, Tuple

import numpy as np

from runtimes.errors import ProtocolError, WorkerBootError
from runtimes.manifest import Manifest
from runtimes.protocol import (
    EXIT_CODE_BOOT_FAILED,
    PROTOCOL_VERSION,
    Channel,
    Header,
    address_to_text,
    socket_family,
)

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 40
ControlHandler = Callable[[Header], None]


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
    return "exited with code %d" % returncode


class WorkerProcess:
    """A live worker and its ``data`` and ``control`` channels."""

    def __init__(
        self,
        name: str,
        python: Path,
        adapter: str,
        project_root: Path,
        private_dir: Path,
        authkey: bytes,
        extra_env: Optional[Dict[str, str]] = None,
    ) -> None:
        self.name = name
        self.log_tail: Deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.worker_logger = logging.getLogger("worker.%s" % name)
        self._listener, address = self._listen(private_dir, name)
        env = dict(os.environ)
        env.update(extra_env or {})
        env["PYTHONPATH"] = os.pathsep.join([str(project_root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["PYTHONUNBUFFERED"] = "1"
        command = [str(python), "-m", "runtimes.worker", "--adapter", adapter, "--address", address, "--name", name]
        # The env's own interpreter directly (no shell, no `conda run`) so signals reach it; its own
        # session makes it a process group we can kill whole, children included.
        self.popen = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=str(project_root),
            env=env,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        assert self.popen.stdin is not None
        self.popen.stdin.write(authkey.hex().encode() + b"\n")
        self.popen.stdin.close()
        self._authkey = authkey
        self._log_thread = threading.Thread(target=self._pump_log, name="log-%s" % name, daemon=True)
        self._log_thread.start()
        self.data: Optional[Channel] = None
        self.control: Optional[Channel] = None
        self.control_lock = threading.Lock()
        self.manifest: Optional[Manifest] = None
        self.hello: Header = {}

    # start-up
    def _listen(self, private_dir: Path, name: str) -> Tuple[socket.socket, str]:
        if socket_family() == "AF_UNIX":
            path = private_dir / ("%s-%d.sock" % (name, time.monotonic_ns()))
            if path.exists():
                path.unlink()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(path))
            os.chmod(path, 0o600)
            self.socket_path: Optional[Path] = path
            address = str(path)
        else:  # pragma: no cover - platforms without Unix sockets
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            self.socket_path = None
            address = address_to_text(sock.getsockname())
        sock.listen(2)
        return sock, address

    def handshake(self, timeout_s: float) -> Manifest:
        """Accept both connections and read ``hello``; the worker's readiness comes from this, never a sleep."""
        deadline = time.monotonic() + timeout_s
        try:
            self.data = Channel(self._accept(deadline))
            self.control = Channel(self._accept(deadline))
            if not self.data.poll(max(0.0, deadline - time.monotonic())):
                raise WorkerBootError(self.boot_failure_text("sent no hello within %.0f s" % timeout_s))
            header, _ = self.data.recv()
        except (EOFError, OSError, ProtocolError) as exc:
            raise WorkerBootError(self.boot_failure_text("broke off its handshake (%s)" % exc)) from exc
        finally:
            self._close_listener()
        if header.get("type") != "hello" or header.get("protocol") != PROTOCOL_VERSION:
            raise WorkerBootError("worker %s spoke an unexpected protocol: %r" % (self.name, header.get("type")))
        self.hello = header
        self.manifest = Manifest.from_dict(header["manifest"])
        return self.manifest

    def _accept(self, deadline: float) -> Connection:
        while True:
            if self.popen.poll() is not None:
                raise WorkerBootError(self.boot_failure_text(describe_exit(self.popen.returncode)))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerBootError(self.boot_failure_text("did not connect within the start-up timeout"))
            readable, _, _ = select.select([self._listener], [], [], min(0.05, remaining))
            if readable:
                client, _ = self._listener.accept()
                client.setblocking(True)
                connection = Connection(client.detach())
                deliver_challenge(connection, self._authkey)
                answer_challenge(connection, self._authkey)
                return connection

    def _close_listener(self) -> None:
        self._listener.close()
        if self.socket_path is not None:
            try:
                self.socket_path.unlink()
            except FileNotFoundError:
                pass

    def boot_failure_text(self, what: str) -> str:
        self.wait_log_drained(1.0)
        tail = "\n".join(list(self.log_tail)[-12:])
        return "the %s worker %s%s" % (self.name, what, (":\n" + tail) if tail else "")

    # log
    def _pump_log(self) -> None:
        assert self.popen.stdout is not None
        with self.popen.stdout:  # closed at EOF, when the worker is gone
            for raw in self.popen.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip()
                if line:
                    self.log_tail.append(line)
                    self.worker_logger.info("%s", line)

    def wait_log_drained(self, timeout_s: float) -> None:
        if self.popen.poll() is not None:
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

    def alive(self) -> bool:
        return self.popen.poll() is None

    # stop: ask -> wait -> terminate group -> kill group -> reap
    def stop(self, graceful_timeout_s: float = 3.0) -> None:
        if self.alive() and self.control is not None:
            try:
                self.send_control({"type": "shutdown"})
            except (OSError, ValueError):
                pass
            self.wait_exit(graceful_timeout_s)
        for sig, wait_s in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
            self._signal_group(sig)
            if self.wait_exit(wait_s) and not self._group_alive():
                break
        self.close_channels()
        self._close_listener()

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)
        self.wait_exit(5.0)
        self.close_channels()
        self._close_listener()

    def wait_exit(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the worker process to exit; True when it has."""
        try:
            self.popen.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def close_channels(self) -> None:
        for channel in (self.data, self.control):
            if channel is not None:
                try:
                    channel.close()
                except OSError:
                    pass

    def describe_exit(self) -> str:
        return describe_exit(self.popen.poll())

    def status_extra(self) -> Dict[str, Any]:
        return {"pid": self.pid, "python": self.hello.get("python")}
