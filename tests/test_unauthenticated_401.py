"""The silent 401 (issue 16, point 2): why a request MemoramAuth left alone was refused.

The adapters call ``AuthCore.note_unauthenticated_401(url)`` for a 401 to a request they did
not add the token to; these tests drive that decision directly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from memoram_auth.adapters import base as adapter_base
from memoram_auth.adapters.base import AuthCore

BASE_URL = "http://127.0.0.1:8765/api/v1"
KEY = "mem_" + "5" * 48


@pytest.fixture(autouse=True)
def _fresh_memory() -> Iterator[None]:
    # The origins warned about are remembered process-wide: each test starts with none.
    saved = set(adapter_base._noted_origins)
    adapter_base._noted_origins.clear()
    try:
        yield
    finally:
        adapter_base._noted_origins.clear()
        adapter_base._noted_origins.update(saved)


@pytest.fixture
def core() -> AuthCore:
    return AuthCore(KEY, base_url=BASE_URL, cache_dir=False)


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "memoram_auth" and r.levelno == logging.WARNING
    ]


def test_a_401_from_another_origin_names_it_the_base_url_and_the_fix(
    core: AuthCore, caplog: pytest.LogCaptureFixture
) -> None:
    assert core.note_unauthenticated_401("https://api.memoram.app/api/v1/tags?user_id=u1")
    (message,) = warnings_logged(caplog)
    assert message.startswith("https://api.memoram.app answered 401")
    assert BASE_URL in message
    assert "MEMORAM_BASE_URL" in message
    assert "base_url=" in message
    assert "e.g. https://api.memoram.app/api/v1" in message
    assert KEY not in message


def test_one_warning_per_origin(core: AuthCore, caplog: pytest.LogCaptureFixture) -> None:
    noted = [
        core.note_unauthenticated_401("https://api.memoram.app/api/v1/tags"),
        core.note_unauthenticated_401("https://API.memoram.app:443/api/v1/memory-blobs"),
        core.note_unauthenticated_401("https://api.memoram.app:8443/api/v1/tags"),
        core.note_unauthenticated_401("http://api.memoram.app/api/v1/tags"),
        # Another auth object with the same configuration: still the same origin, still once.
        AuthCore(KEY, base_url=BASE_URL, cache_dir=False).note_unauthenticated_401(
            "https://api.memoram.app/x"
        ),
    ]
    assert noted == [True, False, True, True, False]
    origins = [m.split(" ", 1)[0] for m in warnings_logged(caplog)]
    assert origins == [
        "https://api.memoram.app",
        "https://api.memoram.app:8443",
        "http://api.memoram.app",
    ]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"{BASE_URL}/tags", id="the-api-itself"),
        pytest.param(f"{BASE_URL}/auth/token", id="the-token-endpoint"),
        pytest.param("http://127.0.0.1:8765/elsewhere", id="same-origin-other-path"),
        pytest.param("ftp://example.com/file", id="not-http"),
        pytest.param("not a url", id="garbage"),
        pytest.param("http://example.com:99999/", id="bad-port"),
    ],
)
def test_nothing_is_said_for_our_own_origin_or_no_origin(
    core: AuthCore, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    assert core.note_unauthenticated_401(url) is False
    assert warnings_logged(caplog) == []


def test_credentials_in_the_url_never_reach_the_log(
    core: AuthCore, caplog: pytest.LogCaptureFixture
) -> None:
    assert core.note_unauthenticated_401("https://alice:s3cret@[::1]:9000/api/v1/tags")
    (message,) = warnings_logged(caplog)
    assert message.startswith("https://[::1]:9000 answered 401")
    assert "s3cret" not in message
    assert "alice" not in message


def test_the_memory_of_origins_is_bounded(core: AuthCore, caplog: pytest.LogCaptureFixture) -> None:
    limit = adapter_base.MAX_NOTED_ORIGINS
    noted = [core.note_unauthenticated_401(f"https://host{i}.example/") for i in range(limit + 5)]
    assert noted == [True] * limit + [False] * 5
    assert len(adapter_base._noted_origins) == limit
    assert len(warnings_logged(caplog)) == limit


@pytest.mark.parametrize("adapter", ["requests", "httpx", "httpx-async"])
def test_every_adapter_says_why_a_request_it_left_alone_came_back_401(
    adapter: str, caplog: pytest.LogCaptureFixture, tmp_path: object
) -> None:
    import asyncio

    import httpx
    import requests

    from memoram_auth import MemoramAuth
    from memoram_auth.emulator import Emulator

    # The key is for one API; the request goes to another (MEMORAM_BASE_URL left unset, say).
    with Emulator() as configured, Emulator() as other:
        auth = MemoramAuth(configured.api_key, base_url=configured.base_url, cache_dir=False)
        url = f"{other.base_url}/tags"
        caplog.set_level(logging.WARNING, logger="memoram_auth")
        for _ in range(2):
            if adapter == "requests":
                status = requests.get(url, auth=auth, timeout=10).status_code
            elif adapter == "httpx":
                with httpx.Client(auth=auth) as client:
                    status = client.get(url).status_code
            else:

                async def call() -> int:
                    async with httpx.AsyncClient(auth=auth) as client:
                        return (await client.get(url)).status_code

                status = asyncio.run(call())
            assert status == 401
        logged = warnings_logged(caplog)
        assert len(logged) == 1  # once per origin, however many 401s
        assert other.origin in logged[0]
        assert configured.base_url in logged[0]
        assert "MEMORAM_BASE_URL" in logged[0]
        assert configured.counters.token_requests == 0  # no token went anywhere
