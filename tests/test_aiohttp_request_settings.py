"""aiohttp: a request's own ``ssl=`` and ``proxy=`` reach the token request made for it, and a
request's ``ssl=False`` does not weaken it. Over loopback TLS with a throwaway CA (trustme) and
a real CONNECT proxy (``tests._proxy``)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest

from memoram_auth import MemoramAuthError
from memoram_auth.emulator import Emulator
from tests._proxy import ConnectProxy
from tests._sockets import RecordingConnector, wait_closed

aiohttp = pytest.importorskip("aiohttp")


def _get(emu: Emulator, tmp_path: Path, **per_request: Any) -> int:
    """One GET of the API through a session whose connector trusts nothing special."""
    from memoram_auth import MemoramMiddleware

    middleware = MemoramMiddleware(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)

    async def main() -> int:
        # Connections are not reused, so that each request opens its own proxy tunnel.
        connector = RecordingConnector(force_close=True)
        async with (
            aiohttp.ClientSession(middlewares=(middleware,), connector=connector) as session,
            session.get(f"{emu.base_url}/tags", **per_request) as response,
        ):
            await response.read()  # a body left unread leaves its transport open
            status = int(response.status)
        # TLS connections (through the proxy too) may still be closing in the background.
        await wait_closed(connector)
        return status

    return asyncio.run(main())


def test_a_requests_ssl_context_applies_to_its_token_request(
    tls_emulator: Emulator, ca_bundle: str, tmp_path: Path
) -> None:
    context = ssl.create_default_context(cafile=ca_bundle)
    assert _get(tls_emulator, tmp_path, ssl=context) == 200
    assert tls_emulator.counters.token_requests == 1


def test_a_requests_proxy_carries_its_token_request(
    tls_emulator: Emulator, ca_bundle: str, tmp_path: Path, connect_proxy: ConnectProxy
) -> None:
    context = ssl.create_default_context(cafile=ca_bundle)
    status = _get(tls_emulator, tmp_path, ssl=context, proxy=connect_proxy.url)
    assert status == 200
    assert tls_emulator.counters.token_requests == 1
    # One tunnel for the token request, one for the API request.
    assert connect_proxy.tunnels == [f"127.0.0.1:{tls_emulator.port}"] * 2


def test_a_requests_ssl_false_does_not_weaken_its_token_request(
    tls_emulator: Emulator, tmp_path: Path
) -> None:
    # The API request may skip verification; the key is sent only where it verifies.
    with pytest.raises(MemoramAuthError, match="certificate"):
        _get(tls_emulator, tmp_path, ssl=False)
    assert tls_emulator.counters.token_requests == 0


def test_a_session_built_without_verification_applies_to_its_token_request(
    tls_emulator: Emulator, tmp_path: Path
) -> None:
    # The session's own choice (its connector), not one request's: the token request follows.
    from memoram_auth import MemoramMiddleware

    middleware = MemoramMiddleware(
        tls_emulator.api_key, base_url=tls_emulator.base_url, cache_dir=tmp_path
    )

    async def main() -> int:
        connector = RecordingConnector(ssl=False)
        async with (
            aiohttp.ClientSession(middlewares=(middleware,), connector=connector) as session,
            session.get(f"{tls_emulator.base_url}/tags") as response,
        ):
            await response.read()
            status = int(response.status)
        await wait_closed(connector)
        return status

    assert asyncio.run(main()) == 200
    assert tls_emulator.counters.token_requests == 1
