"""Background refresh: in the advisory window a refresher thread gets the next token while every
request goes on with the current one; idle processes, forks, failures and the opt-out.

"No request waited" is shown with a gate rather than a clock: a throwaway plugin holds the
refresher inside its ``memoram_auth_background_refresh_started`` event, where it holds this
process's refresh lock and the cache's slot lock, and requests made meanwhile must still come
back, with the current token.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from memoram_auth import MemoramAuth
from memoram_auth.adapters.requests import RequestsAuth
from memoram_auth.cache import FileCache, MemoryOnlyCache
from memoram_auth.core.refresher import FIRST_RETRY_DELAY, MAX_RETRY_DELAY, retry_delay
from memoram_auth.emulator import Emulator
from memoram_auth.hookspecs import hookimpl
from memoram_auth.provider import TokenProvider, get_provider
from memoram_auth.token import Token

from .conftest import FAST
from .test_plugins import registered


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


class Gate:
    """A plugin that holds the background refresh at its start until released, and records
    the events. Register it with :meth:`registered`."""

    def __init__(self, *, hold: bool = True) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.seen: list[tuple[str, dict[str, Any]]] = []

    @contextlib.contextmanager
    def registered(self) -> Iterator[Gate]:
        """The gate registered for a with block, and released however the block ends: the
        process has one refresher thread, and a test that fails or skips while the gate holds
        it must not hold the next tests' refreshes for 30 s each."""
        with registered(self):
            try:
                yield self
            finally:
                self.release.set()

    @hookimpl
    def memoram_auth_background_refresh_started(self, base_url: str, key_fingerprint: str) -> None:
        self.seen.append(("started", {"base_url": base_url, "key": key_fingerprint}))
        self.started.set()
        self.release.wait(30)

    @hookimpl
    def memoram_auth_token_acquired(
        self, base_url: str, key_fingerprint: str, expires_at: float, background: bool
    ) -> None:
        self.seen.append(("acquired", {"background": background, "expires_at": expires_at}))

    @hookimpl
    def memoram_auth_refresh_failed(
        self, base_url: str, key_fingerprint: str, error: str, background: bool
    ) -> None:
        self.seen.append(("failed", {"background": background, "error": error}))


def in_advisory_window(provider: TokenProvider, emu: Emulator, *, lifetime: float = 100) -> str:
    """Give *provider* a token the API accepts, as if it had 20 % of *lifetime* left: in the
    advisory window (the last quarter), outside the mandatory one (the last tenth)."""
    value: str = emu.state.issue(emu.api_key, None)["token"]
    now = time.time()
    remaining = lifetime / 5
    provider._adopt(
        Token(value, obtained_at=now + remaining - lifetime, expires_at=now + remaining), "test"
    )
    return value


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Wait until *condition* holds (not a timing assertion: the deadline only ends a hang)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.01)


def sent_token(emu: Emulator) -> str:
    """The token the last API request carried."""
    api = [r for r in emu.requests if r.path.endswith("/tags")]
    return api[-1].headers["Authorization"].removeprefix("Bearer ")


# -- every client -----------------------------------------------------------------------------


def _loop(main: Callable[[], Any], loop: str) -> None:
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(main())
    elif loop == "trio":
        trio = pytest.importorskip("trio")
        trio.run(main)
    else:
        asyncio.run(main())


def client_call(client: str, emu: Emulator, tmp_path: Path) -> tuple[Any, Callable[[], None]]:
    """An auth object for *client* and a function that makes one API request with it."""
    loop = client.partition("-")[2]
    if loop in ("uvloop", "trio"):
        # Skipped here, before the test registers its gate and hands a refresh over (the
        # "min" environment has no uvloop).
        pytest.importorskip(loop)
    url = f"{emu.base_url}/tags"
    if client.startswith("aiohttp"):
        aiohttp = pytest.importorskip("aiohttp")
        from memoram_auth import MemoramMiddleware

        middleware = MemoramMiddleware(
            emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, background_refresh=True
        )

        async def aiohttp_get() -> None:
            session = aiohttp.ClientSession(middlewares=(middleware,))
            async with session, session.get(url) as response:
                await response.read()  # a body left unread leaves its transport open
                assert response.status == 200

        return middleware, lambda: _loop(aiohttp_get, loop)
    auth = MemoramAuth(
        emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, background_refresh=True
    )
    if client == "requests":
        return auth, lambda: requests.get(url, auth=auth, timeout=10).raise_for_status()
    if client == "httpx":

        def httpx_get() -> None:
            with httpx.Client(auth=auth) as c:
                c.get(url).raise_for_status()

        return auth, httpx_get

    async def httpx_aget() -> None:
        async with httpx.AsyncClient(auth=auth) as c:
            (await c.get(url)).raise_for_status()

    return auth, lambda: _loop(httpx_aget, loop)


