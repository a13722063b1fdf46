"""Each Redis call's deadline, and a bound on its answer.

redis-py's socket timeout bounds each read, not a call: a server that answers one byte every
0.2 s, under a 0.3 s timeout, held a caller for as long as it liked. A call that outlives its
deadline is cut by closing the client's connections (``ConnectionPool.disconnect()``, public
API), which ends the blocking read at once; the call then fails into the circuit breaker.

The plugin knows the size of what it stores (a sealed token of a few hundred bytes; the core
refuses a cache file over 64 KiB), so an answer larger than :data:`MAX_REPLY` is refused too.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_REPLY", "Deadline", "DeadlineExceeded", "ReplyTooLarge", "check_reply", "cut"]

#: Bytes a script's answer may hold, all strings together: twice the core's cache-file cap.
MAX_REPLY = 128 * 1024


class DeadlineExceeded(Exception):
    """A Redis call had no complete answer within its deadline."""


class ReplyTooLarge(Exception):
    """A Redis call answered more than anything the plugin stores."""


def cut(client: Any) -> None:  # noqa: ANN401 - any of redis-py's sync clients
    """Close every connection of *client*: a read blocked on one of them ends at once."""
    disconnect = getattr(client, "disconnect_connection_pools", None)  # RedisCluster
    if disconnect is not None:
        disconnect()
        return
    pool = getattr(client, "connection_pool", None)  # Redis, and a Sentinel's master client
    if pool is not None:
        pool.disconnect()


class Deadline:
    """``with Deadline(seconds, on_expiry):`` calls *on_expiry* from a timer thread if the block
    is still running after *seconds*; ``expired`` says whether it did."""

    __slots__ = ("_on_expiry", "_timer", "expired", "seconds")

    def __init__(self, seconds: float, on_expiry: Callable[[], None]) -> None:
        self.seconds = seconds
        self.expired = False
        self._on_expiry = on_expiry
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        self.expired = True
        # Best effort: whatever closing the connections raises, the blocked read ends or the
        # socket timeout ends it; the caller's error goes to the breaker either way.
        with contextlib.suppress(Exception):
            self._on_expiry()

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()

    def error(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"no complete answer within {self.seconds:g} s (a server that answers too slowly, "
            "or a network that stalls)"
        )


def check_reply(reply: object, limit: int = MAX_REPLY) -> None:
    """Raise :class:`ReplyTooLarge` if *reply*'s strings hold more than *limit* bytes."""
    total = 0
    pending = [reply]
    while pending:
        item = pending.pop()
        if isinstance(item, (bytes, str)):
            total += len(item)
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
        if total > limit:
            raise ReplyTooLarge(
                f"an answer of more than {limit // 1024} KiB, larger than anything stored here"
            )
