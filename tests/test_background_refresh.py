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


def test_a_refresh_under_way_holds_no_request_in_the_mandatory_window(
    emu: Emulator, tmp_path: Path
) -> None:
    # The refresher is held inside its refresh until the token is past its usable life: the
    # requests of the mandatory window still go out, at once, with the current token, which
    # has not expired.
    auth = MemoramAuth(
        emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, background_refresh=True
    )
    provider = auth.provider
    assert isinstance(provider, TokenProvider)
    old = in_advisory_window(provider, emu)
    url = f"{emu.base_url}/tags"
    gate = Gate()
    with gate.registered():
        requests.get(url, auth=auth, timeout=10).raise_for_status()  # hands the refresh over
        assert gate.started.wait(30)
        # Time passes with the refresher held: 5 s of a 100 s token left, the last 10 s being
        # its mandatory window.
        now = time.time()
        provider._adopt(Token(old, obtained_at=now - 95, expires_at=now + 5), "test")
        answered = threading.Event()
        statuses: list[int] = []

        def call() -> None:
            statuses.append(requests.get(url, auth=auth, timeout=10).status_code)
            answered.set()

        threading.Thread(target=call, daemon=True).start()
        # The bound only ends a wait that, before this was fixed, lasted the lock's timeout.
        assert answered.wait(4), "a request waited for the background refresh"
        assert not gate.release.is_set()  # answered while the refresh was still held
        assert statuses == [200]
        assert sent_token(emu) == old
        assert emu.counters.token_requests == 0
        gate.release.set()
        wait_for(lambda: provider.fresh_authorization() is not None)
    requests.get(url, auth=auth, timeout=10).raise_for_status()
    assert sent_token(emu) != old
    assert emu.counters.token_requests == 1


