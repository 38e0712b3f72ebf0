"""The framed protocol over a real authenticated Unix socket, across two Python versions."""

from __future__ import annotations

import subprocess
import sys
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import Iterator, Tuple

import numpy as np
import pytest

from runtimes.errors import ProtocolError
from runtimes.protocol import MAX_HEADER_BYTES, Channel

KEY = b"k" * 32


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Tuple[Channel, Channel]]:
    address = str(tmp_path / "s.sock")
    listener = Listener(address, family="AF_UNIX", authkey=KEY)
    accepted = {}
    thread = threading.Thread(target=lambda: accepted.setdefault("c", listener.accept()))
    thread.start()
    client = Client(address, family="AF_UNIX", authkey=KEY)
    thread.join(5)
    server = Channel(accepted["c"])
    yield server, Channel(client)
    server.close()
    client.close()
    listener.close()


def test_header_and_audio_round_trip(pair: Tuple[Channel, Channel]) -> None:
    server, client = pair
    audio = np.random.default_rng(0).standard_normal((2, 48000)).astype(np.float32)
    sender = threading.Thread(target=client.send, args=({"type": "result", "job": "j1", "sample_rate": 48000}, audio))
    sender.start()  # 384 KB is more than a socket buffer: the reader must run meanwhile
    header, received = server.recv()
    sender.join(5)
    assert header["type"] == "result" and header["payload"] == {"dtype": "float32", "shape": [2, 48000]}
    assert received is not None
    np.testing.assert_array_equal(received, audio)
    client.send({"type": "ping"})
    assert server.recv() == ({"type": "ping"}, None)
    for empty in ((2, 0), (0,), (2, 2, 0)):  # an empty song or take crosses as what it is (it broke the cast once)
        client.send({"type": "generate"}, np.zeros(empty, np.float32))
        _, received = server.recv()
        assert received is not None and received.shape == empty


def test_bad_frames_raise_protocol_errors(pair: Tuple[Channel, Channel]) -> None:
    server, client = pair
    client.connection.send_bytes(b"not json")
    with pytest.raises(ProtocolError, match="not JSON"):
        server.recv()
    client.connection.send_bytes(b'{"no": "type"}')
    with pytest.raises(ProtocolError, match="no message type"):
        server.recv()
    client.connection.send_bytes(b'{"type": "x", "payload": {"dtype": "float32", "shape": [10]}}')
    client.connection.send_bytes(b"\0" * 8)
    with pytest.raises(ProtocolError, match="holds 2 samples"):
        server.recv()
    def send_oversized() -> None:
        try:
            client.connection.send_bytes(b"x" * (MAX_HEADER_BYTES + 1))
        except (OSError, TypeError):
            pass  # the reader gives up on the frame; the connection is closed under the sender

    threading.Thread(target=send_oversized, daemon=True).start()
    with pytest.raises(ProtocolError, match="too large"):
        server.recv()


def test_peer_closing_mid_stream_is_eof(pair: Tuple[Channel, Channel]) -> None:
    server, client = pair
    client.close()
    with pytest.raises(EOFError):
        server.recv()


def test_wrong_secret_is_refused(tmp_path: Path) -> None:
    address = str(tmp_path / "s.sock")
    listener = Listener(address, family="AF_UNIX", authkey=KEY)
    refused = []

    def accept() -> None:
        try:
            listener.accept()
        except AuthenticationError as exc:
            refused.append(exc)

    thread = threading.Thread(target=accept)
    thread.start()
    with pytest.raises(AuthenticationError):
        Client(address, family="AF_UNIX", authkey=b"wrong" * 7)
    thread.join(5)
    assert refused
    listener.close()


def test_worker_side_modules_run_on_python_3_9(tmp_path: Path) -> None:
    """The scaffold must keep to Python 3.9 syntax and the standard library (+ numpy where present)."""
    python39 = Path.home() / ".pyenv/versions/3.9.18/bin/python3.9"
    if not python39.exists():
        pytest.skip("no Python 3.9 interpreter on this machine")
    code = "import ast,sys\nfor p in sys.argv[1:]: ast.parse(open(p).read(), p, feature_version=(3, 9))\nprint('ok')"
    files = [str(Path("runtimes") / name) for name in ("protocol.py", "errors.py", "worker.py", "adapter.py", "manifest.py")]
    out = subprocess.run([str(python39), "-c", code, *files], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "ok", out.stderr
    assert sys.version_info >= (3, 9)
