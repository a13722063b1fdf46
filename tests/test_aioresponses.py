"""aioresponses and MemoramMiddleware: what the mock does to the middleware, and the recipe the
testing guide gives (mock other services, pass the Memoram API through to the emulator).

aioresponses replaces ``ClientSession._request`` whole, client middlewares included: a mocked
request never meets the middleware, so a test of code that forgot the middleware passes too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from memoram_auth.emulator import Emulator

aiohttp = pytest.importorskip("aiohttp")
aioresponses = pytest.importorskip("aioresponses")


def _middleware(emu: Emulator, tmp_path: Path) -> object:
    from memoram_auth import MemoramMiddleware

    return MemoramMiddleware(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)


def test_a_mocked_request_never_meets_the_middleware(tmp_path: Path) -> None:
    from yarl import URL  # aiohttp's, present once aiohttp is

    with Emulator() as emu:
        middleware = _middleware(emu, tmp_path)
        url = f"{emu.base_url}/tags"

        async def main() -> int:
            async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
                with aioresponses.aioresponses() as mocked:
                    mocked.get(url, payload=[])
                    async with session.get(url) as response:
                        await response.read()
                        sent = mocked.requests[("GET", URL(url))][0]
                        assert "Authorization" not in (sent.kwargs.get("headers") or {})
                        return int(response.status)

        # The mock answers 200 although no token was ever asked for, or sent.
        assert asyncio.run(main()) == 200
        assert emu.counters.token_requests == 0


def test_passing_the_api_through_to_the_emulator_runs_the_middleware(tmp_path: Path) -> None:
    with Emulator() as emu:
        middleware = _middleware(emu, tmp_path)
        other = "https://other.example/status"

        async def main() -> tuple[int, object]:
            # Other services mocked; the Memoram API (the emulator) passed through, where the
            # middleware runs, the token request included.
            with aioresponses.aioresponses(passthrough=[emu.base_url]) as mocked:
                mocked.get(other, payload={"ok": True})
                async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
                    async with session.get(f"{emu.base_url}/tags") as response:
                        await response.read()
                        status = int(response.status)
                    async with session.get(other) as response:
                        return status, await response.json()

        assert asyncio.run(main()) == (200, {"ok": True})
        assert emu.counters.token_requests == 1
        assert emu.counters.unauthorized == 0
