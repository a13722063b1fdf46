"""How a token request travels: the network settings, and the light stdlib transport that the
command line and the plain provider use. The request and answer types (``TokenRequest``,
``RawResponse``, ``TransportError``) are the core's, re-exported here.

Adapters send token requests with the user's own HTTP library instead (requests, httpx,
aiohttp: ``memoram_auth/transports/``), so that the user's TLS trust, client certificate,
proxies and mocks apply; see ``memoram_auth/core/steps.py``.
This module imports no HTTP library, and nothing heavier than ``ssl`` until a request is sent.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Callable, Generic, TypeVar, Union

# The token request's value types are the core's (sans-I/O); this module sends them.
from .core.steps import RawResponse, TokenRequest, Transport, TransportError

if TYPE_CHECKING:
    import http.client
    import ssl

__all__ = [
    "MAX_BODY",
    "NetworkSettings",
    "RawResponse",
    "SharedTransports",
    "TokenRequest",
    "Transport",
    "TransportError",
    "UrllibTransport",
    "ca_bundle_from_environment",
    "describe_tls_failure",
    "no_proxy_matches",
    "ssl_context",
    "tls_failure_in",
]

#: A token answer is a few hundred bytes; anything past this is a proxy's page, not a token.
MAX_BODY = 64 * 1024

#: ``verify=``: True (the system's CAs), False (no verification: tests only), a CA bundle file
#: or directory, or a ready ``ssl.SSLContext``; as requests and httpx read it.
Verify = Union[bool, str, "os.PathLike[str]", "ssl.SSLContext"]
#: ``cert=``: a PEM file with certificate and key, or (certificate, key) files.
Cert = Union[str, "os.PathLike[str]", tuple[str, str]]

_PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")


#: What a certificate failure tells the user to do.
CA_HINT = (
    "if a corporate proxy or a private CA signs it, give its CA bundle with verify= "
    "(MemoramAuth, get_provider), --ca-bundle or MEMORAM_AUTH_CA_BUNDLE (the command line), "
    "REQUESTS_CA_BUNDLE (requests and httpie), or SSL_CERT_FILE"
)


class NetworkSettings:
    """TLS trust, client certificate and proxy for token requests, as requests/httpx read them.

    ``None`` leaves a setting to the HTTP library that sends the request, and through it to the
    environment when ``trust_env`` is true: ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` and
    ``HTTPS_PROXY``/``NO_PROXY`` for requests and the stdlib transport, the client's own
    settings for httpx.

    Raises:
        TypeError: a setting of the wrong type.
        ValueError: a proxy that is not an absolute http(s) or socks URL.
    """

    __slots__ = ("cert", "proxy", "trust_env", "verify")

    def __init__(
        self,
        *,
        verify: Verify | None = None,
        cert: Cert | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
    ) -> None:
        if verify is not None and not isinstance(verify, (bool, str, os.PathLike)):
            import ssl

            if not isinstance(verify, ssl.SSLContext):
                raise TypeError(
                    "verify= must be True, False, a CA bundle path or an ssl.SSLContext, "
                    f"not {type(verify).__name__}"
                )
        if isinstance(verify, os.PathLike):
            verify = os.fspath(verify)
        if cert is not None:
            parts = cert if isinstance(cert, tuple) else (cert,)
            if not 1 <= len(parts) <= 2 or not all(
                isinstance(p, (str, os.PathLike)) for p in parts
            ):
                raise TypeError(
                    "cert= must be a PEM file path or a (certificate, key) pair of paths"
                )
            paths = [os.fspath(p) for p in parts]
            cert = (paths[0], paths[1]) if len(paths) == 2 else paths[0]
        if proxy is not None:
            if not isinstance(proxy, str):
                raise TypeError(f"proxy= must be a URL string, not {type(proxy).__name__}")
            scheme, separator, rest = proxy.partition("://")
            if not separator or scheme.lower() not in _PROXY_SCHEMES or not rest.strip("/"):
                # The value is not echoed: a proxy URL may carry a password.
                raise ValueError(
                    "proxy= must be an absolute URL such as http://proxy.example:3128 "
                    f"(schemes: {', '.join(_PROXY_SCHEMES)})"
                )
        self.verify: Verify | None = verify
        self.cert: str | tuple[str, str] | None = cert
        self.proxy = proxy
        self.trust_env = bool(trust_env)

    @property
    def explicit(self) -> bool:
        """True if any of verify, cert or proxy was given."""
        return self.verify is not None or self.cert is not None or self.proxy is not None

    def key(self) -> tuple[object, ...]:
        """Equal keys, equal settings: for sharing one provider per settings."""
        verify = self.verify
        return (
            id(verify) if not isinstance(verify, (bool, str, type(None))) else verify,
            self.cert,
            self.proxy,
            self.trust_env,
        )

    def __repr__(self) -> str:
        proxy = "set" if self.proxy else None  # a proxy URL may carry a password
        return f"NetworkSettings(verify={self.verify!r}, cert={self.cert!r}, proxy={proxy})"


def ca_bundle_from_environment() -> str | None:
    """``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``: what requests (and curl) trust."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def no_proxy_matches(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` exempts *host* (*port*: the URL's explicit port, if any), matched
    exactly as requests matches it (``requests.utils.should_bypass_proxies``), so that the
    command line and requests agree: for an IPv4 host, CIDR ranges and equal addresses; for a
    name, the name or ``host:port`` itself or a parent domain of it; then the standard
    library's own rules (``*``, IPv6 literals).
    """
    host = host.lower()
    entries = [entry for entry in no_proxy.replace(" ", "").split(",") if entry]
    if _is_ipv4(host):
        for entry in entries:
            if "/" in entry:
                import ipaddress

                try:
                    if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    continue
            elif host == entry:
                return True
    else:
        with_port = f"{host}:{port}" if port else host
        for entry in entries:
            entry = entry.lstrip(".")
            if host == entry or with_port == entry:
                return True
            if host.endswith("." + entry) or with_port.endswith("." + entry):
                return True
    import urllib.request

    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # untyped, public
    return bool(bypass(host, {"no": no_proxy}))


def _is_ipv4(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


def _environment_proxy(scheme: str, host: str, port: int | None) -> str | None:
    def get(name: str) -> str:
        return os.environ.get(name) or os.environ.get(name.upper()) or ""

    if no_proxy_matches(host, port, get("no_proxy")):
        return None
    return get(f"{scheme}_proxy") or get("all_proxy") or None


def ssl_context(settings: NetworkSettings) -> ssl.SSLContext:
    import ssl

    verify = settings.verify
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        bundle = verify if isinstance(verify, str) else None
        if bundle is None and settings.trust_env:
            bundle = ca_bundle_from_environment()
        if bundle is not None and os.path.isdir(bundle):
            context = ssl.create_default_context(capath=bundle)
        else:
            context = ssl.create_default_context(cafile=bundle)
    if settings.cert is not None:
        certfile, keyfile = (
            settings.cert if isinstance(settings.cert, tuple) else (settings.cert, None)
        )
        context.load_cert_chain(certfile, keyfile)
    return context


def _split(url: str) -> tuple[str, str, int, str]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return scheme, parts.hostname or "", port, target


def describe_tls_failure(exc: BaseException, host: str, port: int) -> TransportError | None:
    """A clear, final TransportError for TLS failures that a retry cannot heal, else None."""
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or "failed"
        return TransportError(
            f"the certificate of {host}:{port} did not verify ({reason}); {CA_HINT}",
            retry=False,
        )
    text = str(exc)
    if isinstance(exc, ssl.SSLError) and any(
        sign in text
        for sign in (
            "WRONG_VERSION_NUMBER",
            "record layer failure",
            "PACKET_LENGTH_TOO_LONG",
            "HTTP_REQUEST",
            "wrong version number",
            "packet length too long",
        )
    ):
        return TransportError(
            f"{host}:{port} did not answer TLS: it looks like a plain-http server. Use http:// "
            "in the base URL if it really is one (loopback only), or check the port",
            retry=False,
        )
    if isinstance(exc, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in text:
        return TransportError(
            f"the certificate of {host}:{port} did not verify; {CA_HINT}", retry=False
        )
    return None


def tls_failure_in(
    exc: BaseException,
    host: str,
    port: int,
    *,
    wrapped: Callable[[BaseException], Iterable[object]] = lambda _: (),
    judged: Callable[[BaseException], bool] = lambda _: True,
) -> TransportError | None:
    """:func:`describe_tls_failure` for the first error in *exc*'s chain that it recognises.

    HTTP libraries nest the ``ssl`` error: the chain is *exc*, its ``__cause__`` and
    ``__context__``, and whatever the library's ``wrapped(error)`` names (urllib3's
    ``reason``, aiohttp's ``os_error``), each followed in turn. Errors for which ``judged``
    is false are followed but not judged themselves.
    """
    seen: list[BaseException] = []
    pending: list[object] = [exc]
    while pending and len(seen) < 20:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or any(current is s for s in seen):
            continue
        seen.append(current)
        if judged(current):
            final = describe_tls_failure(current, host, port)
            if final is not None:
                return final
        pending += [current.__cause__, current.__context__, *wrapped(current)]
    return None


class UrllibTransport:
    """The stdlib transport: ``http.client`` with the given settings, an enforced deadline,
    no redirects (a redirect would carry the key elsewhere) and no debug printing.

    Proxies, for https token URLs only (plain http, loopback, always goes direct): ``http://``
    proxies (a CONNECT tunnel), from the settings or, with ``trust_env``,
    ``HTTPS_PROXY``/``ALL_PROXY`` and ``NO_PROXY`` matched as requests matches them. SOCKS and
    https:// proxies fail at once with a clear message.
    """

    def __init__(self, settings: NetworkSettings | None = None) -> None:
        self.settings = settings or NetworkSettings()
        self._context: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        return f"UrllibTransport({self.settings!r})"

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl_context(self.settings)
        return self._context

    def _proxy(self, url: str) -> tuple[str, int, str | None] | None:
        from urllib.parse import urlsplit

        target = urlsplit(url)
        # Plain http (loopback only) never goes through a proxy, which would read the key; a
        # proxy given that this transport cannot use is still refused at once.
        plain = target.scheme.lower() == "http"
        proxy = self.settings.proxy
        if proxy is None and self.settings.trust_env and not plain:
            proxy = _environment_proxy(target.scheme, target.hostname or "", target.port)
        if not proxy:
            return None
        from urllib.parse import unquote

        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        kind = parts.scheme.lower()
        if kind != "http":
            raise TransportError(
                f"the command line's token request cannot use a {kind}:// proxy; use an "
                "http:// proxy (MEMORAM_AUTH_PROXY or HTTPS_PROXY), or get the token through "
                "requests or httpx, whose SOCKS extras support it",
                retry=False,
            )
        if plain:
            return None
        credentials = None
        if parts.username is not None:
            import base64

            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            credentials = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
        return parts.hostname or "", parts.port or 80, credentials

    def _connection(self, request: TokenRequest) -> tuple[http.client.HTTPConnection, str]:
        import http.client

        scheme, host, port, target = _split(request.url)
        timeout = max(0.001, request.timeout)
        via = self._proxy(request.url)
        connection: http.client.HTTPConnection
        if via is None:
            if scheme == "https":
                connection = http.client.HTTPSConnection(
                    host, port, timeout=timeout, context=self._tls()
                )
            else:
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
        else:
            proxy_host, proxy_port, credentials = via
            headers = {"Proxy-Authorization": credentials} if credentials else None
            if scheme == "https":
                connection = http.client.HTTPSConnection(
                    proxy_host, proxy_port, timeout=timeout, context=self._tls()
                )
                connection.set_tunnel(host, port, headers=headers)
            else:
                connection = http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout)
                target = request.url  # absolute form through a plain proxy
                if credentials:
                    request.headers = {**request.headers, "Proxy-Authorization": credentials}
        # http.client.HTTPConnection.debuglevel set globally (a common debugging step) would
        # print the request body, API key included: this connection never prints.
        connection.set_debuglevel(0)
        return connection, target

    def __call__(self, request: TokenRequest) -> RawResponse:
        import http.client
        import socket
        import threading
        import time

        _scheme, host, port, _ = _split(request.url)
        try:
            connection, target = self._connection(request)
        except OSError as exc:  # a CA bundle or client certificate that cannot be read
            raise TransportError(
                f"cannot set up TLS for the token request: {exc.strerror or exc}", retry=False
            ) from exc
        remaining = request.deadline - time.monotonic()
        if remaining <= 0:
            raise TransportError("no time left for another attempt")
        expired = threading.Event()

        def abort() -> None:
            # Reads are bounded one by one by the timeout; a server that trickles its answer
            # is cut off here, so the whole attempt ends by the deadline.
            expired.set()
            sock = connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(remaining, abort)
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.request("POST", target, body=request.body, headers=request.headers)
            response = connection.getresponse()
            body = response.read(MAX_BODY)
            if expired.is_set():  # cut off mid-answer by the watchdog: what was read is partial
                raise TransportError(f"no complete answer within {request.timeout:g} s")
            return RawResponse(response.status, response.getheaders(), body)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if expired.is_set():
                # Cut off by the watchdog: a slow or trickling answer, same advice.
                raise TransportError(f"no answer within {request.timeout:g} s") from exc
            final = describe_tls_failure(exc, host, port)
            if final is not None:
                raise final from exc
            if isinstance(exc, (TimeoutError, socket.timeout)):
                raise TransportError(f"no answer within {request.timeout:g} s") from exc
            if isinstance(exc, ConnectionRefusedError):
                raise TransportError(f"cannot connect: {exc.strerror or exc}") from exc
            if isinstance(exc, socket.gaierror):
                raise TransportError(f"cannot connect: {host}: {exc.strerror or exc}") from exc
            raise TransportError(f"the connection failed: {type(exc).__name__}: {exc}") from exc
        finally:
            watchdog.cancel()
            connection.close()


T = TypeVar("T")


class SharedTransports(Generic[T]):
    """One transport per network settings, shared by every auth object that has them (one
    session, one connection pool), and closed when the process exits: their kept-alive
    connections are closed then rather than left to the garbage collector (a ResourceWarning
    each)."""

    def __init__(self, factory: Callable[[NetworkSettings], T], close: Callable[[T], None]) -> None:
        import atexit
        import threading

        self._factory = factory
        self._close = close
        self._items: dict[tuple[object, ...], T] = {}
        self._lock = threading.Lock()
        atexit.register(self.close_all)
        import os

        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        # After os.fork() (gunicorn --preload): a child that sent on its parent's kept-alive
        # connections would share their sockets with the parent and its siblings, and one
        # process could read another's answer. The child starts its own; the parent's stay
        # the parent's (not closed here: closing would shut nothing down for the parent, but
        # a TLS close_notify would).
        import threading

        self._items = {}
        self._lock = threading.Lock()

    def get(self, settings: NetworkSettings) -> T:
        """The transport for *settings*, created on first use."""
        key = settings.key()
        item = self._items.get(key)
        if item is None:
            with self._lock:
                item = self._items.get(key)
                if item is None:
                    item = self._items[key] = self._factory(settings)
        return item

    def close_all(self) -> None:
        for item in list(self._items.values()):
            self._close(item)


_default: UrllibTransport | None = None


def urllib_transport(request: TokenRequest) -> RawResponse:
    """The default :class:`Transport`: :class:`UrllibTransport` with default settings."""
    global _default  # created on first use
    if _default is None:
        _default = UrllibTransport()
    return _default(request)