CLIENTS = [
    "requests",
    "httpx",
    "httpx-asyncio",
    "httpx-uvloop",
    "httpx-trio",
    "aiohttp-asyncio",
    "aiohttp-uvloop",
]


@pytest.mark.parametrize("client", CLIENTS)
def test_no_request_waits_while_the_token_is_refreshed_ahead(
    client: str, emu: Emulator, tmp_path: Path
) -> None:
    auth, call = client_call(client, emu, tmp_path)
    provider = auth.provider
    old = in_advisory_window(provider, emu)
    gate = Gate()
    with gate.registered():
        call()  # in the advisory window: hands the refresh over and goes on
        assert sent_token(emu) == old
        assert gate.started.wait(30)
        # The refresher is now held inside its refresh, with both locks: requests go on.
        call()
        call()
        assert sent_token(emu) == old
        assert emu.counters.token_requests == 0
        gate.release.set()
        wait_for(lambda: provider.fresh_authorization() is not None)
        call()
    new = sent_token(emu)
    assert new != old
    assert emu.counters.token_requests == 1
    assert [name for name, _ in gate.seen] == ["started", "acquired"]
    assert gate.seen[1][1]["background"] is True
    assert old not in repr(gate.seen)
    assert new not in repr(gate.seen)
    assert emu.api_key not in repr(gate.seen)


def test_threads_share_one_background_refresh(emu: Emulator, tmp_path: Path) -> None:
    provider = TokenProvider(
        emu.api_key, emu.base_url, cache=FileCache(tmp_path), background_refresh=True
    )
    old = in_advisory_window(provider, emu)
    gate = Gate()
    got: list[str] = []
    with gate.registered():

        def worker() -> None:
            for _ in range(20):
                got.append(provider.get_token().value)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # The refresher thread may reach its start event after the workers are done: wait for
        # it (the bound only ends a hang), then let it finish.
        assert gate.started.wait(30)
        gate.release.set()
        wait_for(lambda: provider.fresh_authorization() is not None)
    assert got == [old] * 160  # all served while the refresh was held
    assert emu.counters.token_requests == 1
    assert provider.get_token().value != old


# -- the opt-out, and the short-lived programs ------------------------------------------------


def test_on_by_default_off_by_argument_or_environment(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEMORAM_AUTH_BACKGROUND_REFRESH")  # set off for the other tests
    cache = MemoryOnlyCache()
    assert TokenProvider(emu.api_key, emu.base_url, cache=cache).background is True
    assert MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path).provider.background
    on = get_provider(emu.api_key, emu.base_url, cache_dir=tmp_path)
    off = get_provider(emu.api_key, emu.base_url, cache_dir=tmp_path, background_refresh=False)
    assert on.background is True
    assert off.background is False
    assert on is not off  # callers that asked for different behaviour do not share one
    assert not MemoramAuth(
        emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, background_refresh=False
    ).provider.background
    monkeypatch.setenv("MEMORAM_AUTH_BACKGROUND_REFRESH", "off")
    assert TokenProvider(emu.api_key, emu.base_url, cache=cache).background is False
    # The argument wins over the environment.
    assert TokenProvider(emu.api_key, emu.base_url, cache=cache, background_refresh=True).background
    from memoram_auth import ConfigurationError

    with pytest.raises(ConfigurationError, match="background_refresh"):
        TokenProvider(emu.api_key, emu.base_url, cache=cache, background_refresh="no")  # type: ignore[arg-type]


