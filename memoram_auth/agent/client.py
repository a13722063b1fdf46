"""The agent's client: tokens from ``memoram-auth agent`` over its socket, never from a key.

:class:`AgentProvider` stands where a :class:`memoram_auth.provider.TokenProvider` stands in
the adapters (same questions: ``fresh_authorization``, ``refresh_steps``, ``invalidate``, ...),
so requests, httpx, aiohttp, httpie and the command line use the agent with no code of their
own. It keeps the agent's token in memory for as long as the agent would, and asks again
after that; a 401 is reported to the agent by the next request for a token (``invalidate``
runs inside async flows, where no I/O may happen).

Failures are fast and name the agent and ``MEMORAM_AUTH_SOCK``: no agent behind the socket,
an agent that dies mid-answer or answers garbage is an error within :data:`CONNECT_TIMEOUT`
seconds; one that accepts the connection and then never answers, or trickles its answer, is
an error once the whole exchange has taken the retry policy's total timeout plus
:data:`CONNECT_TIMEOUT` (:data:`TOTAL_TIMEOUT` by default). Never a silent fallback to a key.
"""

from __future__ import annotations

import socket
import time

from .. import _log
from .._env import AUTH_SOCK_ENV
from ..exceptions import ConfigurationError, EndpointUnavailableError, MalformedResponseError
from ..token import MANDATORY, Token, freshness
from . import protocol

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from ..core.steps import Answer, AsyncSend, Step, Transport

__all__ = [
    "CONNECT_TIMEOUT",
    "STATUS_TIMEOUT",
    "TOTAL_TIMEOUT",
    "AgentProvider",
    "fetch",
    "request",
    "status",
]

#: Seconds to connect, and to wait for each further part of an answer once it has begun.
CONNECT_TIMEOUT = 2.0
#: Seconds one exchange with the agent may take in all, by default: the agent may be fetching
#: a token for everyone within its retry policy (``RetryPolicy().total_timeout``, 30 s, not
#: imported: the command line's path loads no ``typing``), plus the time to relay its error.
TOTAL_TIMEOUT = 30.0 + CONNECT_TIMEOUT
#: Seconds a status request may take in all: the agent answers it without a token request.
STATUS_TIMEOUT = 5.0


def describe(path: str) -> str:
    return f"the memoram-auth agent at {path} ({AUTH_SOCK_ENV})"


