"""The httpx half of MemoramAuth: the sync and async auth flows, with one replay after a 401.

Both flows are written out rather than derived from ``auth_flow``: getting a token may take a
lock and do I/O, which must not happen inside an event loop, so the async flow awaits the
provider's async path instead.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from ._authcore import AuthCore

__all__ = ["async_auth_flow", "sync_auth_flow"]


def _replayable(request: httpx.Request) -> bool:
    # Bodies httpx already holds in memory (content=bytes, json=, data=) and multipart bodies
    # (files=, which httpx re-renders, seeking files back) can be sent again; an iterator or
    # generator body cannot, and such a request gets its 401 back.
    return hasattr(request, "_content") or isinstance(
        request.stream, httpx._multipart.MultipartStream
    )


def _rejected(auth: AuthCore, response: httpx.Response, header: str) -> bool:
    # Only our own header, on the API's origin (not after a redirect elsewhere).
    request = response.request
    return (
        response.status_code == 401
        and request.headers.get("Authorization") == header
        and auth.targets(str(request.url))
    )


def sync_auth_flow(
    auth: AuthCore, request: httpx.Request
) -> Generator[httpx.Request, httpx.Response, None]:
    """The flow ``httpx.Client`` drives."""
    if not auth.targets(str(request.url)):
        yield request
        return
    replayable = _replayable(request)
    header = f"Bearer {auth.provider.get_token().value}"
    request.headers["Authorization"] = header
    response = yield request
    if not _rejected(auth, response, header):
        return
    # Invalidated even when the body cannot be replayed, so the next request gets a new one.
    auth.provider.invalidate(header[len("Bearer ") :])
    if not replayable:
        return
    response.read()  # free the connection before the replay
    request.headers["Authorization"] = f"Bearer {auth.provider.get_token().value}"
    yield request


async def async_auth_flow(
    auth: AuthCore, request: httpx.Request
) -> AsyncGenerator[httpx.Request, httpx.Response]:
    """The flow ``httpx.AsyncClient`` drives; the event loop never waits on a lock or a file."""
    if not auth.targets(str(request.url)):
        yield request
        return
    replayable = _replayable(request)
    header = f"Bearer {(await auth.provider.get_token_async()).value}"
    request.headers["Authorization"] = header
    response = yield request
    if not _rejected(auth, response, header):
        return
    auth.provider.invalidate(header[len("Bearer ") :])
    if not replayable:
        return
    await response.aread()
    request.headers["Authorization"] = f"Bearer {(await auth.provider.get_token_async()).value}"
    yield request
