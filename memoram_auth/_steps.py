"""Getting a token as a sequence of steps, so that any HTTP library and any event loop can run it.

The provider and the exchange are generators that *yield* what they need done and receive the
result: :class:`Send` (a :class:`~memoram_auth.transport.TokenRequest`; the answer is a
:class:`RawResponse` or the :class:`TransportError` it raised), :class:`Wait` (a backoff)
and :class:`Blocking` (a lock wait or cache I/O, which must not run on an event loop's
thread). They never do I/O themselves. A driver runs the steps:

- :func:`drive` in the calling thread, sending with a :class:`Transport` (the stdlib one, or
  the requests adapter's);
- :func:`drive_async` on any event loop anyio supports (asyncio, uvloop, trio), blocking steps
  in worker threads;
- the httpx auth flows, which *yield* each token request to the user's own client, so that its
  TLS trust, client certificate, proxies, transport and mocks apply (see ``_httpx.py``).

This is google-auth's transport idea (credentials refresh through a small request object that
wraps the user's library) with httpx's auth-flow generators as the mechanism.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Union

from .transport import RawResponse, TokenRequest, Transport, TransportError

#: Send one token request; the step's answer is the response or the TransportError it raised.
Send = TokenRequest

__all__ = [
    "Answer",
    "AsyncSend",
    "Blocking",
    "Send",
    "Step",
    "Steps",
    "Wait",
    "drive",
    "drive_async",
]


class Wait:
    """Sleep before the next attempt; the answer is ``None``."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class Blocking:
    """Run ``function()`` where blocking is allowed; the answer is what it returns."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[[], Any]) -> None:
        self.function = function


Step = Union[Send, Wait, Blocking]
Answer = Any  # RawResponse | TransportError for Send, None for Wait, the result for Blocking
Steps = Generator[Step, Answer, Any]
AsyncSend = Callable[[Send], Awaitable[RawResponse]]


def drive(
    steps: Generator[Step, Answer, Any],
    send: Transport,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:  # noqa: ANN401 - what the steps return
    """Run *steps* in this thread, sending token requests with *send*."""
    answer: Answer = None
    try:
        while True:
            step = steps.send(answer)
            if isinstance(step, Send):
                try:
                    answer = send(step)
                except TransportError as exc:
                    answer = exc
            elif isinstance(step, Wait):
                sleep(step.seconds)
                answer = None
            else:
                answer = step.function()
    except StopIteration as done:
        return done.value
    finally:
        steps.close()


async def drive_async(steps: Generator[Step, Answer, Any], send: AsyncSend) -> Any:  # noqa: ANN401 - what the steps return
    """Run *steps* on the running event loop (asyncio, uvloop or trio, through anyio).

    Blocking steps run in worker threads and are never abandoned half-way: a cancelled caller
    waits for a lock wait to end (it is bounded) so that a lock is never left taken.
    """
    import anyio.to_thread

    answer: Answer = None
    try:
        while True:
            step = steps.send(answer)
            if isinstance(step, Send):
                try:
                    answer = await send(step)
                except TransportError as exc:
                    answer = exc
            elif isinstance(step, Wait):
                await anyio.sleep(step.seconds)
                answer = None
            else:
                answer = await anyio.to_thread.run_sync(step.function)
    except StopIteration as done:
        return done.value
    finally:
        steps.close()
