"""Token requests sent with requests: what the requests adapter (and so httpie) uses.

Sent through a ``requests.Session``, the token request gets what the user's own requests get:
``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, ``HTTPS_PROXY``/``NO_PROXY`` matched by requests
itself, SOCKS proxies when ``requests[socks]`` is installed, and the mocks of ``responses`` and
``requests-mock``, which patch requests' adapter. Explicit settings (``verify=``, ``cert=``,
``proxy=``) are the session's.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import requests
import requests.adapters

from ..transport import (
    CA_HINT,
    MAX_BODY,
    NetworkSettings,
    RawResponse,
    SharedTransports,
    TokenRequest,
    TransportError,
    tls_failure_in,
)

__all__ = ["AdapterTransport", "RequestsTransport", "requests_transport"]


@functools.lru_cache(maxsize=16)
def _quiet(connection_class: type[Any]) -> type[Any]:
    """*connection_class* with ``debuglevel`` 0: http.client prints every request body, API
    key included, while the class-wide ``HTTPConnection.debuglevel`` is set (a common
    debugging step), never for the token request.

    Made when a pool is first used, from the connection class the pool's class has then:
    urllib3's own, or the stand-in a recorder such as vcrpy puts there while a cassette plays,
    whichever was imported first.
    """
    return type(f"Quiet{connection_class.__name__}", (connection_class,), {"debuglevel": 0})


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter with quiet connections and, if given, an ``ssl.SSLContext`` for
    verification (the documented ``init_poolmanager`` override)."""

    def __init__(self, context: Any = None) -> None:  # noqa: ANN401 - an ssl.SSLContext
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - urllib3's
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        # Through a cast: the stubs type this method only from types-requests 2.33, which
        # needs Python 3.10; mypy on 3.9 sees an untyped call.
        cast("Callable[..., None]", super().init_poolmanager)(*args, **kwargs)

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - urllib3's
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        return cast("Callable[..., Any]", super().proxy_manager_for)(*args, **kwargs)

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - requests' (2.32.2+)
        pool = cast("Callable[..., Any]", super().get_connection_with_tls_context)(*args, **kwargs)
        # On the pool, from its class's connection class as it is now (see _quiet); SOCKS
        # pools included.
        pool.ConnectionCls = _quiet(type(pool).ConnectionCls)
        return pool


#: Per-request proxies that override the session's and the environment's with none.
_NO_PROXY = {"http": None, "https": None, "all": None}


def _wrapped(error: BaseException) -> list[object]:
    # requests and urllib3 nest errors in args and in urllib3's ``reason``.
    return [getattr(error, "reason", None), *error.args]


def _unauthenticated(request: requests.PreparedRequest) -> requests.PreparedRequest:
    # The token endpoint takes the key in the body and nothing else: no Authorization from
    # the session's auth (MemoramAuth itself, or Basic credentials) nor from ~/.netrc.
    request.headers.pop("Authorization", None)
    return request


def _as_is(response: requests.Response, **kwargs: Any) -> requests.Response:  # noqa: ANN401 - requests passes the send() arguments
    return response


class RequestsTransport:
    """A :class:`~memoram_auth.transport.Transport` on a ``requests.Session``: one of its own,
    or the user's *session* (``MemoramAuth(session=…)``), whose ``verify``, ``cert``,
    ``proxies``, ``trust_env`` and mounted adapters (mocks, retries, a source address) then
    apply; not its ``auth`` nor its response hooks, which are for the API's requests.
    """

    def __init__(self, settings: NetworkSettings, session: requests.Session | None = None) -> None:
        self.settings = settings
        # Given per request, where requests ranks them above the environment (on the session,
        # REQUESTS_CA_BUNDLE and HTTPS_PROXY would win over them).
        self._options: dict[str, Any] = {}
        verify = settings.verify
        context = verify if verify is not None and not isinstance(verify, (bool, str)) else None
        if session is None:
            session = requests.Session()
            session.trust_env = settings.trust_env
            session.mount("https://", _Adapter(context))
            session.mount("http://", _Adapter())
        else:
            # Per request: the session's auth and response hooks are replaced, not merged.
            self._options["auth"] = _unauthenticated
            self._options["hooks"] = {"response": [_as_is]}
            if context is not None:
                raise TypeError(
                    "verify= as an ssl.SSLContext cannot go with session=: mount an adapter "
                    "with that context on the session instead"
                )
        if verify is not None and context is None:
            self._options["verify"] = verify
        if settings.cert is not None:
            self._options["cert"] = settings.cert
        if settings.proxy is not None:
            self._options["proxies"] = {"http": settings.proxy, "https": settings.proxy}
        self._session = session
        self._lock = threading.Lock()  # a Session is not documented as thread-safe

    def __repr__(self) -> str:
        return f"RequestsTransport({self.settings!r})"

    def __call__(self, request: TokenRequest) -> RawResponse:
        options = self._options
        if request.url.startswith("http:"):
            # Plain http (loopback only) never goes through a proxy, which would read the key:
            # a None here overrides the session's and the environment's proxies.
            options = {**options, "proxies": _NO_PROXY}

        def post(timeout: float) -> requests.Response:
            return self._session.post(
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=timeout,
                # A redirect of the token POST would resend the key wherever it points.
                allow_redirects=False,
                stream=True,
                **options,
            )

        with self._lock:
            return _exchange(request, post)


