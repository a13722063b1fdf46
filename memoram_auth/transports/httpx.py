"""Token requests for the httpx adapter: through the user's own client, or, when MemoramAuth was
given explicit network settings, through an httpx client built with them.

Through the user's client, the auth flow *yields* each token request (httpx's documented
pattern for auth that needs its own requests), so the client's ``verify``, ``cert``, proxies,
mounts, transport, ``trust_env`` and mocks (respx, pytest-httpx) apply to it as they do to the
user's request. The price, documented in docs/guides/requests-httpx.md: a connection failure
of the token request is raised by the client as its own httpx exception, as the user's request
would be, instead of being retried.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from ..core.exchange import REDIRECT_STATUSES, redirect_refused
from ..exceptions import ConfigurationError
from ..transport import (
    MAX_BODY,
    NetworkSettings,
    RawResponse,
    SharedTransports,
    TokenRequest,
    TransportError,
    ssl_context,
    tls_failure_in,
)

__all__ = [
    "HTTPX_FLOOR",
    "HttpxTransport",
    "as_httpx_request",
    "as_raw_response",
    "check_httpx_version",
    "httpx_transport",
]

#: The oldest httpx this package works with, as ``pyproject.toml`` declares it: ``proxy=`` and
#: the client options used here came in 0.26.
HTTPX_FLOOR = (0, 26)


def check_httpx_version(version: str | None = None) -> None:
    """Refuse an httpx older than :data:`HTTPX_FLOOR` (*version*: the installed one's).

    pip does not install one, but an environment built with ``--no-deps`` or another package
    manager can hold one; its clients then fail with a ``TypeError`` about ``proxy=``, which
    says nothing about the version.

    Raises:
        ConfigurationError: naming the version found and the floor.
    """
    found = httpx.__version__ if version is None else version
    parts: list[int] = []
    for part in found.split(".")[:2]:
        digits = "".join(char for char in part if char.isdigit())
        parts.append(int(digits) if digits else 0)
    if tuple(parts) < HTTPX_FLOOR:
        floor = ".".join(map(str, HTTPX_FLOOR))
        raise ConfigurationError(
            f"memoram-auth needs httpx {floor} or later, and httpx {found} is installed: "
            f"pip install 'httpx>={floor}'"
        )


class _OneHop:
    """httpcore's ``trace`` extension on a token request: it refuses, before anything is sent,
    what the user's client would otherwise do with it.

    httpx follows redirects inside ``Client.send``, before an auth flow sees the answer, and a
    client's ``follow_redirects=True`` applies to the requests a flow yields too; the redirected
    request carries the token request's extensions. So the refusal is made where httpcore
    reports the answer's head (``receive_response_headers.complete``): a redirect ends the
    token request there, and httpx never builds the next one. A plain-http (loopback) token
    URL is sent to nothing but its own host: never through a proxy, which would read the key
    in the body.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = httpx.URL(url)
        # Plain http: a base URL allows it for loopback hosts only.
        self.host = parsed.raw_host if parsed.scheme == "http" else None
        self.port = parsed.port or 80
        self._method = b""

    def check(self, name: str, info: dict[str, Any]) -> None:
        # "http11.send_request_headers.started": library, event, stage.
        event, _, stage = name.partition(".")[2].rpartition(".")
        if stage == "started" and event == "send_request_headers":
            request = info.get("request")
            self._method = bytes(getattr(request, "method", b""))
            if self.host is not None and _proxied(request, self.host, self.port):
                raise ConfigurationError(
                    f"the token request to {self.url} would go through the client's proxy: a "
                    "plain-http (loopback) base URL never does, as the proxy would read the API "
                    "key; add the host to NO_PROXY, or give the client no proxy for http://"
                )
        elif stage == "complete" and event == "receive_response_headers":
            if self._method == b"CONNECT":  # a proxy's tunnel, not the answer
                return
            status, headers = _status_and_headers(info.get("return_value"))
            if status in REDIRECT_STATUSES:
                location = next(
                    (value for key, value in headers if key.lower() == b"location"), None
                )
                raise redirect_refused(
                    self.url,
                    status,
                    None if location is None else location.decode("latin-1"),
                )

    def __call__(self, name: str, info: dict[str, Any]) -> None:
        self.check(name, info)

    async def asynchronous(self, name: str, info: dict[str, Any]) -> None:
        self.check(name, info)


def _proxied(request: object, host: bytes, port: int) -> bool:
    # httpcore's request as it goes on the wire: to a proxy, it is addressed to the proxy's
    # host and port, with the absolute URL as its target.
    url = getattr(request, "url", None)
    if url is None:
        return False
    target = bytes(getattr(url, "target", b"/"))
    return (
        not target.startswith(b"/")
        or bytes(getattr(url, "host", b"")) != host
        or (getattr(url, "port", None) or 80) != port
    )


def _status_and_headers(value: object) -> tuple[int, list[tuple[bytes, bytes]]]:
    # HTTP/1.1 reports (version, status, reason, headers), HTTP/2 (status, headers).
    parts = value if isinstance(value, tuple) else ()
    status = next((part for part in parts if isinstance(part, int)), 0)
    headers = next((part for part in parts if isinstance(part, list)), [])
    return status, headers


def _timeouts(step: TokenRequest, caller: object) -> dict[str, float | None]:
    """The attempt's timeout, lowered to the caller's own for the call where it is lower: the
    token request never waits longer than the caller allowed the request it serves."""
    bound = max(0.001, min(step.timeout, step.deadline - time.monotonic()))
    given = caller if isinstance(caller, dict) else {}
    timeouts: dict[str, float | None] = {}
    for kind in ("connect", "read", "write", "pool"):
        theirs = given.get(kind)
        timeouts[kind] = min(bound, theirs) if isinstance(theirs, (int, float)) else bound
    return timeouts


def as_httpx_request(
    step: TokenRequest, *, asynchronous: bool = False, caller_timeout: object = None
) -> httpx.Request:
    """The token request as an httpx request: its timeout per request (as httpx allows, and no
    longer than *caller_timeout*, the ``timeout`` extension of the user's request), and the
    trace that refuses redirects and proxies for loopback (:class:`_OneHop`)."""
    hop = _OneHop(step.url)
    return httpx.Request(
        "POST",
        step.url,
        headers=step.headers,
        content=step.body,
        extensions={
            "timeout": _timeouts(step, caller_timeout),
            "trace": hop.asynchronous if asynchronous else hop,
        },
    )


class _Bounded(httpx.SyncByteStream, httpx.AsyncByteStream):
    """An answer's body, read up to :data:`MAX_BODY` bytes and no longer than the deadline.

    It ends the body early rather than raising: httpx reads a token response again after the
    auth flow (``Response.read``), which must find the bytes read here, not a half-read stream.
    """

    def __init__(
        self, stream: httpx.SyncByteStream | httpx.AsyncByteStream, deadline: float
    ) -> None:
        self._stream = stream
        self._deadline = deadline
        self.expired = False

    def _take(self, size: int, chunk: bytes) -> bytes | None:
        if size >= MAX_BODY:
            return None
        if time.monotonic() > self._deadline:
            self.expired = True
            return None
        return chunk[: MAX_BODY - size]

    def __iter__(self) -> Iterator[bytes]:
        size = 0
        for chunk in self._stream:  # type: ignore[union-attr]  # a sync client's stream
            taken = self._take(size, chunk)
            if taken is None:
                return
            size += len(taken)
            yield taken

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self._stream:  # type: ignore[union-attr]  # an async client's stream
            taken = self._take(size, chunk)
            if taken is None:
                return
            size += len(taken)
            yield taken

    def close(self) -> None:
        self._stream.close()  # type: ignore[union-attr]  # a sync client's stream

    async def aclose(self) -> None:
        await self._stream.aclose()  # type: ignore[union-attr]  # an async client's stream


def _too_large(response: httpx.Response) -> bool:
    length = response.headers.get("Content-Length", "")
    return length.isdigit() and int(length) > MAX_BODY


def as_raw_response(response: httpx.Response) -> RawResponse:
    """A read httpx response, as the exchange judges it."""
    return RawResponse(response.status_code, response.headers.multi_items(), response.content)


def _followed(response: httpx.Response, url: str) -> None:
    # A client whose transport reports no trace (a mock) followed a redirect: the answer is
    # for another request than the token request, whatever it says. (Its history also holds
    # the flow's earlier answers, which are no redirects.)
    request = response.request
    if request.method != "POST" or request.url != httpx.URL(url):
        hop = next((hop for hop in reversed(response.history) if hop.has_redirect_location), None)
        status = response.status_code if hop is None else hop.status_code
        raise redirect_refused(url, status, None if hop is None else hop.headers["Location"])


def _bound(response: httpx.Response, deadline: float) -> _Bounded | None:
    if _too_large(response):
        return None
    bounded = _Bounded(response.stream, deadline)
    # Response.stream is the public attribute httpx reads the body from.
    response.stream = bounded
    return bounded


def _checked(response: httpx.Response, bounded: _Bounded) -> RawResponse:
    if bounded.expired:
        raise TransportError("no complete answer before the deadline")
    return as_raw_response(response)


def read_answer(response: httpx.Response, step: TokenRequest) -> RawResponse:
    """Read the token response in the sync flow (httpx reads it again after the flow: the body
    must be read with ``read()``, not iterated), bounded in size and time, and convert it.

    Raises:
        MalformedResponseError: the client followed a redirect (a mock's transport).
        TransportError: the deadline passed while reading.
    """
    _followed(response, step.url)
    bounded = _bound(response, step.deadline)
    if bounded is None:
        response.close()
        return RawResponse(response.status_code, response.headers.multi_items(), b"")
    response.read()
    return _checked(response, bounded)


async def aread_answer(response: httpx.Response, step: TokenRequest) -> RawResponse:
    """:func:`read_answer` for the async flow."""
    _followed(response, step.url)
    bounded = _bound(response, step.deadline)
    if bounded is None:
        await response.aclose()
        return RawResponse(response.status_code, response.headers.multi_items(), b"")
    await response.aread()
    return _checked(response, bounded)


def _client_options(settings: NetworkSettings) -> dict[str, Any]:
    check_httpx_version()
    options: dict[str, Any] = {"trust_env": settings.trust_env, "follow_redirects": False}
    if settings.verify is False:
        options["verify"] = False
    elif settings.verify is not None or settings.cert is not None:
        # One SSLContext for trust and client certificate: httpx 0.28 deprecates the others.
        options["verify"] = ssl_context(settings)
    if settings.proxy is not None:
        options["proxy"] = settings.proxy
    # Plain http (a base URL allows it for loopback only) never goes through a proxy, given or
    # from the environment: the API key travels in the body, readable by the proxy. A mount
    # without a transport is the client's own direct one.
    options["mounts"] = {"http://": None}
    return options


def _transport_error(exc: httpx.TransportError, url: str) -> TransportError:
    host = httpx.URL(url).host
    port = httpx.URL(url).port or (443 if url.startswith("https:") else 80)
    final = tls_failure_in(exc, host, port)
    if final is not None:
        return final
    if isinstance(exc, httpx.TimeoutException):
        return TransportError(f"no answer within the timeout ({type(exc).__name__})")
    return TransportError(f"cannot connect: {type(exc).__name__}: {exc}")


class HttpxTransport:
    """A sync :class:`~memoram_auth.transport.Transport` on an httpx client with *settings*."""

    def __init__(self, settings: NetworkSettings) -> None:
        self.settings = settings
        self._client = httpx.Client(**_client_options(settings))
        self._lock = threading.Lock()

    def __call__(self, request: TokenRequest) -> RawResponse:
        with self._lock:
            try:
                response = self._client.send(as_httpx_request(request), stream=True)
            except ImportError as exc:  # a SOCKS proxy without httpx[socks]
                raise TransportError(f"{exc}", retry=False) from exc
            except httpx.TransportError as exc:
                raise _transport_error(exc, request.url) from exc
            try:
                return read_answer(response, request)
            except httpx.TransportError as exc:
                raise _transport_error(exc, request.url) from exc
            finally:
                response.close()

    async def send_async(self, request: TokenRequest) -> RawResponse:
        """Send on the running loop with a client of its own (refreshes are rare)."""
        try:
            async with httpx.AsyncClient(**_client_options(self.settings)) as client:
                response = await client.send(
                    as_httpx_request(request, asynchronous=True), stream=True
                )
                try:
                    return await aread_answer(response, request)
                finally:
                    await response.aclose()
        except ImportError as exc:
            raise TransportError(f"{exc}", retry=False) from exc
        except httpx.TransportError as exc:
            raise _transport_error(exc, request.url) from exc


#: One per network settings (see SharedTransports).
_transports: SharedTransports[HttpxTransport] = SharedTransports(
    HttpxTransport, lambda transport: transport._client.close()
)


def httpx_transport(settings: NetworkSettings) -> HttpxTransport:
    """One transport per network settings, shared."""
    return _transports.get(settings)
