"""Cost of MemoramMiddleware per aiohttp request, next to a middleware that only sets a header.

Per call: each middleware is awaited with real ``aiohttp.ClientRequest`` objects (captured from
a real session) and a handler that returns at once, so that only the middleware's own work is
timed, the cached-token path: origin test, fresh-token test, header, 401 test. Three patterns
of URLs: one URL again and again; two URLs in turn; a new URL object every call (as
``params=`` builds them), more than the middleware remembers. yarl hands out one URL object per
URL string, and the middleware remembers which objects need the token, so the first two skip
the origin test and the third pays it. "bare header" is the smallest middleware that sets the
header (a class whose ``__call__`` sets it and awaits the handler); the assignment alone,
awaited the same way without a middleware object, is shown for scale. End to end: GET /tags
over loopback keep-alive to the emulator, through a ``ClientSession`` with one middleware or the
other. Target: at most 1.3x the bare header, per call.

"clock and 401 test only" is a floor: what any middleware must add to the bare header to
never send a stale token and to replay after a 401 (a clock read, a status test), with no origin
test and no provider.

Wall-clock figures on a shared machine vary from run to run; ``--instructions`` (with valgrind
installed) counts the CPU instructions of the per-call loops instead, which repeat exactly.
They undercount the clock: under valgrind, reading it is a system call, whose instructions
are the kernel's and not counted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
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
FLOOR = "clock and 401 test only"
ONE_URL = "per call, one URL"
TWO_URLS = "per call, two URLs in turn"
NEW_URLS = "per call, a new URL each call"
_NEW_URLS = 600
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


class ClockAnd401Middleware:
    """The least a token middleware that never sends a stale token and replays after a 401
    can do: read the clock against the token's refresh deadline, set the header, test the
    answer for 401. No origin test, no provider: a floor, not a usable auth."""

    def __init__(self, header: str) -> None:
        self.header = header
        self.refresh_at = time.time() + 3600

    async def __call__(
        self, req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if time.time() < self.refresh_at:
            req.headers["Authorization"] = self.header
        response = await handler(req)
        if response.status != 401:
            return response
        return response  # a real one would replay here


class _Captured(Exception):
    def __init__(self, req: aiohttp.ClientRequest) -> None:
        super().__init__("captured")
        self.req = req


async def _capture(*urls: str) -> list[aiohttp.ClientRequest]:
    """Real ClientRequests for *urls*, as a middleware receives them (nothing is sent)."""
    captured: list[aiohttp.ClientRequest] = []

    async def capture(req: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:  # noqa: ANN401
        captured.append(req)
        raise _Captured(req)

    async with aiohttp.ClientSession(middlewares=(capture,)) as session:
        for url in urls:
            with contextlib.suppress(_Captured):
                await session.get(url)
    if len(captured) != len(urls):
        raise RuntimeError("a request was sent")
    return captured


class _Answer:
    status = 200


async def _batch(
    call: Callable[[aiohttp.ClientRequest, Any], Awaitable[Any]],
    reqs: list[aiohttp.ClientRequest],
    number: int,
) -> float:
    answer = _Answer()

    async def handler(_: aiohttp.ClientRequest) -> Any:  # noqa: ANN401
        return answer

    turns = max(1, number // len(reqs))
    start = time.perf_counter()
    for _ in range(turns):
        for req in reqs:
            await call(req, handler)
    return (time.perf_counter() - start) / (turns * len(reqs))


def _middlewares(ours: MemoramMiddleware) -> dict[str, Any]:
    async def assignment(req: aiohttp.ClientRequest, handler: Any) -> Any:  # noqa: ANN401
        req.headers["Authorization"] = "Bearer " + TOKEN
        return await handler(req)

    return {
        ASSIGNMENT: assignment,
        BARE: BareMiddleware("Bearer " + TOKEN),
        FLOOR: ClockAnd401Middleware("Bearer " + TOKEN),
        OURS: ours,
    }


def _patterns(base_url: str) -> dict[str, list[str]]:
    return {
        ONE_URL: [f"{base_url}/tags"],
        TWO_URLS: [f"{base_url}/tags", f"{base_url}/notes"],
        # More distinct URLs than the middleware remembers: each call meets the origin test.
        NEW_URLS: [f"{base_url}/notes?page={page}" for page in range(_NEW_URLS)],
    }


async def _per_call(
    ours: MemoramMiddleware, base_url: str, number: int, rounds: int
) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    calls = _middlewares(ours)
    for pattern, urls in _patterns(base_url).items():
        reqs = await _capture(*urls)
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(rounds):  # in turns, so that noise hits all alike
            for name, call in calls.items():
                samples[name].append(await _batch(call, reqs, number))
        results[pattern] = {name: statistics.median(values) for name, values in samples.items()}
    return results


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
        per_call = asyncio.run(_per_call(ours, emu.base_url, number, rounds))
        end_to_end = asyncio.run(_end_to_end(ours, f"{emu.base_url}/tags", e2e_number, e2e_rounds))
    measured = {**per_call, "GET over loopback": end_to_end}
    for what, results in measured.items():
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
    ratio = per_call[ONE_URL][OURS] / per_call[ONE_URL][BARE]
    others = ", ".join(
        f"{pattern.removeprefix('per call, ')} {results[OURS] / results[BARE]:.2f}x"
        for pattern, results in per_call.items()
        if pattern != ONE_URL
    )
    notes.append(
        f"aiohttp: MemoramMiddleware {ratio:.2f}x the bare-header middleware per call, one URL "
        f"(target ≤ 1.3x: {verdict(ratio, 1.3, quick=quick)}), "
        f"{(per_call[ONE_URL][OURS] - per_call[ONE_URL][BARE]) * 1e6:+.2f} µs; {others}; "
        f"end to end {end_to_end[OURS] / end_to_end[BARE]:.2f}x"
    )
    header = ["measured", "middleware", "µs per request", "µs over bare", "vs bare header"]
    return table(header, rows), notes


# -- --instructions: the per-call loops counted by valgrind ---------------------------------------


def _child(name: str, pattern: str, number: int) -> None:
    """Run *number* calls of one middleware on one pattern: what valgrind counts."""
    with Emulator() as emu, tempfile.TemporaryDirectory() as tmp:
        ours = MemoramMiddleware(emu.api_key, base_url=emu.base_url, cache_dir=tmp)
        ours.provider.get_token()

        async def main() -> None:
            reqs = await _capture(*_patterns(emu.base_url)[pattern])
            await _batch(_middlewares(ours)[name], reqs, number)

        asyncio.run(main())


def _instructions(name: str, pattern: str, number: int) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, "-m", "benchmarks.bench_aiohttp", "--child"]
    command += [name, pattern, str(number)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(done.stderr.rpartition("Collected : ")[2].split()[0])


def run_instructions() -> tuple[str, list[str]]:
    """CPU instructions per call: the difference of two runs, 6,000 and 18,000 calls."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt-get install valgrind)")
    small, large = 6_000, 18_000
    jobs = [(n, p, c) for p in _patterns("") for n in (BARE, FLOOR, OURS) for c in (small, large)]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: _instructions(*job), jobs)))
    rows: list[list[object]] = []
    notes: list[str] = []
    for pattern in _patterns(""):
        per = {
            n: (counts[n, pattern, large] - counts[n, pattern, small]) / (large - small)
            for n in (BARE, FLOOR, OURS)
        }
        for name, value in per.items():
            rows.append([pattern, name, f"{value:,.0f}", f"{value / per[BARE]:.2f}x"])
        notes.append(
            f"aiohttp, {pattern}: {per[OURS] / per[BARE]:.2f}x the bare header in instructions"
        )
    header = ["measured", "middleware", "instructions per call", "vs bare header"]
    return table(header, rows), notes


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1:2] == ["--instructions"]:
        text, notes = run_instructions()
        print(text, "", *notes, sep="\n")
    else:
        from ._common import main

        main(run, __doc__)