def request(
    path: str,
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    total_timeout: float = TOTAL_TIMEOUT,
) -> tuple[int, bytes]:
    """One HTTP/1.1 exchange with the agent at *path*: (status, body).

    Connecting, and each read once the answer has begun, may take :data:`CONNECT_TIMEOUT`
    seconds; the whole exchange *total_timeout* seconds, however the agent trickles it.

    Raises:
        EndpointUnavailableError: no agent there, or it closed, stalled or took too long.
        MalformedResponseError: an answer that is not HTTP or too large.
    """
    where = describe(path)
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    deadline = time.monotonic() + total_timeout
    chunks: list[bytes] = []
    size = 0
    checked = False  # whether the answer's first bytes were seen to be HTTP
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(min(CONNECT_TIMEOUT, total_timeout))
        try:
            sock.connect(path)
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            while size <= protocol.MAX_RESPONSE:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout
                # The first part may wait for the agent's own token request; later parts not.
                sock.settimeout(min(left, CONNECT_TIMEOUT) if chunks else left)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if not checked and size >= 7:
                    if not b"".join(chunks).startswith(b"HTTP/1."):
                        break  # garbage: said at once, without waiting for the rest of it
                    checked = True
        except FileNotFoundError:
            raise EndpointUnavailableError(f"no agent: {where} does not exist") from None
        except ConnectionRefusedError:
            raise EndpointUnavailableError(f"no agent is listening: {where}") from None
        except socket.timeout:
            what = "did not finish its answer" if chunks else "did not answer"
            raise EndpointUnavailableError(
                f"{where} {what} within {total_timeout:g} s: is it hung? Restart it, "
                "or unset MEMORAM_AUTH_SOCK to use a key"
            ) from None
        except OSError as exc:
            raise EndpointUnavailableError(f"{where}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    raw = b"".join(chunks)
    if size > protocol.MAX_RESPONSE:
        raise MalformedResponseError(f"{where} answered more than {protocol.MAX_RESPONSE} bytes")
    head, separator, payload = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if not raw:
        raise EndpointUnavailableError(f"{where} closed the connection without an answer")
    if not separator or len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
        raise MalformedResponseError(f"{where} did not answer HTTP")
    try:
        status = int(status_line[1])
    except ValueError:
        raise MalformedResponseError(f"{where} did not answer HTTP") from None
    return status, payload


def fetch(
    path: str, base_url: str, rejected: str | None = None, *, total_timeout: float = TOTAL_TIMEOUT
) -> tuple[Token, str]:
    """(token, key fingerprint) from the agent at *path* for *base_url*; with *rejected*, after
    reporting that token as rejected by the API. The command line's whole path.
    *total_timeout* bounds the exchange as in :func:`request`.

    Raises:
        MemoramAuthError: as :func:`request`; the agent's own errors with their type
            (``KeyRejectedError``, ...); ``ConfigurationError`` if it serves another base URL.
    """
    headers = {protocol.BASE_URL_HEADER: base_url}
    if rejected is None:
        status, body = request(
            path, "GET", protocol.TOKEN_PATH, b"", headers, total_timeout=total_timeout
        )
    else:
        import json

        payload = json.dumps({"token": rejected}).encode()
        status, body = request(
            path, "POST", protocol.REJECTED_PATH, payload, headers, total_timeout=total_timeout
        )
    return _token_from(path, status, body, base_url)


def status(path: str, *, total_timeout: float = STATUS_TIMEOUT) -> dict[str, object]:
    """The agent's ``GET /v1/status`` answer (see :mod:`memoram_auth.agent.protocol`).

    Raises:
        MemoramAuthError: as :func:`request`; ``MalformedResponseError`` for an answer that is
            not a status.
    """
    import json

    where = describe(path)
    code, body = request(path, "GET", protocol.STATUS_PATH, total_timeout=total_timeout)
    if code != 200:
        raise protocol.error_for(body, where)
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("base_url"), str):
        raise MalformedResponseError(f"{where} answered no status")
    return data


def _token_from(path: str, status: int, body: bytes, base_url: str) -> tuple[Token, str]:
    where = describe(path)
    if status != 200:
        raise protocol.error_for(body, where)
    try:
        token, served, key = protocol.parse_token(body, now=time.time())
    except ValueError as exc:
        raise MalformedResponseError(f"{where} answered no usable token ({exc})") from None
    if served != base_url:
        # The agent checks the header too; checked here as well, for an older or odd agent.
        raise ConfigurationError(f"{where} serves {served!r}, not {base_url!r}")
    return token, key


class _NoFlight:
    # Every caller asks the agent, which runs the single flight for all its clients; within
    # this process the fetch itself takes a thread lock (AgentProvider._fetch).
    done = False

    def succeed(self, token: Token) -> None:
        pass

    def outcome(self) -> Token:  # pragma: no cover - done is never true
        raise AssertionError("no shared outcome")

    async def __aenter__(self) -> _NoFlight:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass


