"""Getting a token as a sequence of steps, so that any HTTP library and any event loop can run it.

The provider and the exchange are generators that *yield* what they need done and receive the
result, as plain data a test can compare (h11's events are the model):

- a :class:`TokenRequest` to send; the answer is a :class:`RawResponse`, or the
  :class:`TransportError` the sending raised;
- :class:`Wait`, a backoff; the answer is ``None``;
- :class:`Blocking`, a named call that may block (a lock wait, cache I/O) and so must not run
  on an event loop's thread; the answer is what it returns.

They never do I/O themselves. One interpreter runs them, in two twins: :func:`run` in the
calling thread, and :func:`run_async` on any event loop anyio supports (asyncio, uvloop, trio),
blocking steps in worker threads. Only the sending differs between drivers: a
:class:`Transport` called in place (:func:`drive`), a coroutine (:func:`drive_async`), or the
user's own httpx client, to which an auth flow yields each request (see
``memoram_auth/adapters/httpx.py``), so that its TLS trust, proxies, transport and mocks apply.

This is google-auth's transport idea (credentials refresh through a small request object that
wraps the user's library) with httpx's auth-flow generators as the mechanism.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable
from typing import Any, Protocol, Union

__all__ = [
    "Answer",
    "AsyncSend",
    "Blocking",
    "Done",
    "RawResponse",
    "Step",
    "SyncSend",
    "TokenRequest",
    "Transport",
    "TransportError",
    "Wait",
    "drive",
    "drive_async",
    "run",
    "run_async",
]


class TokenRequest:
    """One token request to send: a POST of *body* to *url*.

    ``timeout`` bounds connecting and each read; ``deadline`` (a ``time.monotonic()`` value)
    bounds the whole attempt, the answer's last byte included, for a transport that can
    enforce it (a server that trickles its answer must not hold the caller, nor the lock).
    """

    __slots__ = ("body", "deadline", "headers", "timeout", "url")

    def __init__(
        self, url: str, headers: dict[str, str], body: bytes, timeout: float, deadline: float
    ) -> None:
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.deadline = deadline

    def attempt(self, *, timeout: float, deadline: float) -> TokenRequest:
        """This request again, for one attempt with its own timeout and deadline."""
        return TokenRequest(self.url, dict(self.headers), self.body, timeout, deadline)

    def __repr__(self) -> str:
        return f"TokenRequest({self.url!r})"  # never the body: it holds the API key

    def __reduce__(self) -> str | tuple[object, ...]:
        from ..keys import refusal

        raise TypeError(refusal("a TokenRequest"))


class RawResponse:
    """What came back, before any interpretation. :meth:`header` ignores case."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        self.status = status
        # Lower-cased once here; a repeated header keeps its first value, as email.Message does.
        self.headers: dict[str, str] = {}
        for name, value in headers:
            self.headers.setdefault(name.lower(), value)
        self.body = body

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class TransportError(Exception):
    """The request got no HTTP answer (refused, reset, DNS, TLS, timeout). Safe to show.

    ``retry`` is False for failures that another attempt cannot heal: a certificate that does
    not verify, TLS to a plain-HTTP server, an unsupported proxy.
    """

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class Transport(Protocol):
    """Sends one token request and returns the answer, or raises :class:`TransportError`."""

    def __call__(self, request: TokenRequest) -> RawResponse: ...


class Wait:
    """Sleep before the next attempt; the answer is ``None``."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Wait) and other.seconds == self.seconds

    def __repr__(self) -> str:
        return f"Wait({self.seconds!r})"


class Blocking:
    """Call ``call(*args, **kwargs)`` where blocking is allowed; the answer is what it returns.

    A named call, not a closure: steps compare equal when they call the same function (bound
    methods of one object are equal) with equal arguments, and show as ``Blocking(name)``.
    """

    __slots__ = ("args", "call", "kwargs")

    def __init__(self, call: Callable[..., Any], *args: object, **kwargs: object) -> None:
        self.call = call
        self.args = args
        self.kwargs = kwargs

    @property
    def name(self) -> str:
        """The called function's name, e.g. ``"cached_token"``."""
        return str(getattr(self.call, "__name__", repr(self.call)))

    def run(self) -> Any:  # noqa: ANN401 - whatever the call returns
        return self.call(*self.args, **self.kwargs)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Blocking)
            and other.call == self.call
            and other.args == self.args
            and other.kwargs == self.kwargs
        )

    def __repr__(self) -> str:
        return f"Blocking({self.name})"  # not the arguments: a token's value may be one


