"""The agent: the key in one process, tokens for the user's other processes on a Unix socket.

Trust: the socket is created 0600 in a directory that must be this user's and private (0700,
created so if missing); every connection's peer is checked (``SO_PEERCRED`` on Linux,
``getpeereid`` elsewhere) and only this user is served, whatever the socket's mode. A lock file
beside the socket, held while the agent runs, decides which agent owns the path: a second one
refuses to start, and a dead one's socket is taken over.

Load: a fixed pool of worker threads serves connections; the accept loop waits while all are
busy (the kernel's listen queue holds the rest). Each connection has one request, read under
a deadline, with the limits of :mod:`memoram_auth.agent.protocol`; anything else is a 400.
Behind the socket is the package's provider, as any other use of the key has it: the cache,
the plugins' backends, single flight, the hostile-answer limits and deadlines.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import stat
import struct
import sys
import threading
import time
from typing import TYPE_CHECKING

from .. import _log
from .._env import AUTH_SOCK_ENV
from ..exceptions import ConfigurationError, MemoramAuthError
from . import protocol

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO

    from ..provider import TokenProvider

__all__ = [
    "WORKERS",
    "AgentServer",
    "default_socket_path",
    "prepare_directory",
]

#: Connections served at once; more wait in the listen queue.
WORKERS = 32
#: The listen queue: clients started all at once wait here, not refused.
BACKLOG = 1024
#: Seconds a client may take to send its request.
REQUEST_TIMEOUT = 5.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    421: "Misdirected Request",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class _Stop(Exception):
    """Raised by the signal handlers in the main thread: ends the accept loop."""

    pass


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def default_socket_path() -> str:
    """``$XDG_RUNTIME_DIR/memoram-auth/agent.sock``, else a private directory in the temp dir."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "memoram-auth", "agent.sock")
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"memoram-auth-{os.geteuid()}", "agent.sock")