class AgentProvider:
    """Tokens for *base_url* from the agent at *path*; thread- and task-safe.

    Answers the questions the adapters ask a :class:`memoram_auth.provider.TokenProvider`;
    ``transport`` and ``send`` arguments are accepted and unused (the agent sends the token
    requests). Construction does no I/O.

    Args:
        path: the agent's socket.
        base_url: the base URL the client calls; an agent serving another is an error.
        total_timeout: seconds one exchange with the agent may take in all (default
            :data:`TOTAL_TIMEOUT`; the adapters pass their retry policy's total timeout plus
            :data:`CONNECT_TIMEOUT`).
    """

    def __init__(self, path: str, base_url: str, *, total_timeout: float = TOTAL_TIMEOUT) -> None:
        import collections
        import threading

        self.path = path
        self.base_url = base_url
        self.total_timeout = total_timeout
        self._key: str | None = None
        # The core's holder, imported here: the command line's path (fetch) loads no core.
        from ..core.header import HeaderHolder

        #: The agent's token and its header: freshness is decided there, as for a provider.
        self.header = HeaderHolder()
        # The holder's own methods, not wrappers: the per-request path gains no call.
        self.fresh_authorization = self.header.fresh_authorization
        self.authorization_for = self.header.authorization_for
        self._lock = threading.Lock()
        self._rejected: collections.deque[str] = collections.deque(maxlen=8)
        self._unsent: str | None = None

    @property
    def fingerprint(self) -> str:
        """The key's fingerprint as the agent last named it, else ``agent``."""
        return self._key or "agent"

    def __repr__(self) -> str:
        return f"AgentProvider(path={self.path!r}, base_url={self.base_url!r})"

    #: ``fresh_authorization()``: ``Bearer <token>`` while the agent's token in memory is
    #: fresh, else ``None`` (one clock read).
    fresh_authorization: Callable[[], str | None]
    #: ``authorization_for(token)``: ``Bearer <token>``, built once per token.
    authorization_for: Callable[[Token], str]

    def authorization(
        self, transport: Transport | None = None, *, within: float | None = None
    ) -> str:
        header = self.fresh_authorization()
        return header if header is not None else self.authorization_for(self.get_token())

    def cached_authorization(self) -> str | None:
        """The agent's token in memory while fresh: asking the agent is a round trip."""
        return self.fresh_authorization()

    def get_token(
        self, transport: Transport | None = None, *, within: float | None = None
    ) -> Token:
        # The agent's own policy bounds its token request; the socket round trip has its own
        # timeouts (CONNECT_TIMEOUT, RESPONSE_TIMEOUT).
        return self._fetch()

    async def authorization_async(self, send: AsyncSend | None = None) -> str:
        header = self.fresh_authorization()
        if header is not None:
            return header
        return self.authorization_for(await self.get_token_async(send))

    async def get_token_async(self, send: AsyncSend | None = None) -> Token:
        import anyio.to_thread

        token: Token = await anyio.to_thread.run_sync(self.get_token)
        return token

    def single_flight(self) -> _NoFlight:
        return _NoFlight()

    def cached_token(self) -> Token | None:
        entry = self.header.entry
        return entry.token if entry is not None else None

    def refresh_steps(self, *, within: float | None = None) -> Generator[Step, Answer, Token]:
        """One blocking step: ask the agent (a thread-locked round trip on the socket)."""
        from ..core.steps import Blocking

        token: Token = yield Blocking(self._fetch)
        return token

    def _fetch(self) -> Token:
        with self._lock:
            fresh = self.header.fresh_token()
            if fresh is not None:
                return fresh  # another thread asked while this one waited
            rejected, self._unsent = self._unsent, None
            try:
                token, self._key = fetch(
                    self.path, self.base_url, rejected, total_timeout=self.total_timeout
                )
            except BaseException:
                if rejected is not None and self._unsent is None:
                    self._unsent = rejected  # told next time
                raise
            if token.value in self._rejected:
                raise MalformedResponseError(
                    f"{describe(self.path)} handed out a token the API rejected"
                )
            if freshness(token, time.time()) != MANDATORY:
                self.header.hold(token)
            _log.debug("a token from the agent at %s, valid %.0f s", self.path, token.remaining())
            return token

    def invalidate(self, token: str) -> None:
        """The API rejected *token* (401): forget it; the next fetch tells the agent."""
        self._rejected.append(token)
        entry = self.header.entry
        if entry is not None and entry.token.value == token:
            self.header.drop()
        self._unsent = token
