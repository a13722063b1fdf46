"""Each Redis call's deadline, and a bound on its answer.

redis-py's socket timeout bounds each read, not a call: a server that answers one byte every
0.2 s, under a 0.3 s timeout, held a caller for as long as it liked. A call that outlives its
deadline is cut by closing the client's connections (``ConnectionPool.disconnect()``, public
API), which ends the blocking read at once; the call then fails into the circuit breaker.

The plugin knows the size of what it stores (a sealed token of a few hundred bytes; the core
refuses a cache file over 64 KiB), so an answer larger than :data:`MAX_REPLY` is refused too,
and the bytes of one reply are counted while they are read (:func:`bounded`): a server that
announces a 1.5 GB string fails the call once :data:`REPLY_LIMIT` bytes have come, instead
of filling memory until the deadline. redis-py reads whatever length a reply announces, and
offers no public way to see the bytes of a connection (its parsers read the connection's
private socket attribute), so the count sits in the socket that a connection class's
``_connect()`` returns: the one method redis-py's own connection classes override to make
their sockets (TCP, TLS, unix, Sentinel-managed), and the only underscore name used here.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "LARGE_REPLY_LIMIT",
    "MAX_REPLY",
    "REPLY_LIMIT",
    "Deadline",
    "DeadlineExceeded",
    "ReplyTooLarge",
    "bounded",
    "bounded_pool",
    "check_reply",
    "cut",
]

#: Bytes a script's answer may hold, all strings together: twice the core's cache-file cap.
MAX_REPLY = 128 * 1024
#: Bytes one reply may take on the wire, framing included: MAX_REPLY and room to spare.
REPLY_LIMIT = 192 * 1024
#: The same for the commands redis-py sends of its own accord whose answers grow with the
#: server, not with what the plugin stores: the command table (COMMAND, a cluster client's
#: first call, some 200 KiB on Redis 7), a cluster's topology (CLUSTER SLOTS, SHARDS, NODES),
#: INFO, and what a Sentinel says of its masters and replicas.
LARGE_REPLY_LIMIT = 16 * 2**20
_LARGE_REPLIES = frozenset({b"COMMAND", b"CLUSTER", b"INFO", b"SENTINEL"})


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


def _limit_for(data: bytes) -> int:
    """The bound for the reply to the command that *data* begins: a RESP array whose first
    bulk string, the third line, is the command's name."""
    parts = data.split(b"\r\n", 3)
    name = parts[2].upper() if len(parts) > 2 else b""
    return LARGE_REPLY_LIMIT if name in _LARGE_REPLIES else REPLY_LIMIT


class _BoundedSocket:
    """A connected socket (plain or TLS) that counts the bytes read since the last command
    was sent, and raises :class:`ReplyTooLarge` past that command's bound. Everything else
    is the socket's own."""

    __slots__ = ("_limit", "_read", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._read = 0
        self._limit = REPLY_LIMIT  # until the first command: a server speaks when spoken to

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - whatever the socket has
        return getattr(self._sock, name)

    def sendall(self, data: bytes, *args: Any) -> None:  # noqa: ANN401 - socket's flags
        head = bytes(data[:64])
        if head.startswith(b"*"):  # a new command; the rest of a long one does not start so
            self._read = 0
            self._limit = _limit_for(head)
        self._sock.sendall(data, *args)

    def _count(self, size: int) -> None:
        self._read += size
        if self._read > self._limit:
            raise ReplyTooLarge(
                f"an answer of more than {self._limit // 1024} KiB, larger than anything "
                "stored here (refused while it was being read)"
            )

    def recv(self, size: int, flags: int = 0) -> bytes:
        data = self._sock.recv(size, flags)
        if not flags & socket.MSG_PEEK:
            self._count(len(data))
        return data

    def recv_into(self, buffer: Any, size: int = 0, flags: int = 0) -> int:  # noqa: ANN401 - a writable buffer
        count = self._sock.recv_into(buffer, size, flags)
        if not flags & socket.MSG_PEEK:
            self._count(count)
        return count


_bounded_classes: dict[type[Any], type[Any]] = {}


def bounded(base: type[Any]) -> type[Any]:
    """A subclass of redis-py connection class *base* whose replies are bounded while read.

    Pass it as ``connection_class=`` (public API of every redis-py client and pool); its
    ``_connect()`` wraps the socket that *base*'s makes, after TLS, in the counting one.
    """
    known = _bounded_classes.get(base)
    if known is not None:
        return known

    def _connect(self: Any) -> _BoundedSocket:  # noqa: ANN401 - a redis-py connection
        return _BoundedSocket(super(made, self)._connect())

    made: type[Any] = type(f"Bounded{base.__name__}", (base,), {"_connect": _connect})
    made.__module__ = __name__
    return _bounded_classes.setdefault(base, made)


def bounded_pool() -> type[Any]:
    """A ``redis.ConnectionPool`` whose connections are :func:`bounded`, whichever connection
    class it is given: for a cluster client (``connection_pool_class=``, public API), whose
    URL's TLS would otherwise replace a ``connection_class`` given beside it."""
    import redis

    known = _bounded_classes.get(redis.ConnectionPool)
    if known is not None:
        return known

    base: type[Any] = redis.ConnectionPool

    def __init__(
        self: Any,  # noqa: ANN401 - the pool being made
        connection_class: type[Any] = redis.Connection,
        **kwargs: object,
    ) -> None:
        base.__init__(self, connection_class=bounded(connection_class), **kwargs)

    made: type[Any] = type("BoundedConnectionPool", (base,), {"__init__": __init__})
    made.__module__ = __name__
    return _bounded_classes.setdefault(redis.ConnectionPool, made)
