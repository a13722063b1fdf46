"""Token requests for the aiohttp middleware: through the user's own ``ClientSession``.

The token request is posted through the session whose request needed the token (aiohttp's
documented route for a middleware's own requests, ``req.session``), with ``middlewares=()`` so
that it never passes through the session's middlewares, ours included. So the session's
connector (its TLS context, client certificate, limits, resolver), ``trust_env`` proxies,
cookies and trace configs apply to it as to the user's requests. When the middleware was given
explicit network settings, the request carries ``ssl=`` and ``proxy=`` built from them.

aiohttp's errors become :class:`~memoram_auth.transport.TransportError`, which the exchange
retries or, for a certificate that does not verify, reports at once with the CA options.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from ..transport import (
    MAX_BODY,
    NetworkSettings,
    RawResponse,
    TokenRequest,
    TransportError,
    ssl_context,
    tls_failure_in,
)

if TYPE_CHECKING:
    import ssl

__all__ = ["AiohttpSender"]

#: Proxy schemes aiohttp's ``proxy=`` speaks; SOCKS needs a connector (aiohttp-socks).
_AIOHTTP_PROXY_SCHEMES = ("http", "https")


def _wrapped(error: BaseException) -> list[object]:
    """The ssl error an aiohttp connection error wraps (public attributes)."""
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        # Not os_error: aiohttp 3.12's certificate error does not set it (AttributeError).
        return [error.certificate_error]
    if isinstance(error, aiohttp.ClientConnectorError):
        return [error.os_error]
    return []


def transport_error(exc: BaseException, url: str) -> TransportError:
    """What a failed token request tells the exchange: final for TLS that cannot verify."""
    parsed = URL(url)
    host, port = parsed.raw_host or "", parsed.port or 443
    # aiohttp's TLS errors subclass ssl's without their attributes: the ssl error each one
    # wraps (certificate_error, os_error) is judged instead.
    final = tls_failure_in(
        exc,
        host,
        port,
        wrapped=_wrapped,
        judged=lambda error: not isinstance(error, aiohttp.ClientError),
    )
    if final is not None:
        return final
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's own timeouts subclass it
        return TransportError(f"no answer within the timeout ({type(exc).__name__})")
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # the proxy refused the tunnel
        return TransportError(f"the proxy answered {exc.status}: {exc.message}")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return TransportError(f"cannot connect: {type(exc).__name__}: {exc}")
    # Anything else (a ValueError from a setting aiohttp refuses, a closed session) cannot be
    # healed by another attempt; it still reaches the user as a MemoramAuthError.
    return TransportError(f"the token request failed: {type(exc).__name__}: {exc}", retry=False)


async def _as_token_request(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """The token request's one middleware, which sees it as the session made it: without the
    ``Authorization`` that the session's ``auth=`` or a ``.netrc`` entry (``trust_env``) put
    there (the endpoint is unauthenticated: the key goes in the body only), and, for plain
    http (loopback only), without the environment's proxy, which would read the key."""
    request.headers.popall("Authorization", None)
    if request.url.scheme == "http":
        request.update_proxy(None, None, None)
    return await handler(request)


def _lower(ours: float, theirs: float | None) -> float:
    return ours if theirs is None or theirs <= 0 else min(ours, theirs)


class AiohttpSender:
    """Sends token requests through a ``ClientSession``, with explicit *settings* if any."""

    def __init__(self, settings: NetworkSettings) -> None:
        self.settings = settings
        self._context: ssl.SSLContext | None = None

    def _options(self, plain: bool, caller: aiohttp.ClientRequest | None) -> dict[str, Any]:
        settings = self.settings
        options: dict[str, Any] = {}
        if caller is not None:
            # The request the token is for: its ssl= may pin or replace the trust (a context,
            # a fingerprint), never drop it (False), which would send the key unverified.
            if not isinstance(caller.ssl, bool):
                options["ssl"] = caller.ssl
            if caller.proxy is not None and not plain:
                options["proxy"] = caller.proxy
                options["proxy_auth"] = caller.proxy_auth
                options["proxy_headers"] = caller.proxy_headers
        if settings.verify is not None or settings.cert is not None:
            if self._context is None:  # built once: loading a CA bundle costs milliseconds
                try:
                    self._context = ssl_context(settings)
                except OSError as exc:  # a CA bundle or client certificate that cannot be read
                    raise TransportError(
                        f"cannot set up TLS for the token request: {exc.strerror or exc}",
                        retry=False,
                    ) from exc
            options["ssl"] = self._context
        if settings.proxy is not None:
            scheme = settings.proxy.partition("://")[0].lower()
            if scheme not in _AIOHTTP_PROXY_SCHEMES:
                raise TransportError(
                    f"aiohttp cannot send the token request through a {scheme}:// proxy; use "
                    "an http:// proxy, or a session whose connector reaches it (aiohttp-socks) "
                    "and no proxy= on MemoramMiddleware",
                    retry=False,
                )
            if not plain:  # plain http (loopback only) never goes through a proxy
                options.update(proxy=settings.proxy, proxy_auth=None, proxy_headers=None)
        return options

    async def send(
        self,
        session: aiohttp.ClientSession,
        step: TokenRequest,
        *,
        caller: aiohttp.ClientRequest | None = None,
    ) -> RawResponse:
        """Post *step* through *session*; at most :data:`MAX_BODY` bytes of the answer are read.

        *caller*, the request the token is for, lends its ``ssl=`` (unless ``False``) and
        ``proxy=``; the session's ``sock_connect`` and ``sock_read`` timeouts apply where
        shorter than the attempt's.

        Raises:
            TransportError: no HTTP answer (or one cut off), or a setting aiohttp refused.
        """
        remaining = step.deadline - time.monotonic()
        if remaining <= 0:
            raise TransportError("no time left for another attempt")
        theirs = session.timeout
        timeout = aiohttp.ClientTimeout(
            total=remaining,
            sock_connect=_lower(step.timeout, theirs.sock_connect),
            sock_read=_lower(step.timeout, theirs.sock_read),
        )
        options = self._options(step.url.startswith("http:"), caller)
        try:
            async with session.post(
                step.url,
                data=step.body,
                headers=step.headers,
                timeout=timeout,
                # The middleware's own request: not through the session's middlewares (no
                # recursion) but _as_token_request, no redirect (it would carry the key
                # elsewhere), and the answer as it came, whatever the session's
                # raise_for_status says.
                middlewares=(_as_token_request,),
                allow_redirects=False,
                raise_for_status=False,
                **options,
            ) as response:
                body = b""
                while len(body) < MAX_BODY:
                    chunk = await response.content.read(MAX_BODY - len(body))
                    if not chunk:
                        break
                    body += chunk
                return RawResponse(response.status, response.headers.items(), body)
        except Exception as exc:  # every failure (cancellation is not one) is a TransportError
            raise transport_error(exc, step.url) from exc
