"""``MemoramMiddleware``: bearer tokens for ``aiohttp.ClientSession``, as a client middleware.

aiohttp (>= 3.12.1) runs a session's middlewares for every request and every redirect hop, so
the origin rule is applied hop by hop, as requests and httpx apply it. The token request goes
through the same session (see ``transports/aiohttp.py``); getting a token runs the provider's
steps on the event loop with :func:`~memoram_auth.core.steps.drive_async`, lock waits and cache
I/O in worker threads, one refresh per loop (``provider.single_flight()``).

This module imports aiohttp; ``memoram_auth.MemoramMiddleware`` loads it on first use.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING

import aiohttp
import aiohttp.payload

from ..core.provider import BEARER
from ..core.steps import drive_async
from ..exceptions import TokenRequestError
from ..transports.aiohttp import AiohttpSender
from .base import AuthCore, in_library_terms

if TYPE_CHECKING:
    from yarl import URL

    from ..token import Token

__all__ = ["MemoramMiddleware"]

_SEEN = 256  # URL objects remembered as needing the token (yarl's own URL cache holds 128)


def _can_resend(body: aiohttp.payload.Payload | bytes) -> bool:
    """True if the request body can be sent again after a 401 (aiohttp >= 3.12.1 reuses them).

    No body, bytes, ``json=``, form data and ``FormData`` of bytes or files can: their size is
    known and the payload says it is not ``consumed``. A streaming body (an async generator)
    cannot: its size is unknown, and once sent it is consumed.
    """
    if not isinstance(body, aiohttp.payload.Payload):
        return True  # b"": no body
    return body.size is not None and not body.consumed


class MemoramMiddleware(AuthCore):
    """Bearer tokens for the Memoram API in ``aiohttp.ClientSession`` (aiohttp >= 3.12.1)::

        async with aiohttp.ClientSession(middlewares=(MemoramMiddleware(),)) as session:
            async with session.get("https://api.memoram.app/api/v1/tags") as response:
                ...

    Only requests to the base URL's origin (scheme, host, port) get the token, on every
    redirect hop; anything else, and the token endpoint itself, passes through untouched.
    After a 401 to a request that carried the token, the token is invalidated, a new one
    fetched and the request replayed once, if its body can be sent again (bytes, ``json=``,
    form data); a streaming body gets its 401 back. Concurrent requests on one event loop
    share one token request, and the loop never waits on a lock or a file. Every middleware
    with the same key, base URL and cache shares one token provider, with ``MemoramAuth`` too.

    The token request goes through the session of the request that needed it, with
    ``middlewares=()``: the session's connector (its ``ssl=`` context, client certificate),
    ``trust_env`` proxies, ``timeout.sock_connect``/``sock_read`` and trace configs apply to
    it, and so do that request's own ``ssl=`` (an ``ssl.SSLContext`` or a ``Fingerprint``)
    and ``proxy=``; a request's ``ssl=False`` does not reach it: the key is sent only where
    the session's connector would verify (a connector built with ``ssl=False`` is the
    session's own choice, and applies). The call's ``timeout.total`` bounds it, as it bounds
    everything the call does. Given *verify*, *cert* or *proxy*, it carries ``ssl=`` and
    ``proxy=`` built from them instead.

    Args:
        api_key: as :class:`memoram_auth.MemoramAuth` (default ``MEMORAM_API_KEY``, then key
            plugins).
        base_url: as :class:`memoram_auth.MemoramAuth` (default ``MEMORAM_BASE_URL``, then
            production).
        cache_dir: as :class:`memoram_auth.MemoramAuth`.
        cache_backend: as :class:`memoram_auth.MemoramAuth`.
        expires_in: as :class:`memoram_auth.MemoramAuth`.
        policy: as :class:`memoram_auth.MemoramAuth`.
        verify: the token request's TLS trust: ``True``, a CA bundle path, an
            ``ssl.SSLContext``, or ``False`` (no verification: tests only).
        cert: a client certificate for the token request: a PEM path or (cert, key) paths.
        proxy: an ``http://`` or ``https://`` proxy URL for the token request.
        trust_env: whether *verify* and *cert* read ``REQUESTS_CA_BUNDLE`` when no CA bundle
            is given (default ``True``); the session's own ``trust_env`` decides its proxies.
        background_refresh: as :class:`memoram_auth.MemoramAuth`: the refresh ahead of expiry
            runs in a thread, through the stdlib with *verify*, *cert*, *proxy* and the
            environment; if it fails, the next request refreshes through its session.

    Raises:
        ConfigurationError: no key, a malformed key, or a bad or insecure base URL.
        TypeError, ValueError: a network setting of the wrong type or shape.

    Requests to the API raise :class:`~memoram_auth.TokenRequestError` (a
    :class:`~memoram_auth.MemoramAuthError`) when no token can be had; errors of the request
    itself stay aiohttp's.
    """

    def _setup(self) -> None:
        # Called at the end of AuthCore.__init__ (an __init__ here would hold the key in its
        # *args, where traceback formatters that print locals would show it).
        if self.session is not None:
            raise TypeError(
                "session= is for requests (MemoramAuth): the middleware sends the token "
                "request through the session of the request that needs it"
            )
        self._sender = AiohttpSender(self.network)
        # URL objects found to need the token, the last one and up to _SEEN more by id. yarl
        # hands out one URL object per URL string (URL(str) is lru-cached), so a client that
        # calls the same endpoints again brings the same objects, and an identity test replaces
        # the origin test (reading yarl's properties is most of this middleware's cost). URLs
        # are immutable and these references keep them alive, so no other object can have
        # their id and `is` cannot match another URL.
        self._last_target: URL | None = None
        self._targets_seen: dict[int, URL] = {}

    async def _authorization(self, req: aiohttp.ClientRequest) -> str:
        """The header value, refreshing through *req*'s session (with its ``ssl=`` and
        ``proxy=``) when needed, one refresh per loop."""
        header = self.provider.fresh_authorization()
        if header is not None:
            return header
        try:
            async with self.provider.single_flight() as flight:
                if flight.done:
                    token: Token = flight.outcome()
                else:
                    send = functools.partial(self._sender.send, req.session, caller=req)
                    token = await drive_async(self.provider.refresh_steps(), send)
                    flight.succeed(token)
        except TokenRequestError as exc:
            # Also an aiohttp.ClientError, which the user's retry code catches.
            raise in_library_terms(exc, aiohttp.ClientError) from exc
        return self.provider.authorization_for(token)

    async def __call__(
        self, req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """The middleware: set ``Authorization`` on requests to the API, replay once after 401.

        Raises:
            TokenRequestError: no token could be had (see its subclasses).
        """
        url = req.url
        if url is not self._last_target:
            seen = self._targets_seen
            if seen.get(id(url)) is not url:
                if not self.scope.targets_yarl(url):
                    response = await handler(req)
                    if response.status == 401:  # left alone: see note_unauthenticated_401
                        self.note_unauthenticated_401(str(url))
                    return response
                if len(seen) >= _SEEN:  # URLs built with params= are new objects every time
                    seen.clear()
                seen[id(url)] = url
            self._last_target = url
        header = self.provider.fresh_authorization()
        if header is None:
            header = await self._authorization(req)
        req.headers["Authorization"] = header
        response = await handler(req)
        if response.status != 401 or req.headers.get("Authorization") != header:
            return response
        # Invalidated even when the body cannot be sent again: the next request gets a new one.
        self.provider.invalidate(header[len(BEARER) :])
        if not _can_resend(req.body):
            return response
        # Read to the end, so that the connection can be reused (if reading fails, aiohttp
        # closes it instead).
        with contextlib.suppress(aiohttp.ClientError):
            await response.read()
        response.release()
        req.headers["Authorization"] = await self._authorization(req)
        return await handler(req)
