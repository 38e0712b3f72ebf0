"""Real servers the tests start on loopback: Redis (Debian's redis-server), with nothing kept on disk."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis

from tests.conftest import free_port


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A Redis server of its own (no persistence: a restart empties it, as a broker restart may); its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does this)")
    folder = Path(tempfile.mkdtemp(prefix="voicegen-redis-"))
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "redis://127.0.0.1:%d/0" % port
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start on port %d" % port) from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        process.kill()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
