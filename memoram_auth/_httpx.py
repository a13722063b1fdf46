"""The httpx half of MemoramAuth: the sync and async auth flows, with one replay after a 401.

Both flows are written out rather than derived from ``auth_flow``: getting a token may take a
lock and do I/O, which must not happen inside an event loop, so the async flow awaits the
provider's async path instead.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator
from operator import attrgetter
from time import time as _now
from typing import NamedTuple, Optional, Protocol

import httpx

from ._authcore import AuthCore
from .provider import BEARER

__all__ = ["HttpxAuth"]


class _URLParts(Protocol):
    # What the origin test reads: lowercase scheme, lowercase IDNA-encoded host, port (None
    # for the scheme's default) and the path as sent, percent-escapes and all.
    @property
    def scheme(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int | None: ...
    @property
    def path(self) -> str: ...


class _PublicParts(NamedTuple):
    scheme: str
    host: str
    port: Optional[int]  # noqa: UP045 - a NamedTuple field is evaluated at run time on 3.9
    path: str


def _public_parts(url: httpx.URL) -> _PublicParts:
    return _PublicParts(
        url.scheme,
        url.raw_host.decode("ascii"),
        url.port,
        url.raw_path.decode("ascii").partition("?")[0],
    )


def _pick_url_parts() -> Callable[[httpx.URL], _URLParts]:
    # httpx parses a URL once and keeps the result in URL._uri_reference; each public
    # property re-derives its field from it, which cost ~0.5 µs a request, as much as the rest
    # of the flow. The private attribute is read only if it gives what the public properties
    # give on a probe URL; otherwise (a future httpx) the public properties are used.
    probe = httpx.URL("https://Host.Example:8443/a%2Fb?q=1")
    try:
        fast = attrgetter("_uri_reference")
        parts = fast(probe)
        same = (parts.scheme, parts.host, parts.port, parts.path) == _public_parts(probe)
    except Exception:  # noqa: BLE001 - any surprise means: use the public properties
        same = False
    return fast if same else _public_parts


_url_parts = _pick_url_parts()


def _replayable(request: httpx.Request) -> bool:
    # Bodies httpx holds in memory (content=bytes, json=, data=, or a stream that a transport
    # or event hook has read) and multipart bodies (files=, which httpx re-renders, seeking
    # files back) can be sent again; an unread iterator or generator body cannot, and such a
    # request gets its 401 back. Asked after the 401, so the hot path does not pay for it.
    return hasattr(request, "_content") or isinstance(
        request.stream, httpx._multipart.MultipartStream
    )


class HttpxAuth(AuthCore, httpx.Auth):
    """An :class:`AuthCore` that httpx can use as ``auth=``, sync and async."""

    def _targets(self, url: httpx.URL) -> bool:
        # The URL's parts as httpx already holds them: str(url) would rebuild the whole string,
        # and the decoded path is needed only when the raw one looks like the token endpoint.
        parts = _url_parts(url)
        port = parts.port
        if (
            parts.host != self._host
            or (port != self._default_or_port and port != self._port)
            or parts.scheme != self._scheme
        ):
            return False
        path = parts.path
        if path.startswith(self._token_path) or "%" in path:
            return not self.is_token_path(url.path)
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
        # The common case inline, as in the requests adapter (the API's origin as configured,
        # a path that cannot be the token endpoint); _targets() decides everything else.
        parts = _url_parts(request.url)
        path = parts.path
        if (
            parts.host == self._host
            and parts.port == self._default_or_port
            and parts.scheme == self._scheme
            and not path.startswith(self._token_path)
            and "%" not in path
        ):
            pass
        elif not self._targets(request.url):
            yield request
            return
        # TokenProvider.authorization() inlined while the token is fresh (see _requests.py).
        entry = self.provider._entry
        header = (
            entry.authorization
            if entry is not None and _now() < entry.refresh_at
            else self.provider.authorization()
        )
        request.headers["Authorization"] = header
        response = yield request
        if not self._rejected(response, header):
            return
        # Invalidated even when the body cannot be replayed, so the next request gets a new one.
        self.provider.invalidate(header[len(BEARER) :])
        if not _replayable(request):
            return
        response.read()  # free the connection before the replay
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
        if not _replayable(request):
            return
        await response.aread()
        request.headers["Authorization"] = await self.provider.authorization_async()
        yield request
