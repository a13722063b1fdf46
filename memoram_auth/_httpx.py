"""The httpx half of MemoramAuth: the sync and async auth flows, with one replay after a 401.

Both flows are written out rather than derived from ``auth_flow``: getting a token may take a
lock and do I/O, which must not happen inside an event loop, so the async flow awaits the
provider's async path instead. What the two share (which URLs, which 401s, whether a body can
be sent again) are helpers both call.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from ._authcore import AuthCore
from .provider import BEARER

__all__ = ["HttpxAuth"]


def _body_fits(request: httpx.Request, content: bytes) -> bool:
    # Read again, a body must be what was declared: an exhausted file object reads as b"", and
    # sending that under the old Content-Length would fail or, chunked, send nothing.
    length = request.headers.get("Content-Length")
    return length is not None and length.isdigit() and int(length) == len(content)


def _in_memory(request: httpx.Request) -> bool:
    try:
        request.content  # noqa: B018 - raises RequestNotRead for a body not held in memory
    except httpx.RequestNotRead:
        return False
    return True


def _reread(request: httpx.Request) -> bool:
    """True if the body can be sent again, reading it into memory if it was not (after a 401).

    Bodies httpx holds in memory (``content=bytes``, ``json=``, ``data=``) can; so can
    multipart bodies (``files=``), which httpx renders again, seeking files back. A generator
    cannot (httpx raises ``StreamConsumed``), and neither can a body of unknown length.
    """
    if _in_memory(request):
        return True
    if request.headers.get("Content-Length") is None:
        return False
    try:
        content = request.read()
    except httpx.StreamConsumed:
        return False
    return _body_fits(request, content)


async def _areread(request: httpx.Request) -> bool:
    """:func:`_reread` for the async flow."""
    if _in_memory(request):
        return True
    if request.headers.get("Content-Length") is None:
        return False
    try:
        content = await request.aread()
    except httpx.StreamConsumed:
        return False
    return _body_fits(request, content)


class HttpxAuth(AuthCore, httpx.Auth):
    """An :class:`AuthCore` that httpx can use as ``auth=``, sync and async."""

    def _targets(self, url: httpx.URL) -> bool:
        # httpx's parsed parts rather than str(url), which would rebuild the whole string.
        port = url.port  # None for the scheme's default port
        if (
            url.raw_host.decode("ascii") != self._host
            or (port != self._default_or_port and port != self._port)
            or url.scheme != self._scheme
        ):
            return False
        path = url.raw_path.decode("ascii").partition("?")[0]
        if path.startswith(self._token_path) or "%" in path:
            return not self.is_token_path(url.path)  # decoded only when it may matter
        return True

    def _rejected(self, response: httpx.Response, header: str) -> bool:
        # Only our own header, on the API's origin (not after a redirect elsewhere).
        request = response.request
        return (
            response.status_code == 401
            and request.headers.get("Authorization") == header
            and self._targets(request.url)
        )

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """The flow ``httpx.Client`` drives."""
        if not self._targets(request.url):
            yield request
            return
        header = self.provider.authorization()
        request.headers["Authorization"] = header
        response = yield request
        if not self._rejected(response, header):
            return
        # Invalidated even when the body cannot be replayed, so the next request gets a new one.
        self.provider.invalidate(header[len(BEARER) :])
        response.read()  # free the connection before the replay (or hand the 401 back whole)
        if not _reread(request):
            return
        request.headers["Authorization"] = self.provider.authorization()
        yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The flow ``httpx.AsyncClient`` drives; the event loop never waits on a lock or a file."""
        if not self._targets(request.url):
            yield request
            return
        header = await self.provider.authorization_async()
        request.headers["Authorization"] = header
        response = yield request
        if not self._rejected(response, header):
            return
        self.provider.invalidate(header[len(BEARER) :])
        await response.aread()
        if not await _areread(request):
            return
        request.headers["Authorization"] = await self.provider.authorization_async()
        yield request
