"""A hostile Redis for the tests: a thread on 127.0.0.1 that speaks RESP the way a test says.

Real servers cannot be made to misbehave like this (trickle an answer, announce a huge one);
everything else in the suite runs against a real redis-server.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import BinaryIO

__all__ = ["FakeRedis", "huge", "trickle"]

#: What to send for a command (its words, upper-cased name first): chunks, and the pause
#: before each.
Answer = Callable[[list[bytes]], Iterable[tuple[float, bytes]]]


def _ok(command: list[bytes]) -> Iterable[tuple[float, bytes]]:
    if command[0] == b"HELLO":  # redis-py 8 speaks RESP3 by default: a map that says so
        return [(0.0, b"%1\r\n$5\r\nproto\r\n:3\r\n")]
    return [(0.0, b"+OK\r\n")]


def trickle(reply: bytes, every: float) -> Answer:
    """Answer scripts with *reply*, one byte every *every* seconds; anything else with OK."""

    def answer(command: list[bytes]) -> Iterable[tuple[float, bytes]]:
        if command[0] != b"EVALSHA":
            return _ok(command)
        return [(every, reply[i : i + 1]) for i in range(len(reply))]

    return answer


def huge(announced: int, sent: int, then_every: float = 0.2) -> Answer:
    """Answer scripts with a bulk string said to be *announced* bytes long: *sent* of them at
    once (all of them, and the end of the reply, if *sent* is *announced*), then one byte every
    *then_every* seconds, under the socket timeout; anything else with OK."""

    def answer(command: list[bytes]) -> Iterable[tuple[float, bytes]]:
        return _ok(command) if command[0] != b"EVALSHA" else reply()

    def reply() -> Iterable[tuple[float, bytes]]:
        yield 0.0, b"$%d\r\n" % announced
        step = 65536
        for i in range(0, sent, step):
            yield 0.0, b"\0" * min(step, sent - i)
        if sent == announced:
            yield 0.0, b"\r\n"
            return
        for _ in range(announced - sent):
            yield then_every, b"\0"

    return answer


def _read_command(stream: BinaryIO) -> list[bytes] | None:
    line = stream.readline()
    if not line.startswith(b"*"):
        return None
    words = []
    for _ in range(int(line[1:])):
        size = int(stream.readline()[1:])
        words.append(stream.read(size + 2)[:-2])
    if words:
        words[0] = words[0].upper()
    return words


class FakeRedis:
    """``with FakeRedis(answer) as fake:`` listens on ``fake.url`` until the block ends."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.commands: list[list[bytes]] = []
        #: Bytes of answers handed to the kernel, all connections together: a client that
        #: stops reading stops this growing, once the socket buffers between them are full.
        self.sent = 0
        self._sent_lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self._listener.getsockname()[1]}/0"

    def __enter__(self) -> FakeRedis:
        self._listener.settimeout(0.1)
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:  # the 0.1 s timeout: look at the stop flag again
                continue
            self._spawn(self._serve, connection)

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(5)
        with connection, connection.makefile("rb") as stream:
            try:
                while not self._stop.is_set():
                    command = _read_command(stream)
                    if command is None:
                        return
                    self.commands.append(command)
                    for pause, chunk in self.answer(command):
                        if self._stop.wait(pause):
                            return
                        connection.sendall(chunk)
                        with self._sent_lock:
                            self.sent += len(chunk)
            except OSError:  # the client hung up (or stopped reading): what the tests want
                return
