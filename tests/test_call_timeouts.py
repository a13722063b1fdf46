"""The caller's timeout bounds the token request made for that call, in every library.

A token endpoint that trickles its answer (``tests._hostile.Trickle``) is cut off by the call's
timeout (connect plus read, as a total), not by the policy's, which these tests set to ten
minutes: without the fix each would hang until pytest's own timeout. The elapsed-time bounds
below only end a hang; what is asserted is which deadline ended the token request (the error
says "the call's timeout") and how many token requests went out (no retry after it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import requests

from memoram_auth import MemoramAuth, MemoramAuthError, RetryPolicy
from memoram_auth.adapters.requests import send_budget
from memoram_auth.emulator import Emulator
from tests._hostile import Trickle

#: Ten minutes per attempt and in all: any deadline that ends a test sooner is the call's.
PATIENT = RetryPolicy(attempts=3, timeout=600.0, total_timeout=600.0, backoff=0.01)
CALLS = "the call's timeout"
HANG = 60  # seconds: only ends a hang (the bound under test is about one second)
HTTP = (
    str(Path(sys.executable).with_name("http"))
    if Path(sys.executable).with_name("http").exists()
    else shutil.which("http")
)


@pytest.mark.parametrize(
    ("timeout", "budget"),
    [(None, None), (2, 4.0), (2.5, 5.0), ((1, 3), 4.0), ((None, 3), None), ((1, None), None)],
)
def test_a_requests_timeout_is_connect_plus_read(timeout: object, budget: float | None) -> None:
    assert send_budget({"timeout": timeout}) == budget


def test_an_httpx_client_without_a_timeout_allows_the_token_request_ten_seconds() -> None:
    from memoram_auth.adapters.httpx import _budget

    with httpx.Client() as client:  # httpx's default: 5 s to connect, 5 s per read
        assert _budget(client.build_request("GET", "http://127.0.0.1/")) == 10.0
    with httpx.Client(timeout=None) as client:  # noqa: S113 - unbounded on purpose: the case
        assert _budget(client.build_request("GET", "http://127.0.0.1/")) is None
    with httpx.Client(timeout=httpx.Timeout(2, read=7)) as client:
        assert _budget(client.build_request("GET", "http://127.0.0.1/")) == 9.0


# -- requests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["auth=", "session="])
def test_requests_the_calls_timeout_bounds_the_token_request_after_a_401(
    route: str, tmp_path: Path
) -> None:
    # The first token comes at once and the API rejects it; the replacement trickles.
    with Trickle(prompt=1) as endpoint:
        base_url = f"{endpoint.origin}/api/v1"
        options = {"base_url": base_url, "cache_dir": tmp_path, "policy": PATIENT}

        def call() -> None:
            if route == "session=":
                with requests.Session() as session:
                    session.auth = MemoramAuth("mem_call_timeout", session=session, **options)
                    session.get(f"{base_url}/tags", timeout=(0.5, 0.5))
            else:
                auth = MemoramAuth("mem_call_timeout", **options)
                requests.get(f"{base_url}/tags", auth=auth, timeout=(0.5, 0.5))

        started = time.monotonic()
        with pytest.raises(MemoramAuthError) as caught:
            call()
        assert time.monotonic() - started < HANG
        assert (endpoint.token_requests, endpoint.unauthorized) == (2, 1)
    assert isinstance(caught.value, requests.RequestException)
    assert CALLS in str(caught.value)


def test_requests_before_the_first_request_the_policy_bounds_the_token_request(
    tmp_path: Path,
) -> None:
    # requests gives an auth no public route to the call's timeout before the request is
    # sent: the token fetched in __call__ is bounded by the policy's total_timeout, not by
    # timeout=0.1 (which would end it within 0.2 s).
    policy = RetryPolicy(attempts=3, timeout=1.0, total_timeout=1.0, backoff=0.01)
    with Trickle() as endpoint:
        base_url = f"{endpoint.origin}/api/v1"
        auth = MemoramAuth("mem_call_timeout", base_url=base_url, cache_dir=tmp_path, policy=policy)
        with pytest.raises(MemoramAuthError) as caught:
            requests.get(f"{base_url}/tags", auth=auth, timeout=0.1)
        assert (endpoint.token_requests, endpoint.unauthorized) == (1, 0)
    assert CALLS not in str(caught.value)
    assert "unavailable after 1 attempt(s)" in str(caught.value)


# -- httpx ------------------------------------------------------------------------------------


@pytest.mark.parametrize("flow", ["sync", "async"])
@pytest.mark.parametrize("own_client", [False, True], ids=["their-client", "own-client"])
def test_httpx_the_clients_timeout_bounds_the_whole_token_request(
    flow: str, own_client: bool, tmp_path: Path
) -> None:
    with Trickle() as endpoint:
        base_url = f"{endpoint.origin}/api/v1"
        # verify= makes the library send the token request with an httpx client of its own:
        # the user's timeout bounds it all the same.
        extra = {"verify": True} if own_client else {}
        auth = MemoramAuth(
            "mem_call_timeout", base_url=base_url, cache_dir=tmp_path, policy=PATIENT, **extra
        )

        async def main() -> None:
            async with httpx.AsyncClient(auth=auth, timeout=0.5) as client:
                await client.get(f"{base_url}/tags")

        def call() -> None:
            if flow == "async":
                asyncio.run(main())
                return
            with httpx.Client(auth=auth, timeout=0.5) as client:
                client.get(f"{base_url}/tags")

        started = time.monotonic()
        with pytest.raises(MemoramAuthError) as caught:
            call()
        assert time.monotonic() - started < HANG
        assert endpoint.token_requests == 1
    assert CALLS in str(caught.value)


# -- aiohttp ----------------------------------------------------------------------------------


def test_aiohttp_the_sessions_sock_read_bounds_the_token_request(tmp_path: Path) -> None:
    aiohttp = pytest.importorskip("aiohttp")
    from memoram_auth import MemoramMiddleware

    # A byte every 0.3 s: within sock_read=0.2 no byte comes, so each read times out.
    with Trickle() as endpoint:
        base_url = f"{endpoint.origin}/api/v1"
        middleware = MemoramMiddleware(
            "mem_call_timeout",
            base_url=base_url,
            cache_dir=tmp_path,
            policy=RetryPolicy(attempts=1, timeout=600.0, total_timeout=600.0),
        )

        async def main() -> None:
            timeout = aiohttp.ClientTimeout(total=None, sock_read=0.2)
            async with (
                aiohttp.ClientSession(middlewares=(middleware,), timeout=timeout) as session,
                session.get(f"{base_url}/tags") as response,
            ):
                await response.read()

        started = time.monotonic()
        with pytest.raises(MemoramAuthError) as caught:
            asyncio.run(main())
        assert time.monotonic() - started < HANG
        assert endpoint.token_requests == 1
    assert isinstance(caught.value, aiohttp.ClientError)
    assert "Timeout" in str(caught.value)


# -- httpie -----------------------------------------------------------------------------------


def _http(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert HTTP, "the http program is not installed"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MEMORAM_", "HTTPIE_"))}
    return subprocess.run(
        [HTTP, "--ignore-stdin", "-A", "memoram", *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=HANG,
        check=False,
    )


def _httpie_env(base_url: str, key: str, tmp_path: Path) -> dict[str, str]:
    return {
        "MEMORAM_BASE_URL": base_url,
        "MEMORAM_API_KEY": key,
        "MEMORAM_AUTH_CACHE_DIR": str(tmp_path / "cache"),
        "HTTPIE_CONFIG_DIR": str(tmp_path / "httpie"),
    }


def test_httpie_timeout_bounds_the_whole_token_request(tmp_path: Path) -> None:
    pytest.importorskip("httpie")
    # The default policy allows 10 s per attempt and 30 s in all; --timeout 0.5 allows the
    # token request 1 s (0.5 to connect, 0.5 to read), and no second attempt.
    with Trickle() as endpoint:
        base_url = f"{endpoint.origin}/api/v1"
        env = _httpie_env(base_url, "mem_call_timeout", tmp_path)
        done = _http(["--timeout", "0.5", f"{base_url}/tags"], env)
        assert (endpoint.token_requests, endpoint.unauthorized) == (1, 1)
    assert done.returncode == 1, done.stderr
    assert CALLS in done.stderr


def test_httpie_a_warm_run_sends_the_cached_token_at_once(tmp_path: Path) -> None:
    pytest.importorskip("httpie")
    with Emulator() as emu:
        env = _httpie_env(emu.base_url, emu.api_key, tmp_path)
        first = _http([f"{emu.base_url}/tags"], env)
        assert first.returncode == 0, first.stderr
        # A cold cache: the request goes out without a token (so that httpie's options reach
        # the token request), the 401 fetches one and the request is replayed.
        assert (emu.counters.token_requests, emu.counters.unauthorized) == (1, 1)
        for _ in range(2):
            again = _http([f"{emu.base_url}/tags"], env)
            assert again.returncode == 0, again.stderr
        # Warm: the cached token goes out with the first request; no 401, no token request.
        assert (emu.counters.token_requests, emu.counters.unauthorized) == (1, 1)


def test_a_call_waiting_on_another_threads_refresh_stops_at_its_timeout(tmp_path: Path) -> None:
    import threading

    # One thread refreshes through a trickling endpoint with a ten-minute policy; a second
    # caller with a 1 s budget gives up waiting for it instead of waiting with it.
    with Trickle() as endpoint:
        base_url = f"{endpoint.origin}/api/v1"
        auth = MemoramAuth(
            "mem_call_timeout", base_url=base_url, cache_dir=tmp_path, policy=PATIENT
        )
        first_done = threading.Event()

        def first() -> None:
            try:
                auth.provider.get_token()
            except MemoramAuthError:
                pass  # the endpoint stops when the test ends
            finally:
                first_done.set()

        thread = threading.Thread(target=first, daemon=True)
        thread.start()
        started = time.monotonic()
        while endpoint.token_requests == 0 and time.monotonic() - started < HANG:
            time.sleep(0.01)  # until the first refresh is under way (holds the locks)
        with pytest.raises(MemoramAuthError) as caught:
            auth.provider.get_token(within=1.0)
        assert not first_done.is_set()  # it gave up while the other refresh went on
        assert endpoint.token_requests == 1
    thread.join(timeout=HANG)
    assert CALLS in str(caught.value)