def test_httpie_and_the_command_line_refresh_inline(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both make a request or two and exit: no thread, and nothing that could delay the exit.
    monkeypatch.delenv("MEMORAM_AUTH_BACKGROUND_REFRESH")
    monkeypatch.setenv("MEMORAM_API_KEY", emu.api_key)
    monkeypatch.setenv("MEMORAM_BASE_URL", emu.base_url)
    pytest.importorskip("httpie")
    from types import SimpleNamespace

    from memoram_auth.cli import _settings
    from memoram_auth.httpie_plugin import MemoramAuthPlugin

    plugin = MemoramAuthPlugin()
    plugin.raw_auth = None
    auth = plugin.get_auth()
    assert isinstance(auth, RequestsAuth)
    assert auth.provider.background is False
    args = SimpleNamespace(api_key=None, base_url=None, no_disk_cache=True, cache_dir=None)
    assert _settings(args).background_refresh is False


def test_opted_out_the_advisory_request_refreshes_itself(emu: Emulator, tmp_path: Path) -> None:
    provider = TokenProvider(
        emu.api_key, emu.base_url, cache=FileCache(tmp_path), background_refresh=False
    )
    old = in_advisory_window(provider, emu)
    gate = Gate(hold=False)
    with gate.registered():
        new = provider.get_token()
    assert new.value != old  # the caller refreshed, before returning
    assert emu.counters.token_requests == 1
    assert gate.seen == [("acquired", {"background": False, "expires_at": new.expires_at})]


# -- only while tokens are used ---------------------------------------------------------------


def test_an_idle_process_asks_for_no_token(emu: Emulator, tmp_path: Path) -> None:
    provider = TokenProvider(
        emu.api_key,
        emu.base_url,
        cache=FileCache(tmp_path),
        expires_in=1,
        background_refresh=True,
    )
    first = provider.get_token()
    time.sleep(3.2)  # three lifetimes without a call
    assert emu.counters.token_requests == 1
    assert provider.get_token().value != first.value  # used again: refreshed, inline (expired)
    assert emu.counters.token_requests == 2


# -- failures: static stability, backoff, the caller's own client -----------------------------


def test_retry_delays_grow_with_jitter() -> None:
    first = [retry_delay(1) for _ in range(50)]
    assert all(FIRST_RETRY_DELAY <= d <= FIRST_RETRY_DELAY * 1.5 for d in first)
    assert len(set(first)) > 1  # spread out
    assert all(2 * FIRST_RETRY_DELAY <= retry_delay(2) <= 3 * FIRST_RETRY_DELAY for _ in range(20))
    assert all(MAX_RETRY_DELAY <= retry_delay(40) <= MAX_RETRY_DELAY * 1.5 for _ in range(20))


def test_an_endpoint_down_for_the_last_quarter_fails_no_call(
    emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A 4 s token: advisory window from 1 s before expiry, not handed out in the last 0.4 s.
    provider = TokenProvider(
        emu.api_key, emu.base_url, cache=FileCache(tmp_path), policy=FAST, background_refresh=True
    )
    old = in_advisory_window(provider, emu, lifetime=4)
    usable_until = provider.header.entry.token.usable_until  # type: ignore[union-attr]
    emu.fail_next(1000, status=503)
    gate = Gate(hold=False)
    served: list[str] = []
    with gate.registered():
        while time.time() < usable_until - 0.05:
            served.append(provider.get_token().value)  # raises on a failure
            time.sleep(0.005)
        wait_for(lambda: not provider._ahead_queued)
    assert served
    assert set(served) == {old}
    # One background refresh, with the policy's retries, then a pause longer than the window.
    assert emu.counters.token_requests == FAST.attempts
    assert [name for name, _ in gate.seen] == ["started", "failed"]
    assert gate.seen[1][1]["background"] is True
    assert provider._next_advisory_try >= usable_until  # backing off past the window
    assert "in the background failed" in caplog.text
    assert old not in caplog.text


def test_after_a_background_failure_the_next_attempt_is_the_callers(
    emu: Emulator, tmp_path: Path
) -> None:
    # The refresher's stdlib transport may lack what the caller's client has (an httpx
    # client's verify=, say): after it fails, a request refreshes through its own client.
    provider = TokenProvider(
        emu.api_key, emu.base_url, cache=FileCache(tmp_path), policy=FAST, background_refresh=True
    )
    old = in_advisory_window(provider, emu)
    emu.fail_next(FAST.attempts, status=503)
    gate = Gate(hold=False)
    with gate.registered():
        assert provider.get_token().value == old
        wait_for(lambda: ("failed", True) in [(n, d.get("background")) for n, d in gate.seen])
        wait_for(lambda: not provider._ahead_queued)
        assert provider.get_token().value == old  # backing off: no attempt
        assert emu.counters.token_requests == FAST.attempts
        provider._next_advisory_try = 0  # the pause is over
        used: list[str] = []

        def caller_transport(request: Any) -> Any:
            used.append(request.url)
            from memoram_auth.transport import UrllibTransport

            return UrllibTransport()(request)

        new = provider.get_token(caller_transport)  # inline, through the caller's transport
        assert new.value != old
        assert used == [f"{emu.base_url}/auth/token"]
    assert [(n, d.get("background")) for n, d in gate.seen] == [
        ("started", None),
        ("failed", True),
        ("acquired", False),
    ]
    # And the next advisory-window refresh goes to the refresher again.
    assert provider._inline_next is False


def test_a_cache_that_raises_backs_the_refresher_off_too(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(MemoryOnlyCache):
        def lock(self, slot: str, timeout: float) -> Any:
            raise RuntimeError("a secret-looking message from elsewhere")

    provider = TokenProvider(emu.api_key, emu.base_url, cache=Broken(), background_refresh=True)
    old = in_advisory_window(provider, emu)
    assert provider.get_token().value == old
    wait_for(lambda: provider._inline_next)  # failed, and backing off
    wait_for(lambda: not provider._ahead_queued)
    for _ in range(20):
        assert provider.get_token().value == old  # no new attempt, no error
    assert provider._next_advisory_try > time.time()
    assert emu.counters.token_requests == 0
    assert "RuntimeError" in caplog.text
    assert "secret-looking" not in caplog.text


def test_a_refresher_that_wakes_past_expiry_just_refreshes(emu: Emulator, tmp_path: Path) -> None:
    # A process frozen (serverless) with a refresh queued, thawed after the token's life.
    provider = TokenProvider(
        emu.api_key, emu.base_url, cache=FileCache(tmp_path), background_refresh=True
    )
    value = emu.state.issue(emu.api_key, None)["token"]
    provider._adopt(Token(value, obtained_at=time.time() - 100, expires_at=time.time() - 1), "test")
    provider.refresh_ahead()
    assert provider.get_token().value != value
    assert emu.counters.token_requests == 1


# -- fork --------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_refreshes_with_its_own_thread_and_locks(
    emu: Emulator, tmp_path: Path
) -> None:
    # The parent's refresher is held mid-refresh, holding the process's refresh lock, when
    # the process forks: the child has no refresher thread and would wait forever on that
    # lock. Its own refresher takes the machine's slot lock after the parent's refresh, reads
    # the parent's token from the cache and adopts it: one token request for both.
    provider = TokenProvider(
        emu.api_key, emu.base_url, cache=FileCache(tmp_path), background_refresh=True
    )
    old = in_advisory_window(provider, emu)
    gate = Gate()
    with gate.registered():
        assert provider.get_token().value == old
        assert gate.started.wait(30)
        with warnings.catch_warnings():
            # Python 3.12+: "This process is multi-threaded, use of fork() may lead to
            # deadlocks": the very case this test is about.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: no pytest from here on, only an exit code
            code = 1
            try:
                gate.release.set()  # the child's copy of the gate
                if provider.get_token().value == old:  # handed over, not waited for
                    deadline = time.monotonic() + 30
                    while provider.fresh_authorization() is None and time.monotonic() < deadline:
                        time.sleep(0.01)
                    if provider.fresh_authorization() is not None:
                        code = 0
            finally:
                sys.stdout.flush()
                os._exit(code)
        gate.release.set()
        _, status = os.waitpid(pid, 0)
        wait_for(lambda: provider.fresh_authorization() is not None)
    assert os.waitstatus_to_exitcode(status) == 0
    assert emu.counters.token_requests == 1


# -- when the refresh ahead begins ------------------------------------------------------------


@pytest.mark.parametrize("background", [True, False], ids=["background", "inline"])
def test_a_slow_endpoint_moves_a_short_tokens_refresh_earlier(
    background: bool, tmp_path: Path
) -> None:
    # A 4 s token from an endpoint that takes 0.5 s: begun at the advisory window (1 s before
    # expiry, 0.6 s before the mandatory one), a refresh as slow as the last one would end
    # with requests waiting; the background one begins earlier, never in the first half.
    with Emulator(token_delay=0.5) as emu:
        provider = TokenProvider(
            emu.api_key,
            emu.base_url,
            cache=FileCache(tmp_path),
            expires_in=4,
            background_refresh=background,
        )
        token = provider.get_token()
        long_lived = provider._fresh_until(
            Token("x", obtained_at=time.time(), expires_at=time.time() + 3600)
        )
    entry = provider.header.entry
    assert entry is not None
    if background:
        assert entry.fresh_until < token.fresh_until
        assert entry.fresh_until <= token.usable_until - 0.75  # 1.5 x the 0.5 s request
        assert entry.fresh_until >= token.obtained_at + token.lifetime / 2
    else:
        assert entry.fresh_until == token.fresh_until
    # A one-hour token keeps its 10-minute advisory window either way.
    assert long_lived == pytest.approx(time.time() + 3000, abs=60)


def _preforked_worker(auth: MemoramAuth, url: str, seconds: float, gate: Gate) -> dict[str, Any]:
    """What a forked worker does: two threads calling the API every 50 ms for *seconds*."""
    provider = auth.provider
    report: dict[str, Any] = {"calls": 0, "failures": 0, "waited": 0, "tokens": []}
    lock = threading.Lock()
    end = time.time() + seconds

    def serve() -> None:
        with requests.Session() as session:
            while time.time() < end:
                entry = provider.header.entry
                # A request waits only for a token it cannot use: none, or one in its
                # mandatory window.
                waits = entry is None or time.time() >= entry.usable_until
                response = session.get(url, auth=auth, timeout=10)
                with lock:
                    report["calls"] += 1
                    report["waited"] += waits
                    report["failures"] += response.status_code != 200
                    value = response.request.headers["Authorization"]
                    if value not in report["tokens"]:
                        report["tokens"].append(value)
                time.sleep(0.05)

    threads = [threading.Thread(target=serve) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report["events"] = [(name, details.get("background")) for name, details in gate.seen]
    return report


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_preforked_workers_keep_fresh_tokens_without_waiting(emu: Emulator, tmp_path: Path) -> None:
    # gunicorn --preload, without gunicorn: the parent builds the auth object and gets a token,
    # then forks workers that call the API every 50 ms for three lifetimes or more.
    import json

    auth = MemoramAuth(
        emu.api_key,
        base_url=emu.base_url,
        cache_dir=tmp_path,
        expires_in=4,
        background_refresh=True,
    )
    url = f"{emu.base_url}/tags"
    requests.get(url, auth=auth, timeout=10).raise_for_status()
    lifetime = auth.provider.header.entry.token.lifetime  # type: ignore[union-attr]
    gate = Gate(hold=False)
    workers: list[tuple[int, int]] = []
    with gate.registered():
        for _ in range(3):
            read, write = os.pipe()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
                pid = os.fork()
            if pid == 0:  # a worker: report as JSON on the pipe, then exit
                try:
                    os.close(read)
                    report = _preforked_worker(auth, url, 3.5 * lifetime, gate)
                    os.write(write, json.dumps(report).encode())
                finally:
                    os._exit(0)
            os.close(write)
            workers.append((pid, read))
        reports = []
        for pid, read in workers:
            with os.fdopen(read, "rb") as pipe:
                reports.append(json.loads(pipe.read() or b"{}"))
            os.waitpid(pid, 0)
    for report in reports:
        assert report["calls"] > 0
        assert report["failures"] == 0
        assert report["waited"] == 0
        assert len(report["tokens"]) >= 4  # the preloaded one and one per lifetime after it
        # Every token the worker fetched, it fetched in the background.
        assert all(background for name, background in report["events"] if name != "started")
    # One token request per refresh for the machine, not one per worker: each worker saw
    # (nearly) every token there was.
    seen = min(len(report["tokens"]) for report in reports)
    assert emu.counters.token_requests <= seen + 1
