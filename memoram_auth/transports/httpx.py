"""Token requests for the httpx adapter: through the user's own client, or, when MemoramAuth was
given explicit network settings, through an httpx client built with them.

Through the user's client, the auth flow *yields* each token request (httpx's documented
pattern for auth that needs its own requests), so the client's ``verify``, ``cert``, proxies,
mounts, transport, ``trust_env`` and mocks (respx, pytest-httpx) apply to it as they do to the
user's request. The price, documented in the README: a connection failure of the token request
is raised by the client as its own httpx exception, as the user's request would be, instead of
being retried.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

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

__all__ = ["HttpxTransport", "as_httpx_request", "as_raw_response", "httpx_transport"]


def as_httpx_request(step: TokenRequest) -> httpx.Request:
    """The token request as an httpx request, with its timeout (per request, as httpx allows)."""
    timeout = max(0.001, min(step.timeout, step.deadline - time.monotonic()))
    return httpx.Request(
        "POST",
        step.url,
        headers=step.headers,
        content=step.body,
        extensions={"timeout": httpx.Timeout(timeout).as_dict()},
    )


def _too_large(response: httpx.Response) -> bool:
    length = response.headers.get("Content-Length", "")
    return length.isdigit() and int(length) > MAX_BODY


def as_raw_response(response: httpx.Response) -> RawResponse:
    """A read httpx response, as the exchange judges it."""
    return RawResponse(response.status_code, response.headers.multi_items(), response.content)


def read_answer(response: httpx.Response) -> RawResponse:
    """Read the token response in the sync flow (httpx reads it again after the flow: the body
    must be read with ``read()``, not iterated) and convert it."""
    if _too_large(response):
        response.close()
        return RawResponse(response.status_code, response.headers.multi_items(), b"")
    response.read()
    return as_raw_response(response)


async def aread_answer(response: httpx.Response) -> RawResponse:
    """:func:`read_answer` for the async flow."""
    if _too_large(response):
        await response.aclose()
        return RawResponse(response.status_code, response.headers.multi_items(), b"")
    await response.aread()
    return as_raw_response(response)


def _client_options(settings: NetworkSettings) -> dict[str, Any]:
    options: dict[str, Any] = {"trust_env": settings.trust_env, "follow_redirects": False}
    if settings.verify is False:
        options["verify"] = False
    elif settings.verify is not None or settings.cert is not None:
        # One SSLContext for trust and client certificate: httpx 0.28 deprecates the others.
        options["verify"] = ssl_context(settings)
    if settings.proxy is not None:
        options["proxy"] = settings.proxy
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
                return read_answer(response)
            except httpx.TransportError as exc:
                raise _transport_error(exc, request.url) from exc
            finally:
                response.close()

    async def send_async(self, request: TokenRequest) -> RawResponse:
        """Send on the running loop with a client of its own (refreshes are rare)."""
        try:
            async with httpx.AsyncClient(**_client_options(self.settings)) as client:
                response = await client.send(as_httpx_request(request), stream=True)
                try:
                    return await aread_answer(response)
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