def test_the_token_serves_until_it_expires_while_the_endpoint_is_down(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The token endpoint is down for the token's whole last quarter (4 s token: the last 1 s,
    # the last 0.4 s being the mandatory window). Every call to the API goes out with the
    # current token until it expires and none fails; the refresher's and the callers'
    # attempts take turns after pauses that grow (from 0.1 s here, so that there are several).
    from memoram_auth.core import refresher

    monkeypatch.setattr(refresher, "FIRST_RETRY_DELAY", 0.1)
    auth = MemoramAuth(
        emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, policy=FAST, background_refresh=True
    )
    provider = auth.provider
    assert isinstance(provider, TokenProvider)
    old = in_advisory_window(provider, emu, lifetime=4)
    token = provider.header.entry.token  # type: ignore[union-attr]
    emu.fail_next(10_000, status=503)
    failed_at: list[float] = []

    class Clocked(Gate):
        @hookimpl
        def memoram_auth_refresh_failed(
            self, base_url: str, key_fingerprint: str, error: str, background: bool
        ) -> None:
            failed_at.append(time.monotonic())

    url = f"{emu.base_url}/tags"
    gate = Clocked(hold=False)
    statuses: list[int] = []
    in_mandatory_window = 0
    with gate.registered(), requests.Session() as session:
        while time.time() < token.expires_at - 0.1:
            mandatory = time.time() >= token.usable_until
            statuses.append(session.get(url, auth=auth, timeout=10).status_code)
            in_mandatory_window += mandatory and time.time() < token.expires_at
            assert sent_token(emu) == old
            time.sleep(0.005)
        wait_for(lambda: not provider._ahead_queued)
    assert statuses
    assert set(statuses) == {200}
    assert in_mandatory_window > 0  # calls made past the token's usable life
    # Attempts were made, each after a pause at least twice the one before.
    assert len(failed_at) >= 2
    assert emu.counters.token_requests == len(failed_at) * FAST.attempts
    gaps = [later - earlier for earlier, later in zip(failed_at, failed_at[1:])]
    for number, gap in enumerate(gaps):
        assert gap >= 0.1 * 2**number


def test_the_refresher_sends_through_the_requests_session_given(
    emu: Emulator, tmp_path: Path
) -> None:
    # MemoramAuth(session=s): the user's settings live in s (its adapters, verify=, proxies),
    # and the refresher's token request goes through s as the caller's own would.
    sent: list[tuple[str, str]] = []

    class Recording(requests.adapters.HTTPAdapter):
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            sent.append((request.url or "", threading.current_thread().name))
            return super().send(request, **kwargs)

    url = f"{emu.base_url}/tags"
    gate = Gate(hold=False)
    with requests.Session() as session, gate.registered():
        session.mount("http://", Recording())
        auth = MemoramAuth(
            emu.api_key,
            base_url=emu.base_url,
            cache_dir=tmp_path,
            session=session,
            background_refresh=True,
        )
        provider = auth.provider
        assert isinstance(provider, TokenProvider)
        old = in_advisory_window(provider, emu)
        session.get(url, auth=auth, timeout=10).raise_for_status()  # hands the refresh over
        wait_for(lambda: provider.fresh_authorization() is not None)
        session.get(url, auth=auth, timeout=10).raise_for_status()
    assert sent_token(emu) != old
    assert emu.counters.token_requests == 1
    token_requests = [thread for sent_to, thread in sent if sent_to.endswith("/auth/token")]
    assert token_requests == ["memoram-auth-refresher"]
    assert [(name, details.get("background")) for name, details in gate.seen] == [
        ("started", None),
        ("acquired", True),
    ]


def test_with_httpx_a_failed_background_refresh_is_retried_through_the_users_client(
    emu: Emulator, tmp_path: Path
) -> None:
    # An httpx client's settings cannot be reached outside a request: the refresher sends
    # with the settings given to MemoramAuth and the environment, and when that fails, the
    # next request refreshes through the user's client, as without background refresh.
    sent: list[tuple[str, str]] = []

    class Recording(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            sent.append((request.url.path, threading.current_thread().name))
            return super().handle_request(request)

    auth = MemoramAuth(
        emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, policy=FAST, background_refresh=True
    )
    provider = auth.provider
    assert isinstance(provider, TokenProvider)
    old = in_advisory_window(provider, emu)
    emu.fail_next(FAST.attempts, status=503)  # the refresher's attempt
    url = f"{emu.base_url}/tags"
    gate = Gate(hold=False)
    with gate.registered(), httpx.Client(auth=auth, transport=Recording()) as client:
        client.get(url).raise_for_status()
        wait_for(lambda: provider._inline_next and not provider._ahead_queued)
        assert sent_token(emu) == old
        provider._next_advisory_try = 0  # the pause is over
        client.get(url).raise_for_status()
    assert sent_token(emu) != old
    assert [path for path, _ in sent if path.endswith("/auth/token")] == ["/api/v1/auth/token"]
    assert [(name, details.get("background")) for name, details in gate.seen] == [
        ("started", None),
        ("failed", True),
        ("acquired", False),
    ]


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


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_sends_on_connections_of_its_own(emu: Emulator, tmp_path: Path) -> None:
    # The shared requests transport (the refresher's, now that it sends through the caller's)
    # kept a connection to the token endpoint alive in the parent; a child that sent on it
    # would share the socket with the parent and its siblings, and could read their answers.
    from memoram_auth.transport import NetworkSettings
    from memoram_auth.transports.requests import requests_transport

    settings = NetworkSettings()
    auth = MemoramAuth(
        emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, background_refresh=True
    )
    provider = auth.provider
    assert isinstance(provider, TokenProvider)
    parent = requests_transport(settings)
    first = provider.get_token(parent)  # the parent's connection, kept alive
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        pid = os.fork()
    if pid == 0:  # the child: an exit code only
        code = 1
        try:
            own = requests_transport(settings)
            provider.invalidate(first.value)
            if own is not parent and provider.get_token(own).value != first.value:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert requests_transport(settings) is parent  # the parent keeps its own
    provider.invalidate(first.value)
    assert provider.get_token(parent).value != first.value  # the child's replacement, cached
    assert emu.counters.token_requests == 2


# -- when the refresh ahead begins ------------------------------------------------------------


@pytest.mark.parametrize("background", [True, False], ids=["background", "inline"])
def test_a_slow_endpoint_moves_a_short_tokens_refresh_earlier(
    background: bool, tmp_path: Path
) -> None:
    # A 4 s token from an endpoint that takes 0.5 s (3 s or less on the local clock): begun at
    # the advisory window, a refresh as slow as the last one could end after the token does;
    # the background one begins 1.5 times the request's duration before expiry, never in the
    # first half.
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
        assert entry.fresh_until <= token.expires_at - 0.75  # 1.5 x the 0.5 s request
        assert entry.fresh_until >= token.obtained_at + token.lifetime / 2
    else:
        assert entry.fresh_until == token.fresh_until
    # A one-hour token keeps its 10-minute advisory window either way.
    assert long_lived == pytest.approx(time.time() + 3000, abs=60)


def test_a_background_refresh_aims_at_expiry_not_at_the_mandatory_window(
    emu: Emulator,
) -> None:
    # Callers keep the token until it expires while the refresher works (static stability),
    # so the refresh need only end by then. Aimed at the mandatory window instead, it began
    # earlier than a caller's own refresh would even where the advisory window was long
    # enough: more token requests per lifetime with background refresh than without.
    provider = TokenProvider(
        emu.api_key, emu.base_url, cache=MemoryOnlyCache(), background_refresh=True
    )
    provider._lead = 1.5  # as after a token request that took 1 s
    now = time.time()

    def begins(lifetime: float) -> float:
        return provider._fresh_until(Token("x", obtained_at=now, expires_at=now + lifetime)) - now

    # An 8 s token's 2 s advisory window leaves the refresh time enough: begun there, as
    # without background refresh.
    assert begins(8) == pytest.approx(6)
    # A 4 s token's 1 s window does not: begun 1.5 s before expiry.
    assert begins(4) == pytest.approx(2.5)
    # Never in the first half of a token's life.
    assert begins(2.5) == pytest.approx(1.25)


def test_a_fleets_spread_never_begins_a_refresh_too_late_to_end_before_expiry(
    emu: Emulator,
) -> None:
    # A cache that a fleet shares spreads the refresh's start over part of the window; with
    # background refresh that part ends where a refresh as slow as the last one would end
    # after the token does (a 4 s token from a 1 s endpoint: no room at all).
    class Spread(MemoryOnlyCache):
        refresh_spread = 0.9

    provider = TokenProvider(emu.api_key, emu.base_url, cache=Spread(), background_refresh=True)
    provider._lead = 1.5  # as after a token request that took 1 s
    starts: dict[float, list[float]] = {4: [], 10: []}
    for lifetime, seen in starts.items():
        for _ in range(20):
            now = time.time()
            provider._adopt(Token("x", obtained_at=now, expires_at=now + lifetime), "test")
            entry = provider.header.entry
            assert entry is not None
            seen.append(entry.fresh_until - now)
    assert max(starts[4]) == pytest.approx(2.5)  # 1.5 s before expiry, not spread later
    # A 10 s token's window (from 2.5 s before expiry) leaves 1 s of room: spread over it,
    # never past 1.5 s before expiry (its usable life lasts until 1 s before).
    assert max(starts[10]) - min(starts[10]) > 0.1
    assert min(starts[10]) >= 7.5 - 1e-3
    assert max(starts[10]) <= 8.5 + 1e-3


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


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="gunicorn runs on Unix only")
def test_gunicorn_preload_workers_keep_fresh_tokens_without_waiting(tmp_path: Path) -> None:
    # A real gunicorn --preload: the master imports the app, which gets a token, then forks
    # three workers; clients call them every 20 ms for 3.5 token lifetimes through an endpoint
    # that takes 0.3 s. Each answer names its worker, a digest of the token it sent and
    # whether that worker's token in memory was unusable when the request began.
    import re
    import subprocess

    pytest.importorskip("gunicorn")
    with Emulator(token_delay=0.3) as emu:
        env = {
            **os.environ,
            "MEMORAM_BASE_URL": emu.base_url,
            "MEMORAM_API_KEY": emu.api_key,
            "MEMORAM_AUTH_CACHE_DIR": str(tmp_path / "cache"),
            "TEST_EXPIRES_IN": "4",
        }
        env.pop("MEMORAM_AUTH_BACKGROUND_REFRESH", None)
        command = [sys.executable, "-m", "gunicorn", "--preload", "--workers", "3"]
        command += ["--bind", "127.0.0.1:0", "--graceful-timeout", "5", "tests._gunicorn_app:app"]
        root = Path(__file__).parent.parent
        log = tmp_path / "gunicorn.log"
        with log.open("w") as stderr:
            server = subprocess.Popen(command, cwd=root, env=env, stderr=stderr, text=True)
        try:
            # Its log says where it listens and when each worker has booted.
            wait_for(
                lambda: log.read_text().count("Booting worker") == 3 or server.poll() is not None
            )
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log.read_text())
            assert found is not None, log.read_text()
            port = int(found.group(1))
            preloaded = emu.counters.token_requests
            end = time.time() + 3.5 * 4
            answers: list[dict[str, Any]] = []
            lock = threading.Lock()

            def client() -> None:
                with requests.Session() as session:
                    while time.time() < end:
                        got = session.get(f"http://127.0.0.1:{port}/", timeout=30).json()
                        with lock:
                            answers.append(got)
                        time.sleep(0.02)

            clients = [threading.Thread(target=client) for _ in range(4)]
            for thread in clients:
                thread.start()
            for thread in clients:
                thread.join()
        finally:
            server.terminate()
            server.wait(30)
        token_requests = emu.counters.token_requests
        unauthorized = emu.counters.unauthorized
    assert preloaded == 1  # the master's, before the fork
    assert answers
    assert {answer["status"] for answer in answers} == {200}
    assert unauthorized == 0
    assert not [answer for answer in answers if answer["unusable"]]  # no request waited
    workers: dict[int, list[str]] = {}
    for answer in answers:
        tokens = workers.setdefault(answer["pid"], [])
        if answer["token"] not in tokens:
            tokens.append(answer["token"])
    assert len(workers) >= 2
    for tokens in workers.values():
        assert len(tokens) >= 4  # the preloaded one and a fresh one per lifetime after it
    # One token request per refresh for the machine, not one per worker.
    every_token = {token for tokens in workers.values() for token in tokens}
    assert token_requests == len(every_token)
