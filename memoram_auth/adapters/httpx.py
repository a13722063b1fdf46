"""The httpx half of MemoramAuth: the sync and async auth flows, with one replay after a 401.

Both flows are written out rather than derived from ``auth_flow``: getting a token may take a
lock and do I/O, which must not happen inside an event loop, so the async flow awaits the
provider's async path instead. What the two share (which URLs, which 401s, whether a body can
be sent again) are helpers both call.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator
from typing import TYPE_CHECKING

import httpx

from ..core.provider import BEARER
from ..core.steps import (
    Done,
    RawResponse,
    TokenRequest,
    TransportError,
    drive_async,
    run,
    run_async,
)
from ..transports.httpx import aread_answer, as_httpx_request, read_answer
from .base import AuthCore, call_budget

if TYPE_CHECKING:
    from ..token import Token
    from ..transports.httpx import HttpxTransport

__all__ = ["HttpxAuth"]


def _through_client(
    caller: httpx.Request,
) -> Callable[[TokenRequest], Generator[httpx.Request, httpx.Response, RawResponse]]:
    """Sends a token request through the user's client (the auth flow yields it), within the
    timeout the user gave *caller*, the request it serves."""
    timeout = caller.extensions.get("timeout")

    def send(step: TokenRequest) -> Generator[httpx.Request, httpx.Response, RawResponse]:
        return read_answer((yield as_httpx_request(step, caller_timeout=timeout)), step)

    return send


def _budget(caller: httpx.Request) -> float | None:
    """The whole time a token request may take for *caller*: the connect plus read timeouts
    of its ``timeout`` extension (the client's or the request's; httpx's default of 5 s each
    makes 10 s), ``None`` if either is unbounded."""
    timeout = caller.extensions.get("timeout")
    if not isinstance(timeout, dict):
        return None
    return call_budget(timeout.get("connect"), timeout.get("read"))


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
    """An :class:`AuthCore` that httpx can use as ``auth=``, sync and async.

    A token request is yielded to the user's client (see ``transports/httpx.py``), unless
    explicit network settings were given, which an httpx client of ours then applies.
    """

    def _own_transport(self) -> HttpxTransport | None:
        if not self.network.explicit:
            return None
        from ..transports.httpx import httpx_transport

        return httpx_transport(self.network)

    def _targets(self, url: httpx.URL) -> bool:
        # httpx's parsed parts rather than str(url), which would rebuild the whole string;
        # raw_host is lowercase and IDNA-encoded, and url.path is decoded: "%2F" and "%61"
        # cannot hide the token endpoint.
        return self.scope.targets_parts(url.scheme, url.raw_host, url.port, url.path)

    def _rejected(self, response: httpx.Response, header: str) -> bool:
        # Only our own header, on the API's origin (not after a redirect elsewhere).
        request = response.request
        return (
            response.status_code == 401
            and request.headers.get("Authorization") == header
            and self._targets(request.url)
        )

    def _scrub(self, response: httpx.Response) -> None:
        # httpx keeps every response of an auth flow in history, the token request's too: it is
        # ours, not the user's, and its body holds a token. Only the user's own hops stay.
        if response.history:
            response.history = [
                hop
                for hop in response.history
                if self._targets(hop.request.url) or hop.request.url.host != self.scope.host
            ]

    # -- sync ---------------------------------------------------------------------------------

    def _token(self, caller: httpx.Request) -> Generator[httpx.Request, httpx.Response, str]:
        """The header value, refreshing through the client when needed (``yield from``)."""
        header = self.provider.fresh_authorization()
        if header is not None:
            return header
        own = self._own_transport()
        within = _budget(caller)
        if own is not None:
            return self.provider.authorization(own, within=within)
        steps = self.provider.refresh_steps(within=within)
        token: Token = yield from run(steps, _through_client(caller))
        return self.provider.authorization_for(token)

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """The flow ``httpx.Client`` drives."""
        url = request.url  # _targets(), one call fewer on the per-request path
        if not self.scope.targets_parts(url.scheme, url.raw_host, url.port, url.path):
            response = yield request
            if response.status_code == 401:  # left alone: see note_unauthenticated_401
                self.note_unauthenticated_401(str(request.url))
            return
        header = self.provider.fresh_authorization()
        if header is None:  # the common case needs no sub-generator
            header = yield from self._token(request)
        request.headers["Authorization"] = header
        response = yield request
        self._scrub(response)
        if not self._rejected(response, header):
            return
        # Invalidated even when the body cannot be replayed, so the next request gets a new one.
        self.provider.invalidate(header[len(BEARER) :])
        response.read()  # free the connection before the replay (or hand the 401 back whole)
        if not _reread(request):
            return
        request.headers["Authorization"] = yield from self._token(request)
        self._scrub((yield request))

    # -- async --------------------------------------------------------------------------------

    async def _atoken(
        self, caller: httpx.Request
    ) -> AsyncGenerator[httpx.Request | str, httpx.Response | None]:
        """The header value, last, after any token requests for the client to send.

        An async generator cannot ``yield from``, so the flow pumps this one.
        """
        header = self.provider.fresh_authorization()
        if header is not None:
            yield header
            return
        async with self.provider.single_flight() as flight:
            if flight.done:
                token = flight.outcome()
            else:
                own = self._own_transport()
                steps = self.provider.refresh_steps(within=_budget(caller))
                if own is not None:
                    token = await drive_async(steps, own.send_async)
                else:
                    # Each token request goes out through the flow to the user's client.
                    timeout = caller.extensions.get("timeout")
                    flow = run_async(steps)
                    try:
                        item = await flow.__anext__()
                        while isinstance(item, TokenRequest):
                            response = yield as_httpx_request(
                                item, asynchronous=True, caller_timeout=timeout
                            )
                            assert response is not None  # noqa: S101 - the flow sends it
                            answer: RawResponse | TransportError
                            try:
                                answer = await aread_answer(response, item)
                            except TransportError as exc:
                                answer = exc
                            item = await flow.asend(answer)
                    finally:
                        await flow.aclose()
                    assert isinstance(item, Done)  # noqa: S101 - what run_async yields last
                    token = item.value
                flight.succeed(token)
        yield self.provider.authorization_for(token)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The flow ``httpx.AsyncClient`` drives, on asyncio, uvloop or trio.

        The event loop never waits on a lock or a file: those steps run in worker threads.
        Concurrent requests on one loop share one refresh.
        """
        if not self._targets(request.url):
            response = yield request
            if response.status_code == 401:  # left alone: see note_unauthenticated_401
                self.note_unauthenticated_401(str(request.url))
            return
        for replay in (False, True):
            token_flow = self._atoken(request)
            try:
                item = await token_flow.__anext__()
                while isinstance(item, httpx.Request):
                    item = await token_flow.asend((yield item))
            finally:
                await token_flow.aclose()
            header = item
            request.headers["Authorization"] = header
            response = yield request
            self._scrub(response)
            if replay or not self._rejected(response, header):
                return
            # Invalidated even when the body cannot be replayed: the next request gets a new one.
            self.provider.invalidate(header[len(BEARER) :])
            await response.aread()
            if not await _areread(request):
                return
