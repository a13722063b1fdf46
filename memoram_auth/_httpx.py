"""The httpx half of MemoramAuth: the sync and async auth flows, with one replay after a 401.

Both flows are written out rather than derived from ``auth_flow``: getting a token may take a
lock and do I/O, which must not happen inside an event loop, so the async flow awaits the
provider's async path instead.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from ._authcore import AuthCore
from .urls import DEFAULT_PORTS

__all__ = ["HttpxAuth"]

_BEARER = "Bearer "


def _replayable(request: httpx.Request) -> bool:
    # Bodies httpx already holds in memory (content=bytes, json=, data=) and multipart bodies
    # (files=, which httpx re-renders, seeking files back) can be sent again; an iterator or
    # generator body cannot, and such a request gets its 401 back.
    return hasattr(request, "_content") or isinstance(
        request.stream, httpx._multipart.MultipartStream
    )


class HttpxAuth(AuthCore, httpx.Auth):
    """An :class:`AuthCore` that httpx can use as ``auth=``, sync and async."""

    def _targets(self, url: httpx.URL) -> bool:
        # The URL's parts as httpx already holds them: str(url) would rebuild the whole string,
        # and the decoded path is needed only when the raw one looks like the token endpoint.
        raw = url.raw_path
        if raw.startswith(self._token_raw_path) or b"%" in raw:
            return self.targets_parts(url.scheme, url.host, url.port, url.path)
        return (
            url.host == self._host
            and url.scheme == self._scheme
            and (url.port or DEFAULT_PORTS[url.scheme]) == self._port
        )

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
        header = self.bearer_header()
        request.headers["Authorization"] = header
        replayable = _replayable(request)  # before sending: sending may read the stream
        response = yield request
        if not self._rejected(response, header):
            return
        # Invalidated even when the body cannot be replayed, so the next request gets a new one.
        self.provider.invalidate(header[len(_BEARER) :])
        if not replayable:
            return
        response.read()  # free the connection before the replay
        request.headers["Authorization"] = self.bearer_header()
        yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The flow ``httpx.AsyncClient`` drives; the event loop never waits on a lock or a file."""
        if not self._targets(request.url):
            yield request
            return
        header = await self.bearer_header_async()
        request.headers["Authorization"] = header
        replayable = _replayable(request)
        response = yield request
        if not self._rejected(response, header):
            return
        self.provider.invalidate(header[len(_BEARER) :])
        if not replayable:
            return
        await response.aread()
        request.headers["Authorization"] = await self.bearer_header_async()
        yield request