class AdapterTransport:
    """A :class:`~memoram_auth.transport.Transport` that sends through one requests adapter
    with the arguments a ``Session.send`` gave it (``verify``, ``cert``, ``proxies``,
    ``timeout``): how httpie's token request gets ``--verify``, ``--cert``, ``--proxy`` and
    ``--timeout``, which httpie hands its plugins nowhere else. An adapter follows no
    redirect; the timeout given caps the attempt's.
    """

    def __init__(self, adapter: requests.adapters.BaseAdapter, send_kwargs: dict[str, Any]) -> None:
        self._adapter = adapter
        self._kwargs = {
            name: send_kwargs[name] for name in ("verify", "cert", "proxies") if name in send_kwargs
        }
        given = send_kwargs.get("timeout")
        self._cap = given if isinstance(given, (int, float)) else None

    def __call__(self, request: TokenRequest) -> RawResponse:
        kwargs = dict(self._kwargs)
        if request.url.startswith("http:"):
            kwargs["proxies"] = {}  # plain http (loopback only) never goes through a proxy
        prepared = requests.Request(
            "POST", request.url, headers=request.headers, data=request.body
        ).prepare()

        def send(timeout: float) -> requests.Response:
            if self._cap is not None:
                timeout = min(timeout, self._cap)
            return self._adapter.send(prepared, stream=True, timeout=timeout, **kwargs)

        return _exchange(request, send)


def _exchange(request: TokenRequest, send: Callable[[float], requests.Response]) -> RawResponse:
    """Send with ``send(timeout)`` and read the answer within the deadline, 64 KiB at most."""
    remaining = request.deadline - time.monotonic()
    if remaining <= 0:
        raise TransportError("no time left for another attempt")
    timeout = max(0.001, min(request.timeout, remaining))
    host = request.url.split("/", 3)[2]
    try:
        response = send(timeout)
    except requests.exceptions.InvalidSchema as exc:
        # "Missing dependencies for SOCKS support": a SOCKS proxy without PySocks.
        raise TransportError(
            f"{exc}; install requests[socks] for SOCKS proxies", retry=False
        ) from exc
    except requests.exceptions.Timeout as exc:
        raise TransportError(f"no answer within {timeout:g} s") from exc
    except requests.exceptions.RequestException as exc:
        raise _transport_error(exc, host) from exc
    try:
        return RawResponse(
            response.status_code, response.headers.items(), _read(response, request.deadline)
        )
    finally:
        response.close()


def _read(response: requests.Response, deadline: float) -> bytes:
    # Read up to MAX_BODY, and no longer than the deadline: a watchdog shuts the socket down
    # when it passes, which ends a read that a trickling server keeps alive byte by byte.
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)

    def abort() -> None:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), abort)
    watchdog.daemon = True
    watchdog.start()
    chunks: list[bytes] = []
    size = 0
    # Without a socket to shut down (http.client lets go of it as soon as the answer says
    # "Connection: close"; a recorder's stand-in has none), reads of one byte: each returns as
    # soon as a byte comes, so the deadline is looked at between bytes that trickle in.
    pieces = response.iter_content(chunk_size=4096 if sock is not None else 1)
    try:
        for chunk in pieces:
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_BODY or time.monotonic() > deadline:
                break
    except (requests.exceptions.RequestException, OSError) as exc:
        raise TransportError(f"the answer was cut off: {type(exc).__name__}") from exc
    finally:
        watchdog.cancel()
    if time.monotonic() > deadline:
        raise TransportError("no complete answer before the deadline")
    return b"".join(chunks)[:MAX_BODY]


def _transport_error(exc: requests.exceptions.RequestException, host: str) -> TransportError:
    hostname, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    final = tls_failure_in(
        exc, hostname or host, int(port) if port.isdigit() else 443, wrapped=_wrapped
    )
    if final is not None:
        return final
    if isinstance(exc, requests.exceptions.SSLError):
        return TransportError(f"TLS failed with {host}: {exc}; {CA_HINT}", retry=False)
    if isinstance(exc, requests.exceptions.ProxyError):
        return TransportError(f"the proxy failed: {type(exc).__name__}")
    return TransportError(f"cannot connect: {type(exc).__name__}: {exc}")


#: One per network settings (see SharedTransports).
_transports: SharedTransports[RequestsTransport] = SharedTransports(
    RequestsTransport, lambda transport: transport._session.close()
)


def requests_transport(settings: NetworkSettings) -> RequestsTransport:
    """One transport (one session, one connection pool) per network settings, shared."""
    return _transports.get(settings)
