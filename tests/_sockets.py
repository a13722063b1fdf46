"""aiohttp sessions closed for good before their event loop ends.

Before 3.12.11 aiohttp closes a session's TLS connections in the background: a loop that ends
right after ``session.close()`` can leave their sockets open, and the garbage collector's
ResourceWarning then fails whichever test runs when it is collected. Sleeping a moment, as
aiohttp's docs advise, is a guess that a busy machine can beat; :func:`tls_session` waits
until every socket the session opened is closed instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

#: Ends a wait for a close that never comes (that test then fails on its ResourceWarning).
CLOSE_BOUND = 30.0


class RecordingConnector(aiohttp.TCPConnector):
    """A TCPConnector that remembers the socket of every connection it hands out."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sockets: list[Any] = []

    async def connect(self, req: Any, traces: Any, timeout: Any) -> aiohttp.connector.Connection:
        connection = await super().connect(req, traces, timeout)
        transport = connection.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            self.sockets.append(sock)
        return connection


async def wait_closed(connector: RecordingConnector) -> None:
    """Return once every socket *connector* handed out is closed (or after CLOSE_BOUND)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLOSE_BOUND
    while any(sock.fileno() != -1 for sock in connector.sockets) and loop.time() < deadline:
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def tls_session(
    *middlewares: Any, ssl: Any = True, **kwargs: Any
) -> AsyncIterator[aiohttp.ClientSession]:
    """``aiohttp.ClientSession(middlewares=middlewares, **kwargs)`` whose connections are all
    closed when the block ends; *ssl* is the connector's (a context, ``False``, or ``True``)."""
    connector = RecordingConnector(ssl=ssl)
    async with aiohttp.ClientSession(
        middlewares=middlewares, connector=connector, **kwargs
    ) as session:
        yield session
    await wait_closed(connector)