class Done:
    """What :func:`run_async` yields last: the steps' result (an async generator cannot return
    a value)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:  # noqa: ANN401 - what the steps return
        self.value = value


Step = Union[TokenRequest, Wait, Blocking]
Answer = Any  # RawResponse | TransportError for a TokenRequest, None for Wait, Blocking's result
#: Sends a token request for :func:`run`: a generator, so that it can yield the request to the
#: user's client (httpx's auth flows) or, yielding nothing, send it in place.
SyncSend = Callable[[TokenRequest], Generator[Any, Any, RawResponse]]
AsyncSend = Callable[[TokenRequest], Awaitable[RawResponse]]


def run(
    steps: Generator[Step, Answer, Any],
    send: SyncSend,
    sleep: Callable[[float], None] = time.sleep,
) -> Generator[Any, Any, Any]:
    """Run *steps* in this thread (``yield from``): the one sync interpreter.

    Each request goes through ``yield from send(request)``; a :class:`TransportError` it raises
    is the step's answer. Whatever *send* yields is yielded on. The steps are closed however
    this ends, so the locks they hold are released.
    """
    answer: Answer = None
    try:
        while True:
            try:
                step = steps.send(answer)
            except StopIteration as done:
                return done.value
            if isinstance(step, TokenRequest):
                try:
                    answer = yield from send(step)
                except TransportError as exc:
                    answer = exc
            elif isinstance(step, Wait):
                sleep(step.seconds)
                answer = None
            else:
                answer = step.run()
    finally:
        steps.close()


def drive(
    steps: Generator[Step, Answer, Any],
    transport: Transport,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:  # noqa: ANN401 - what the steps return
    """:func:`run` with *transport* called in place: the steps' result."""

    def send(request: TokenRequest) -> Generator[Any, Any, RawResponse]:
        return transport(request)
        yield  # a generator that yields nothing: the transport answers in place

    flow = run(steps, send, sleep)
    try:
        flow.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("a transport called in place yields nothing")  # pragma: no cover


async def run_async(
    steps: Generator[Step, Answer, Any], send: AsyncSend | None = None
) -> AsyncGenerator[TokenRequest | Done, Answer]:
    """Run *steps* on the running event loop: the async twin of :func:`run`.

    Requests are sent with ``await send(request)``; without *send*, each is yielded and its
    answer (a response or a TransportError) expected back through ``asend`` (how an httpx
    async auth flow passes it to the user's client). Yields :class:`Done` with the result last.
    Blocking steps run in worker threads and are never abandoned half-way: a cancelled caller
    waits for a lock wait to end (it is bounded) so that a lock is never left taken.
    """
    import anyio
    import anyio.to_thread

    answer: Answer = None
    try:
        while True:
            try:
                step = steps.send(answer)
            except StopIteration as done:
                yield Done(done.value)
                return
            if isinstance(step, TokenRequest):
                if send is None:
                    answer = yield step
                else:
                    try:
                        answer = await send(step)
                    except TransportError as exc:
                        answer = exc
            elif isinstance(step, Wait):
                await anyio.sleep(step.seconds)
                answer = None
            else:
                answer = await anyio.to_thread.run_sync(step.run)
    finally:
        steps.close()


async def drive_async(steps: Generator[Step, Answer, Any], send: AsyncSend) -> Any:  # noqa: ANN401 - what the steps return
    """:func:`run_async` with *send* awaited for each request: the steps' result."""
    flow = run_async(steps, send)
    try:
        done = await flow.__anext__()
    finally:
        await flow.aclose()
    assert isinstance(done, Done)  # noqa: S101 - with a send, nothing else comes out
    return done.value
