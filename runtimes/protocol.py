"""The framed protocol between the supervisor and a worker.

Transport: ``multiprocessing.connection`` (length-prefixed frames, HMAC challenge with a per-launch
secret) over a Unix domain socket in a private ``0700`` directory, or loopback TCP where Unix sockets
do not exist. Every message is one JSON header frame; a message that carries audio is followed by
exactly one raw frame holding the samples (``header["payload"]`` describes dtype and shape). Nothing is
ever pickled: the two ends may run different Pythons and must not trust each other's objects.

A worker opens two connections: ``data`` (load / generate / their replies) and ``control``
(heartbeats, ping, cancel, shutdown), so that a long inference never blocks health traffic.

A worker holds its architecture's shared assets once (``prepare``) and many characters, each loaded
and unloaded by its key (a folder path or a builtin id); ``generate`` names the character it uses.

Messages (``type``):
  worker -> supervisor: ``hello`` (manifest, pid), ``prepared``, ``loaded``, ``unloaded``,
                        ``progress``, ``chunk``, ``result``, ``error``, ``heartbeat``, ``pong``

A ``generate`` with ``"stream": true`` is answered by one ``chunk`` (with audio) per piece as the adapter makes
it, then a ``result`` without audio (``chunks``: how many were sent); without it, by one ``result`` with the take.
  supervisor -> worker: ``prepare``, ``load``, ``unload``, ``generate``, ``ping``, ``cancel``,
                        ``shutdown``

Standard library + numpy only; Python 3.9 syntax.
"""

from __future__ import annotations

import json
import socket
from multiprocessing.connection import Connection
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from runtimes.errors import ProtocolError

PROTOCOL_VERSION = 3
MAX_HEADER_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 1 << 30
HEARTBEAT_INTERVAL_S = 0.5
EXIT_CODE_BOOT_FAILED = 3
"""A worker that exits with this code cannot boot in its env (import error, missing package): no restart."""
EXIT_CODE_CONNECT_FAILED = 4
"""A worker that exits with this code could not reach or authenticate to the app (a restart may work)."""

ASSETS_ENV = "VOICEGEN_ASSETS_DIR"
"""The environment variable naming the shared pretrained assets folder, in every worker."""

Address = Union[str, Tuple[str, int]]
Header = Dict[str, Any]


def socket_family() -> str:
    """Unix sockets where the platform has them, loopback TCP elsewhere (Windows)."""
    return "AF_UNIX" if hasattr(socket, "AF_UNIX") else "AF_INET"


def address_to_text(address: Address) -> str:
    if isinstance(address, str):
        return address
    return "%s:%d" % address


def address_from_text(text: str) -> Address:
    if socket_family() == "AF_UNIX":
        return text
    host, _, port = text.rpartition(":")
    return (host, int(port))


class Channel:
    """One authenticated connection that carries JSON headers and raw audio frames."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def send(self, header: Header, audio: Optional[np.ndarray] = None) -> None:
        if audio is not None:
            samples = np.ascontiguousarray(audio, dtype=np.float32)
            header = dict(header, payload={"dtype": "float32", "shape": list(samples.shape)})
            data = json.dumps(header).encode("utf-8")
            self.connection.send_bytes(data)
            # no copy: send_bytes casts to bytes itself (a memoryview with a zero in its shape cannot be cast: send it flat)
            self.connection.send_bytes(samples.reshape(-1).data if samples.size == 0 else samples.data)
        else:
            self.connection.send_bytes(json.dumps(header).encode("utf-8"))

    def recv(self) -> Tuple[Header, Optional[np.ndarray]]:
        """Next message; raises ``EOFError`` when the peer closed, ``ProtocolError`` on bad frames."""
        header = self._recv_header()
        spec = header.get("payload")
        if spec is None:
            return header, None
        try:
            raw = self.connection.recv_bytes(MAX_PAYLOAD_BYTES)
        except OSError as exc:
            raise ProtocolError("audio frame too large or broken: %s" % exc) from exc
        if spec.get("dtype") != "float32":
            raise ProtocolError("unsupported audio dtype %r" % spec.get("dtype"))
        shape = tuple(int(n) for n in spec.get("shape", []))
        samples = np.frombuffer(raw, dtype=np.float32)
        if samples.size != int(np.prod(shape)):
            raise ProtocolError("audio frame holds %d samples, header said %s" % (samples.size, shape))
        return header, samples.reshape(shape)

    def poll(self, timeout_s: float) -> bool:
        return self.connection.poll(timeout_s)

    def close(self) -> None:
        self.connection.close()

    def _recv_header(self) -> Header:
        try:
            raw = self.connection.recv_bytes(MAX_HEADER_BYTES)
        except OSError as exc:
            if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                raise EOFError(str(exc)) from exc
            raise ProtocolError("header frame too large or broken: %s" % exc) from exc
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError("header frame is not JSON: %s" % exc) from exc
        if not isinstance(header, dict) or not isinstance(header.get("type"), str):
            raise ProtocolError("header frame has no message type")
        return header
