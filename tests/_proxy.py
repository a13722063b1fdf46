"""A small HTTP proxy for tests: ``CONNECT`` tunnels and absolute-form forwarding, loopback only.

It lets a test prove that a request (the token request above all) went through the proxy the
user configured::

    with ConnectProxy() as proxy:
        requests.get(url, proxies={"https": proxy.url}, verify=ca_bundle)
        assert proxy.tunnels == [f"127.0.0.1:{port}"]

Only loopback targets are reached (others get 403): a test must never send a test key, or
anything else, to the outside world by mistake. Every socket has a timeout, every read a size
limit, and :meth:`ConnectProxy.stop` closes open tunnels, so a misbehaving client cannot hang a
test.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import ipaddress
import selectors
import socket
import threading
import time
from types import TracebackType
from urllib.parse import urlsplit

from memoram_auth._urls import is_loopback_host

__all__ = ["ConnectProxy"]

_MAX_HEAD = 64 << 10
_CHUNK = 64 << 10
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection"}


def _answer(status: str, extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n{extra}\r\n".encode()


class ConnectProxy:
    """An HTTP proxy on 127.0.0.1 (any free port), serving in daemon threads.

    Args:
        require_auth: ``(user, password)``: answer 407 to requests without a matching
            ``Proxy-Authorization: Basic`` header.
        idle_timeout: seconds a connection may stay silent before the proxy drops it.

    Attributes:
        tunnels: ``"host:port"`` of each ``CONNECT`` tunnel opened, in order.
        requests: ``(method, absolute URL)`` of each plain-HTTP request forwarded.
        refused: ``"host:port"`` of each target refused with 403 (not loopback).
        auth_failures: requests answered 407.
    """

    def __init__(
        self, *, require_auth: tuple[str, str] | None = None, idle_timeout: float = 30.0
    ) -> None:
        self.require_auth = require_auth
        self.idle_timeout = idle_timeout
        self.tunnels: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.refused: list[str] = []
        self.auth_failures = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._threads: set[threading.Thread] = set()
        self._open: set[socket.socket] = set()

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> ConnectProxy:
        if self._listener is None:
            self._stopping.clear()
            self._listener = socket.create_server(("127.0.0.1", 0))
            self._acceptor = threading.Thread(
                target=self._accept_loop, args=(self._listener,), name="test-proxy", daemon=True
            )
            self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut open connections, wait (briefly) for their threads."""
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, threads = list(self._open), list(self._threads)
        for sock in sockets:
            # shutdown, not close: the owning thread is in select() or recv() on it and closes
            # it itself; closing under its feet could hand the descriptor number to a new socket.
            with contextlib.suppress(OSError):  # already gone
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=5)

    def __enter__(self) -> ConnectProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where it is --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the proxy is not running; call start() or use it in a with")
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, for ``proxies={"https": ...}`` or ``HTTPS_PROXY``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        """:attr:`url` with the credentials of *require_auth* in it."""
        if self.require_auth is None:
            raise RuntimeError("this proxy takes no credentials")
        user, password = self.require_auth
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    # -- serving ------------------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        # A short poll rather than a blocking accept(): closing a socket another thread is
        # blocked in accept() on does not wake that thread on Linux.
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            while not self._stopping.is_set():
                if not selector.select(timeout=0.05):
                    continue
                try:
                    client, _ = listener.accept()
                except OSError:
                    continue
                thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
                with self._lock:
                    self._open.add(client)
                    self._threads.add(thread)
                thread.start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            client.settimeout(self.idle_timeout)
            head, rest = self._read_head(client)
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            try:
                method, target, _ = lines[0].split(" ", 2)
            except ValueError:
                client.sendall(_answer("400 Bad Request"))
                return
            fields = [line.partition(":") for line in lines[1:] if line]
            headers = {name.strip().lower(): value.strip() for name, _, value in fields}
            if not self._authorized(headers.get("proxy-authorization", "")):
                with self._lock:
                    self.auth_failures += 1
                client.sendall(
                    _answer(
                        "407 Proxy Authentication Required",
                        'Proxy-Authenticate: Basic realm="test-proxy"\r\n',
                    )
                )
                return
            if method.upper() == "CONNECT":
                upstream = self._open_tunnel(client, target)
                if upstream is not None and rest:
                    upstream.sendall(rest)
            elif target.lower().startswith("http://"):
                upstream = self._forward(client, method, target, fields, rest)
            else:
                client.sendall(_answer("400 Bad Request"))
            if upstream is not None:
                self._pipe(client, upstream)
        except OSError:
            pass  # a peer hung up or timed out: the connection simply ends
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    sock.close()
            with self._lock:
                self._open.discard(client)
                if upstream is not None:
                    self._open.discard(upstream)
                self._threads.discard(threading.current_thread())

    def _read_head(self, client: socket.socket) -> tuple[bytes | None, bytes]:
        """The request line and headers, and whatever arrived after them."""
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            if len(buffer) > _MAX_HEAD:
                client.sendall(_answer("431 Request Header Fields Too Large"))
                return None, b""
            data = client.recv(_CHUNK)
            if not data:
                return None, b""
            buffer += data
        head, _, rest = buffer.partition(b"\r\n\r\n")
        return head, rest

    def _authorized(self, header: str) -> bool:
        if self.require_auth is None:
            return True
        expected = "Basic " + base64.b64encode(":".join(self.require_auth).encode()).decode()
        return hmac.compare_digest(header.encode(), expected.encode())

    def _connect(self, client: socket.socket, host: str, port: int) -> socket.socket | None:
        """A connection to *host*:*port* if it is loopback, else None after answering 403/502."""
        target = f"{host}:{port}"
        addresses = []
        if is_loopback_host(host):
            try:
                infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
            except OSError:
                infos = []
            # Check what the name resolved to as well: a hosts file may point *.localhost
            # anywhere.
            addresses = [i for i in infos if ipaddress.ip_address(i[4][0]).is_loopback]
        if not addresses:
            with self._lock:
                self.refused.append(target)
            client.sendall(_answer("403 Forbidden"))
            return None
        for family, kind, proto, _, address in addresses:
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(self.idle_timeout)
                sock.connect(address)
            except OSError:
                sock.close()
                continue
            with self._lock:
                self._open.add(sock)
            return sock
        client.sendall(_answer("502 Bad Gateway"))
        return None

    def _open_tunnel(self, client: socket.socket, target: str) -> socket.socket | None:
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            client.sendall(_answer("400 Bad Request"))
            return None
        upstream = self._connect(client, host, int(port))
        if upstream is not None:
            # Recorded before the client hears 200, so a test that got its answer sees it.
            with self._lock:
                self.tunnels.append(target)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return upstream

    def _forward(
        self,
        client: socket.socket,
        method: str,
        url: str,
        fields: list[tuple[str, str, str]],
        rest: bytes,
    ) -> socket.socket | None:
        parts = urlsplit(url)
        if parts.hostname is None:
            client.sendall(_answer("400 Bad Request"))
            return None
        upstream = self._connect(client, parts.hostname, parts.port or 80)
        if upstream is None:
            return None
        with self._lock:
            self.requests.append((method, url))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        kept = [
            f"{name}:{value}"
            for name, _, value in fields
            if name.strip().lower() not in _HOP_BY_HOP
        ]
        # One request per connection: the upstream closes after answering, and the pipe with it.
        head = "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close", "", ""])
        upstream.sendall(head.encode("latin-1") + rest)
        return upstream

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        """Copy bytes both ways until one side closes, goes idle, or the proxy stops."""
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, client)
            last = time.monotonic()
            # Short polls: a stop() that raced with this tunnel's set-up is still noticed soon.
            while not self._stopping.is_set():
                events = selector.select(timeout=0.25)
                if not events:
                    if time.monotonic() - last > self.idle_timeout:
                        return
                    continue
                last = time.monotonic()
                for key, _ in events:
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(_CHUNK)
                    if not data:
                        return
                    # Blocking send with the socket's timeout: a reader that stops reading
                    # holds at most one chunk here, then times out.
                    key.data.sendall(data)
