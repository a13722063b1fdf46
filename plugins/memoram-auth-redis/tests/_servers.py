"""Real Redis (or Valkey) servers on loopback for the tests and benchmarks; never a fake.

The binary comes from PATH: ``redis-server`` or ``valkey-server``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

__all__ = ["Cluster", "Server", "find_binary", "free_port"]

INSTALL_HINT = (
    "the Redis tests need a real server: put redis-server or valkey-server on PATH "
    "(Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis)"
)


class ServerMissing(RuntimeError):
    """No server binary on PATH."""


def find_binary(name: str = "server", path: str | None = None) -> str:
    """``redis-NAME`` or ``valkey-NAME`` from PATH (``server`` or ``cli``), or raise."""
    for flavour in ("redis", "valkey"):
        found = shutil.which(f"{flavour}-{name}", path=path)
        if found:
            return found
    raise ServerMissing(INSTALL_HINT)


def free_port(highest: int = 65535) -> int:
    """A free loopback port, at most *highest* (cluster nodes also use port + 10000)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port <= highest:
            return port


class Server:
    """One redis-server on 127.0.0.1, no persistence, in a directory of its own."""

    def __init__(self, *extra: str, port: int | None = None, unix_socket: bool = False) -> None:
        self.binary = find_binary()
        self.directory = tempfile.mkdtemp(prefix="memoram-redis-")
        self.port = port or free_port()
        self.socket_path = os.path.join(self.directory, "redis.sock") if unix_socket else None
        self.extra = list(extra)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Server:
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.directory,
            *self.extra,
        ]  # fmt: skip
        if self.socket_path:
            command += ["--unixsocket", self.socket_path, "--unixsocketperm", "700"]
        log = open(os.path.join(self.directory, "server.log"), "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                client.close()
                return
            except redis.RedisError:
                assert self.process is not None
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = Path(self.directory, "server.log").read_text(errors="replace")
                    raise RuntimeError(f"redis-server did not start:\n{log[-2000:]}") from None
                time.sleep(0.02)

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **kwargs)  # type: ignore[arg-type]

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Cluster:
    """Three masters on loopback, no replicas, slots spread by ``redis-cli --cluster create``."""

    def __init__(self, masters: int = 3) -> None:
        # A cluster node's bus listens on port + 10000: redis-server refuses ports above 55535.
        self.servers = [
            Server(
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "2000",
                port=free_port(highest=55535),
            )
            for _ in range(masters)
        ]
        for server in self.servers:
            server.extra += ["--cluster-config-file", os.path.join(server.directory, "nodes.conf")]

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self) -> Cluster:
        for server in self.servers:
            server.start()
        addresses = [f"127.0.0.1:{server.port}" for server in self.servers]
        subprocess.run(
            [find_binary("cli"), "--cluster", "create", *addresses, "--cluster-replicas", "0",
             "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            states = [
                server.client().cluster("info").get("cluster_state") for server in self.servers
            ]
            if all(state == "ok" for state in states):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not become ready: {states}")
            time.sleep(0.1)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
