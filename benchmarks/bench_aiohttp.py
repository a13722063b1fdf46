"""Cost of MemoramMiddleware per aiohttp request, next to a middleware that only sets a header.

Per call: each middleware is awaited with a real ``aiohttp.ClientRequest`` (captured from a
real session) and a handler that returns at once, so that only the middleware's own work is
timed, the cached-token path: origin test, fresh-token test, header, 401 test. "bare header"
is the smallest middleware that sets the header (a class whose ``__call__`` sets it and awaits
the handler); the assignment alone, awaited the same way without a middleware object, is shown
for scale. End to end: GET /tags over loopback keep-alive to the emulator, through a
``ClientSession`` with one middleware or the other. Target: at most 1.3x the bare header, per
call.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from memoram_auth import MemoramMiddleware
from memoram_auth.emulator import Emulator

from ._common import table, verdict

TOKEN = "header.payload.signature"  # noqa: S105 - a dummy
ASSIGNMENT = "assignment alone"
BARE = "bare header"
OURS = "MemoramMiddleware"


class BareMiddleware:
    """The least an aiohttp middleware can do: set the header."""

    def __init__(self, header: str) -> None:
        self.header = header

    async def __call__(
        self, req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        req.headers["Authorization"] = self.header
        return await handler(req)


class _Captured(Exception):
    def __init__(self, req: aiohttp.ClientRequest) -> None:
        super().__init__("captured")
        self.req = req


async def _capture(url: str) -> aiohttp.ClientRequest:
    """A real ClientRequest for *url*, as a middleware receives it (nothing is sent)."""

    async def capture(req: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:  # noqa: ANN401
        raise _Captured(req)

    async with aiohttp.ClientSession(middlewares=(capture,)) as session:
        try:
            await session.get(url)
        except _Captured as captured:
            return captured.req
    raise RuntimeError("the request was sent")


class _Answer:
    status = 200


async def _batch(
    call: Callable[[aiohttp.ClientRequest, Any], Awaitable[Any]],
    req: aiohttp.ClientRequest,
    number: int,
) -> float:
    answer = _Answer()

    async def handler(_: aiohttp.ClientRequest) -> Any:  # noqa: ANN401
        return answer

    start = time.perf_counter()
    for _ in range(number):
        await call(req, handler)
    return (time.perf_counter() - start) / number


async def _per_call(
    ours: MemoramMiddleware, url: str, number: int, rounds: int
) -> dict[str, float]:
    req = await _capture(url)
    bare = BareMiddleware("Bearer " + TOKEN)

    async def assignment(req: aiohttp.ClientRequest, handler: Any) -> Any:  # noqa: ANN401
        req.headers["Authorization"] = "Bearer " + TOKEN
        return await handler(req)

    calls: dict[str, Any] = {ASSIGNMENT: assignment, BARE: bare, OURS: ours}
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):  # in turns, so that noise hits all alike
        for name, call in calls.items():
            samples[name].append(await _batch(call, req, number))
    return {name: statistics.median(values) for name, values in samples.items()}


async def _end_to_end(
    ours: MemoramMiddleware, url: str, number: int, rounds: int
) -> dict[str, float]:
    samples: dict[str, list[float]] = {BARE: [], OURS: []}
    middlewares: dict[str, Any] = {BARE: BareMiddleware(ours.provider.authorization()), OURS: ours}
    sessions = {
        name: aiohttp.ClientSession(middlewares=(middleware,))
        for name, middleware in middlewares.items()
    }
    try:
        for _ in range(rounds):
            for name, session in sessions.items():
                start = time.perf_counter()
                for _ in range(number):
                    async with session.get(url) as response:
                        await response.read()
                samples[name].append((time.perf_counter() - start) / number)
    finally:
        for session in sessions.values():
            await session.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def run(quick: bool) -> tuple[str, list[str]]:
    number, rounds = (2_000, 3) if quick else (20_000, 25)
    e2e_number, e2e_rounds = (50, 2) if quick else (300, 7)
    notes: list[str] = []
    rows: list[list[object]] = []
    with Emulator() as emu, tempfile.TemporaryDirectory() as tmp:
        ours = MemoramMiddleware(emu.api_key, base_url=emu.base_url, cache_dir=tmp)
        ours.provider.get_token()  # warm: every measured call uses the cached token
        url = f"{emu.base_url}/tags"
        per_call = asyncio.run(_per_call(ours, url, number, rounds))
        end_to_end = asyncio.run(_end_to_end(ours, url, e2e_number, e2e_rounds))
    for what, results in (("per call", per_call), ("GET over loopback", end_to_end)):
        bare = results[BARE]
        for name, seconds in results.items():
            rows.append(
                [
                    what,
                    name,
                    f"{seconds * 1e6:.2f}",
                    f"{(seconds - bare) * 1e6:+.2f}",
                    f"{seconds / bare:.2f}x",
                ]
            )
    ratio = per_call[OURS] / per_call[BARE]
    notes.append(
        f"aiohttp: MemoramMiddleware {ratio:.2f}x the bare-header middleware per call (target "
        f"≤ 1.3x: {verdict(ratio, 1.3)}), {(per_call[OURS] - per_call[BARE]) * 1e6:+.2f} µs; "
        f"end to end {end_to_end[OURS] / end_to_end[BARE]:.2f}x"
    )
    header = ["measured", "middleware", "µs per request", "µs over bare", "vs bare header"]
    return table(header, rows), notes


if __name__ == "__main__":
    from ._common import main

    main(run, __doc__)
