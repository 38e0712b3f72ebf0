"""Real servers the tests start on loopback: Redis (Debian's redis-server, nothing kept on disk) and PostgreSQL (a
throwaway cluster of Debian's server), each of its own and stopped after."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import ContextManager, Iterator, List, Sequence, TypeVar, Union

import pytest
import redis

from tests.conftest import free_port


def postgres_bin() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does this)")
    return Path(candidates[-1]).parent


def as_postgres(command: List[str]) -> List[str]:
    """The server refuses to run as root: run it as the postgres user where the tests run as root."""
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no postgres user to run the server as")
    return ["runuser", "-u", "postgres", "--", *command]


class PostgresServer:
    """A cluster of its own on a free loopback port; ``url`` reaches its ``postgres`` database as the trusted user
    ``jobs``; ``stop``/``start`` restart it on the same port (what an outage looks like to the app)."""

    def __init__(self, addresses: Sequence[str] = ("127.0.0.1",)) -> None:
        """``addresses``: where it listens (loopback; the tests of hosts in their own network namespaces add theirs)."""
        self.addresses = list(addresses)
        self.binaries = postgres_bin()
        self.folder = Path(tempfile.mkdtemp(prefix="voicegen-postgres-"))  # not under pytest's root-only folders
        self.data, self.sockets = self.folder / "data", self.folder / "run"
        self.sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            shutil.chown(self.sockets, "postgres")
        subprocess.run(as_postgres([str(self.binaries / "initdb"), "-D", str(self.data), "-U", "jobs", "--auth=trust", "-E",
                                    "UTF8"]), check=True, capture_output=True, timeout=120)
        if self.addresses != ["127.0.0.1"]:  # other addresses are test namespaces' of this machine: trusted as loopback is
            with (self.data / "pg_hba.conf").open("a") as hba:
                for address in self.addresses[1:]:
                    hba.write("host all all %s/24 trust\n" % address)
        self.port = free_port()
        self.url = self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return "postgresql+psycopg://jobs@127.0.0.1:%d/%s" % (self.port, name)

    def start(self) -> None:
        subprocess.run(as_postgres([str(self.binaries / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "server.log"),
                                    "-w", "-o", "-p %d -k %s -c listen_addresses=%s" % (self.port, self.sockets, ",".join(self.addresses)),
                                    "start"]),
                       check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        subprocess.run(as_postgres([str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)

    def new_database(self, name: str) -> str:
        """A fresh empty database on this server: its URL."""
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=%d user=jobs dbname=postgres" % self.port, autocommit=True) as connection:
            connection.execute("DROP DATABASE IF EXISTS %s" % name)  # names come from the tests, not from input
            connection.execute("CREATE DATABASE %s" % name)
        return self.database_url(name)


def postgres_server(addresses: Sequence[str] = ("127.0.0.1",)) -> ContextManager[PostgresServer]:
    return running(PostgresServer(addresses))


class RedisServer:
    """A Redis server of its own (no persistence: a restart empties it, as a broker restart may)."""

    def __init__(self, addresses: Sequence[str] = ("127.0.0.1",)) -> None:
        self.addresses = list(addresses)
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does this)")
        self.binary = binary
        self.folder = Path(tempfile.mkdtemp(prefix="voicegen-redis-"))
        self.port = free_port()
        self.url = "redis://127.0.0.1:%d/0" % self.port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", *self.addresses, "--protected-mode", "no", "--save", "",
                   "--appendonly", "no", "--dir",
                   str(self.folder)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise RuntimeError("redis-server did not start on port %d" % self.port) from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        """Killed and started empty on the same port."""
        self.stop()
        self.start()


def redis_server(addresses: Sequence[str] = ("127.0.0.1",)) -> ContextManager[RedisServer]:
    return running(RedisServer(addresses))


S = TypeVar("S", bound=Union["PostgresServer", "RedisServer"])


@contextlib.contextmanager
def running(server: S) -> Iterator[S]:
    """A server started for the block, then stopped and its folder removed."""
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)