def prepare_directory(directory: str) -> None:
    """Create *directory* 0700, or check that it is a private directory of this user.

    Raises:
        ConfigurationError: a symbolic link, not a directory, another user's, or open to others.
    """
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigurationError(f"cannot create {directory}: {exc.strerror or exc}") from None
    info = os.lstat(directory)
    problem = None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory (a symbolic link is refused)"
    elif info.st_uid != os.geteuid():
        problem = "is owned by another user"
    elif stat.S_IMODE(info.st_mode) & 0o077:
        problem = f"is open to other users (mode {stat.S_IMODE(info.st_mode):04o}; chmod 700 it)"
    if problem is not None:
        raise ConfigurationError(f"the agent's socket directory {directory} {problem}")


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end of *conn*, or ``None`` if it cannot be known."""
    if hasattr(socket, "SO_PEERCRED"):
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", raw)[1])
    return _getpeereid(conn.fileno())


def _libc_getpeereid() -> Any:  # noqa: ANN401 - a ctypes function
    # BSDs and macOS: libc's getpeereid(2); Python has no binding of its own.
    import ctypes

    return getattr(ctypes.CDLL(None, use_errno=True), "getpeereid", None)


def _getpeereid(fd: int) -> int | None:
    import ctypes

    function = _libc_getpeereid()
    if function is None:
        return None
    uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
    if function(fd, ctypes.byref(uid), ctypes.byref(gid)) != 0:
        return None
    return int(uid.value)


class AgentServer:
    """Serves *provider*'s tokens on a Unix socket at *path*.

    Args:
        provider: the provider of the key (its base URL is the one served).
        path: the socket's path; its directory is created or checked (:func:`prepare_directory`).
        workers: connections served at once.
        idle_timeout: exit after this many seconds without a connection (``None``: never).
        request_timeout: seconds a client may take to send its request.
        log: where lines about the agent go (default: standard error).

    Raises:
        ConfigurationError: a bad directory, a path too long for a socket, another agent
            already serving *path*, or no way to check peers on this platform.
    """

    def __init__(
        self,
        provider: TokenProvider,
        path: str,
        *,
        workers: int = WORKERS,
        idle_timeout: float | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.provider = provider
        self.path = os.path.abspath(path)
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self._log = log or (lambda line: print(f"memoram-auth agent: {line}", file=sys.stderr))
        self._workers = workers
        self._queue: queue.Queue[socket.socket | None] = queue.Queue(maxsize=workers)
        self._uid = os.geteuid()
        self._stopping = False
        self._last_activity = time.monotonic()
        if len(os.fsencode(self.path)) > 100:
            raise ConfigurationError(
                f"the socket path {self.path} is too long for a Unix socket (100 bytes at most)"
            )
        if not hasattr(socket, "AF_UNIX") or not (
            hasattr(socket, "SO_PEERCRED") or _libc_getpeereid() is not None
        ):
            # Without a peer check, the socket's mode would be the only guard.
            raise ConfigurationError("the agent needs Unix sockets with peer credentials")
        prepare_directory(os.path.dirname(self.path))
        self._lock_fd = self._take_lock()
        try:
            self._listener = self._bind()
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _take_lock(self) -> int:
        import fcntl

        lock_path = self.path + ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigurationError(
                f"another agent is already serving {self.path}: use it "
                f"(export {AUTH_SOCK_ENV}={self.path}) or stop it first"
            ) from None
        return fd

    def _bind(self) -> socket.socket:
        # The lock is ours: whatever is at the path is a dead agent's socket, or not a socket.
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(info.st_mode) or info.st_uid != self._uid:
                raise ConfigurationError(f"{self.path} exists and is not this user's socket")
            os.unlink(self.path)
            self._log(f"took over the socket of an agent that is gone: {self.path}")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o177)  # created 0600: no moment where another user may connect
            try:
                listener.bind(self.path)
            finally:
                os.umask(old)
            os.chmod(self.path, 0o600)
            listener.listen(BACKLOG)
        except BaseException:
            listener.close()  # a path too long, a full disk: not left for the collector
            raise
        return listener

    # -- running ------------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve until SIGTERM, SIGINT (from the main thread), :meth:`stop`, or the idle timeout;
        then remove the socket."""
        threads = [
            threading.Thread(target=self._work, name=f"memoram-auth-agent-{n}", daemon=True)
            for n in range(self._workers)
        ]
        for thread in threads:
            thread.start()
        restore = self._install_signals()
        try:
            self._accept_loop()
        except _Stop:
            pass
        finally:
            restore()
            self._stopping = True
            self.close()
            for _ in threads:
                # A worker still waiting on the token endpoint is a daemon thread: it does
                # not hold the stop up (it answers 503 to what is left in the queue).
                with contextlib.suppress(queue.Full):
                    self._queue.put(None, timeout=self.request_timeout)
            for thread in threads:
                thread.join(timeout=self.request_timeout)

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def stop(signum: int, frame: object) -> None:
            # Once: a second signal during the clean-up must not cut it short.
            if not self._stopping:
                self._stopping = True
                raise _Stop

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def _accept_loop(self) -> None:
        listener = self._listener
        listener.settimeout(min(self.idle_timeout, 1.0) if self.idle_timeout else 1.0)
        while not self._stopping:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                idle = time.monotonic() - self._last_activity
                if self.idle_timeout is not None and idle >= self.idle_timeout:
                    self._log(f"no client for {self.idle_timeout:.0f} s: stopping")
                    return
                continue
            except OSError:
                if self._stopping:
                    return
                raise
            self._last_activity = time.monotonic()
            try:
                uid = peer_uid(conn)
            except OSError:
                uid = None
            if uid != self._uid:
                # Checked before a worker is spent: another user cannot even occupy one.
                self._log(f"refused a connection from uid {uid}")
                _answer_quietly(conn, 403, protocol.error_body("only the agent's user is served"))
                continue
            self._hand_over(conn)

    def _hand_over(self, conn: socket.socket) -> None:
        # Waits while every worker is busy (the listen queue holds the next clients), but
        # looks at the stop flag every second.
        while True:
            try:
                self._queue.put(conn, timeout=1.0)
                return
            except queue.Full:
                if self._stopping:
                    conn.close()
                    return

    def stop(self) -> None:
        """Stop serving (from any thread); the accept loop ends within a second."""
        self._stopping = True

    def close(self) -> None:
        """Remove the socket and release the path (idempotent)."""
        listener, self._listener = self._listener, None  # type: ignore[assignment]  # closed once
        if listener is None:
            return
        listener.close()
        try:
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self._lock_fd)

    def _work(self) -> None:
        while True:
            conn = self._queue.get()
            if conn is None:
                return
            try:
                self._serve(conn)
            except Exception as exc:  # noqa: BLE001 - a worker must outlive any one client
                _log.debug("agent: a connection failed: %s", type(exc).__name__)
            finally:
                conn.close()

    # -- one connection -----------------------------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(self.request_timeout)
        with conn.makefile("rb") as stream:
            try:
                method, target, headers, body = _read_request(stream)
            except _BadRequest as exc:
                _send(conn, exc.status, protocol.error_body(str(exc)))
                _drain(conn)
                return
            except (socket.timeout, OSError):
                return
        status, payload = self._route(method, target, headers, body)
        _send(conn, status, payload)

    def _route(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        if self._stopping:
            return 503, protocol.error_body("the agent is stopping")
        paths = {
            protocol.TOKEN_PATH: "GET",
            protocol.REJECTED_PATH: "POST",
            protocol.STATUS_PATH: "GET",
        }
        if target not in paths:
            return 404, protocol.error_body(f"no such path; this agent speaks v{protocol.VERSION}")
        if method != paths[target]:
            return 405, protocol.error_body(f"{target} takes {paths[target]}")
        provider = self.provider
        if target == protocol.STATUS_PATH:
            return 200, self._status()
        wanted = headers.get(protocol.BASE_URL_HEADER.lower())
        if wanted is not None and wanted != provider.base_url:
            return 421, protocol.error_body(
                f"this agent serves {provider.base_url}, not {wanted}: set MEMORAM_BASE_URL to "
                "it, or start an agent for that base URL",
                "configuration",
            )
        rejected = None
        if target == protocol.REJECTED_PATH:
            rejected = _rejected_token(body)
            if rejected is None:
                return 400, protocol.error_body(
                    'the body must be {"token": "<the rejected token>"}'
                )
        try:
            token = provider.get_token()
            if token.value == rejected:
                # Compare-and-invalidate: only the current token is dropped. A report of one
                # already replaced (N clients reporting one revocation) gets the replacement.
                provider.invalidate(rejected)
                token = provider.get_token()
        except MemoramAuthError as exc:
            status = getattr(exc, "status", None)
            return 502, protocol.error_body(str(exc), protocol.kind_of(exc), status)
        now = time.time()
        return 200, protocol.token_body(
            token, base_url=provider.base_url, key=provider.fingerprint, now=now
        )

    def _status(self) -> bytes:
        provider = self.provider
        token = provider.cached_token()
        now = time.time()
        shown = None
        if token is not None:
            shown = {
                "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(token.expires_at)),
                "expires_in": round(token.expires_at - now, 1),
                "lifetime": round(token.lifetime, 1),
            }
        return json.dumps(
            {
                "version": protocol.VERSION,
                "base_url": provider.base_url,
                "key": provider.fingerprint,
                "pid": os.getpid(),
                "socket": self.path,
                "token": shown,
            }
        ).encode()


def _rejected_token(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    token = data.get("token") if isinstance(data, dict) else None
    return token if isinstance(token, str) and 0 < len(token) <= protocol.MAX_BODY else None


def _read_request(stream: BinaryIO) -> tuple[str, str, dict[str, str], bytes]:
    """Method, target, headers (lower-case names) and body of one request, within the limits."""
    line = stream.readline(protocol.MAX_LINE + 1)
    if not line:
        raise OSError("closed")
    parts = line.rstrip(b"\r\n").split(b" ")
    if len(line) > protocol.MAX_LINE or len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise _BadRequest(400, "a malformed or oversized request line")
    try:
        method, target = parts[0].decode("ascii"), parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise _BadRequest(400, "a request line that is not ASCII") from None
    headers: dict[str, str] = {}
    for _ in range(protocol.MAX_HEADERS + 1):
        line = stream.readline(protocol.MAX_LINE + 1)
        if line in (b"\r\n", b"\n"):
            break
        name, colon, value = line.partition(b":")
        if not line or len(line) > protocol.MAX_LINE or not colon or not name.strip():
            raise _BadRequest(400, "a malformed or oversized header")
        try:
            headers[name.strip().lower().decode("ascii")] = value.strip().decode("ascii")
        except UnicodeDecodeError:
            raise _BadRequest(400, "a header that is not ASCII") from None
    else:
        raise _BadRequest(400, f"more than {protocol.MAX_HEADERS} headers")
    if "transfer-encoding" in headers:
        raise _BadRequest(400, "chunked bodies are not accepted; send Content-Length")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit() or int(length_text) > protocol.MAX_BODY:
        raise _BadRequest(400, f"a body must have a Content-Length of {protocol.MAX_BODY} at most")
    body = stream.read(int(length_text))
    if len(body) != int(length_text):
        raise _BadRequest(400, "the body is shorter than its Content-Length")
    return method, target.split("?", 1)[0], headers, body


def _send(conn: socket.socket, status: int, body: bytes) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    conn.sendall(head.encode("ascii") + body)


def _drain(conn: socket.socket) -> None:
    # Closing with unread input makes the kernel send a reset, which can destroy the 400 on
    # its way: say we are done, then read (a bounded amount, briefly) what the client sent.
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(0.2)
        for _ in range(16):
            if not conn.recv(65536):
                break
    except OSError:
        pass


def _answer_quietly(conn: socket.socket, status: int, body: bytes) -> None:
    try:
        conn.settimeout(0.05)
        _send(conn, status, body)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(4096)  # once, briefly: the accept loop must not wait on another user
    except OSError:
        pass
    finally:
        conn.close()
