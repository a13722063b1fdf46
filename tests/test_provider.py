"""The token provider: single flight across threads, processes and coroutines; refresh windows."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
import pytest

from memoram_auth import EndpointUnavailableError, KeyRejectedError, MemoramAuthWarning
from memoram_auth.cache import FileCache, MemoryOnlyCache
from memoram_auth.core.steps import drive
from memoram_auth.emulator import Emulator
from memoram_auth.provider import TokenProvider, advisory_window, get_provider, mandatory_window
from memoram_auth.token import Token, token_digest
from memoram_auth.transport import RawResponse, TokenRequest, UrllibTransport

from .conftest import FAST

WORKER = str(Path(__file__).with_name("_worker.py"))


def provider_for(emu: Emulator, cache_dir: Path, **kwargs: object) -> TokenProvider:
    return TokenProvider(emu.api_key, emu.base_url, cache=FileCache(cache_dir), **kwargs)  # type: ignore[arg-type]


def run_worker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, WORKER, *args], capture_output=True, text=True, timeout=timeout, check=True
    )


def api_status(emu: Emulator, token: str) -> int:
    request = urllib.request.Request(
        f"{emu.base_url}/tags", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


@pytest.mark.parametrize(
    ("lifetime", "advisory", "mandatory"),
    [(3600, 600, 60), (600, 150, 60), (4, 1, 0.4), (0, 0, 0)],
    ids=["hour", "ten-minutes", "four-seconds", "zero"],
)
def test_refresh_windows_scale_with_lifetime(
    lifetime: float, advisory: float, mandatory: float
) -> None:
    assert advisory_window(lifetime) == pytest.approx(advisory)
    assert mandatory_window(lifetime) == pytest.approx(mandatory)


def test_one_request_then_memory(memoram_emulator: Emulator, tmp_path: Path) -> None:
    provider = provider_for(memoram_emulator, tmp_path)
    first = provider.get_token()
    assert provider.get_token() is first
    assert memoram_emulator.counters.token_requests == 1
    assert api_status(memoram_emulator, first.value) == 200


def test_one_provider_per_key_and_cache(memoram_emulator: Emulator, tmp_path: Path) -> None:
    a = get_provider(memoram_emulator.api_key, memoram_emulator.base_url, cache_dir=tmp_path)
    b = get_provider(
        f" {memoram_emulator.api_key}\n", memoram_emulator.base_url + "/", cache_dir=tmp_path
    )
    c = get_provider(
        memoram_emulator.api_key, memoram_emulator.base_url, cache_dir=tmp_path / "other"
    )
    assert a is b
    assert a is not c


def test_repr_shows_fingerprint_not_key(memoram_emulator: Emulator, tmp_path: Path) -> None:
    provider = provider_for(memoram_emulator, tmp_path)
    assert memoram_emulator.api_key not in repr(provider)
    assert provider.fingerprint in repr(provider)


def test_threads_share_one_request(tmp_path: Path) -> None:
    with Emulator(token_delay=0.3) as emu:
        provider = provider_for(emu, tmp_path)
        barrier = threading.Barrier(32)
        values: list[str] = []

        def work() -> None:
            barrier.wait()
            values.append(provider.get_token().value)

        threads = [threading.Thread(target=work) for _ in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(values) == 32
        assert len(set(values)) == 1
        assert emu.counters.token_requests == 1


def test_warm_disk_cache_serves_a_new_process(memoram_emulator: Emulator, tmp_path: Path) -> None:
    token = provider_for(memoram_emulator, tmp_path).get_token()
    result = run_worker(
        "get", memoram_emulator.base_url, memoram_emulator.api_key, str(tmp_path), "4"
    )
    assert json.loads(result.stdout) == [token.value] * 4
    assert memoram_emulator.counters.token_requests == 1


def test_memory_only_cache_is_not_shared(memoram_emulator: Emulator) -> None:
    for _ in range(2):
        TokenProvider(
            memoram_emulator.api_key, memoram_emulator.base_url, cache=MemoryOnlyCache()
        ).get_token()
    assert memoram_emulator.counters.token_requests == 2


@pytest.mark.slow
def test_eight_processes_of_eight_threads_make_one_request(tmp_path: Path) -> None:
    with Emulator(token_delay=0.5) as emu:
        command = [sys.executable, WORKER, "get", emu.base_url, emu.api_key, str(tmp_path), "8"]
        processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(8)]
        values: list[str] = []
        for process in processes:
            out, _ = process.communicate(timeout=120)
            assert process.returncode == 0
            values += json.loads(out)
        assert len(values) == 64
        assert len(set(values)) == 1
        assert emu.counters.token_requests == 1
        assert api_status(emu, values[0]) == 200


@pytest.mark.slow
def test_a_killed_lock_holder_does_not_delay_the_next_caller(tmp_path: Path) -> None:
    with Emulator(token_delay=5.0) as emu:
        command = [sys.executable, WORKER, "hold", emu.base_url, emu.api_key, str(tmp_path)]
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as holder:
            deadline = time.monotonic() + 30
            while emu.counters.token_requests == 0:  # the holder is now mid-exchange, lock held
                assert time.monotonic() < deadline, "the holder never asked for a token"
                time.sleep(0.02)
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=10)
        emu.token_delay = 0
        # A lock left held would be waited for up to its timeout, past pytest-timeout's 120 s,
        # and then warned about (an error here): the kill released it, so neither happens.
        token = provider_for(emu, tmp_path, lock_timeout=600.0).get_token()
        assert api_status(emu, token.value) == 200


def test_a_lock_held_too_long_is_waited_for_only_up_to_the_timeout(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    provider = provider_for(memoram_emulator, tmp_path, lock_timeout=0.3)
    # Another "process" holds the lock and hangs.
    held = provider.cache.lock(provider.slot, timeout=1)
    with held, pytest.warns(MemoramAuthWarning, match="fetching one anyway"):
        token = provider.get_token()
    assert api_status(memoram_emulator, token.value) == 200


def test_corrupt_cache_file_is_replaced(memoram_emulator: Emulator, tmp_path: Path) -> None:
    provider = provider_for(memoram_emulator, tmp_path)
    path = tmp_path / f"{provider.slot}.token"
    path.write_bytes(b"memoram-auth token cache v1\nobtained_at: 0\nexpires_at: 6")
    path.chmod(0o600)  # private, as the cache writes it: only damaged
    with pytest.warns(MemoramAuthWarning, match="damaged"):
        token = provider.get_token()
    assert f"token: {token.value}" in path.read_text().splitlines()


def test_unwritable_directory_degrades_to_memory(memoram_emulator: Emulator) -> None:
    provider = TokenProvider(
        memoram_emulator.api_key, memoram_emulator.base_url, cache=FileCache("/proc/self")
    )
    with pytest.warns(MemoramAuthWarning, match="memory only"):
        token = provider.get_token()
    assert provider.get_token() is token
    assert memoram_emulator.counters.token_requests == 1


def test_missing_directory_is_created(memoram_emulator: Emulator, tmp_path: Path) -> None:
    directory = tmp_path / "new" / "memoram-auth"
    provider = provider_for(memoram_emulator, directory)
    provider.get_token()
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    files = sorted(p.name for p in directory.iterdir())
    assert files == [f"{provider.slot}.lock", f"{provider.slot}.token"]
    for path in directory.iterdir():
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert memoram_emulator.api_key not in path.read_text()


def test_invalidate_replaces_the_rejected_token(memoram_emulator: Emulator, tmp_path: Path) -> None:
    provider = provider_for(memoram_emulator, tmp_path)
    first = provider.get_token()
    memoram_emulator.revoke_all()
    assert api_status(memoram_emulator, first.value) == 401
    provider.invalidate(first.value)
    second = provider.get_token()
    assert second.value != first.value
    assert api_status(memoram_emulator, second.value) == 200
    assert memoram_emulator.counters.token_requests == 2


def test_invalidate_leaves_a_replacement_alone(memoram_emulator: Emulator, tmp_path: Path) -> None:
    provider = provider_for(memoram_emulator, tmp_path)
    old = provider.get_token()
    provider.invalidate(old.value)
    replacement = provider.get_token()
    provider.invalidate(old.value)  # a late 401 for a request that went out with the old one
    assert provider.get_token() is replacement
    assert memoram_emulator.counters.token_requests == 2


def test_a_401_for_an_older_token_also_drops_a_routine_newer_one(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    # The current token was not fetched because of a rejection: whatever rejected the older
    # one (a revocation of every token) may have rejected it too.
    provider = provider_for(memoram_emulator, tmp_path)
    current = provider.get_token()
    provider.invalidate("an.older.token")
    replacement = provider.get_token()
    assert replacement.value != current.value
    assert replacement.after_rejection
    assert memoram_emulator.counters.token_requests == 2


def test_another_process_adopts_the_replacement_without_a_request(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    # Two providers on one cache directory behave as two processes would.
    a, b = provider_for(memoram_emulator, tmp_path), provider_for(memoram_emulator, tmp_path)
    old = a.get_token()
    assert b.get_token().value == old.value
    memoram_emulator.revoke_all()
    a.invalidate(old.value)
    new = a.get_token()
    b.invalidate(old.value)
    assert b.get_token().value == new.value
    assert memoram_emulator.counters.token_requests == 2


def test_authorization_is_built_once_per_token_and_follows_invalidation(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    provider = provider_for(memoram_emulator, tmp_path)
    first = provider.authorization()
    assert first == "Bearer " + provider.get_token().value
    assert provider.authorization() is first  # the per-request path builds no string
    assert asyncio.run(provider.authorization_async()) is first
    provider.invalidate(first.split()[1])
    second = provider.authorization()
    assert second != first
    assert second == "Bearer " + provider.get_token().value
    assert memoram_emulator.counters.token_requests == 2


def seed(provider: TokenProvider, token: str, *, remaining: float, lifetime: float = 3600) -> None:
    """Put *token* in the cache as if it had *remaining* seconds left of *lifetime*."""
    now = time.time()
    fake = Token(token, obtained_at=now + remaining - lifetime, expires_at=now + remaining)
    provider.cache.store(
        provider.slot, fake, base_url=provider.base_url, key_fingerprint=provider.fingerprint
    )


def test_a_rejected_token_is_not_replaced_by_one_that_predates_the_rejection(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    # Process a still uses X while process b has refreshed ahead of expiry to Y; then the API
    # revokes every token issued so far (both). a's replacement must not be Y, which was
    # already around when X was rejected, or a's one replay gets a 401 too (seen in the soak).
    a, b = provider_for(memoram_emulator, tmp_path), provider_for(memoram_emulator, tmp_path)
    x = a.get_token()
    seed(b, x.value, remaining=300)  # b sees X as due for its advisory refresh
    assert b.get_token().value == x.value
    y = b.get_token()  # b refreshes ahead: Y goes to the cache, a keeps X in memory
    assert y.value != x.value
    assert a.get_token() is x
    memoram_emulator.revoke_all()
    a.invalidate(x.value)
    z = a.get_token()
    assert z.value not in (x.value, y.value)
    assert api_status(memoram_emulator, z.value) == 200
    # b, rejected on Y a moment later, cannot tell this revocation from one after Z was
    # issued: Z replaces X, not Y, and was obtained before b's 401. So b's replay gets a token
    # of its own, one request more, rather than risking a second 401 (see
    # test_a_second_revocation_is_not_answered_with_a_replacement_for_the_first).
    b.invalidate(y.value)
    w = b.get_token()
    assert w.value not in (x.value, y.value, z.value)
    assert w.replaces == token_digest(y.value)
    assert api_status(memoram_emulator, w.value) == 200
    assert memoram_emulator.counters.token_requests == 4


def test_a_token_fetched_after_the_rejection_is_adopted_without_a_request(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    # The other way round: b refreshed (routinely) after a's token was rejected, so b's token
    # cannot have been revoked with it.
    a, b = provider_for(memoram_emulator, tmp_path), provider_for(memoram_emulator, tmp_path)
    x = a.get_token()
    a.invalidate(x.value)
    b.cache.delete(b.slot)
    time.sleep(0.01)  # obtained_at is the wall clock: make "after" unambiguous
    y = b.get_token()
    assert a.get_token().value == y.value
    assert memoram_emulator.counters.token_requests == 2


def test_advisory_window_refreshes_once_and_keeps_serving(
    memoram_emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = provider_for(memoram_emulator, tmp_path, policy=FAST)
    current = memoram_emulator.state.issue(memoram_emulator.api_key, None)["token"]
    seed(provider, current, remaining=300)  # inside the last 10 minutes, outside the last minute
    memoram_emulator.fail_next(3, status=503)
    with caplog.at_level(logging.WARNING, logger="memoram_auth"):
        assert provider.get_token().value == current  # adopted from the cache: no request
        assert provider.get_token().value == current  # refresh failed: the current token serves
    assert memoram_emulator.counters.token_requests == 3
    assert "ahead of expiry failed" in caplog.text
    assert memoram_emulator.api_key not in caplog.text
    assert current not in caplog.text
    provider.get_token()  # within the retry interval: no new attempt
    assert provider.authorization() == "Bearer " + current  # the same, through the header path
    assert memoram_emulator.counters.token_requests == 3
    provider._next_advisory_try = 0  # the interval has passed
    fresh = provider.get_token()
    assert fresh.value != current
    assert memoram_emulator.counters.token_requests == 4


def test_mandatory_window_waits_for_a_new_token(memoram_emulator: Emulator, tmp_path: Path) -> None:
    provider = provider_for(memoram_emulator, tmp_path, policy=FAST)
    current = memoram_emulator.state.issue(memoram_emulator.api_key, None)["token"]
    seed(provider, current, remaining=30)  # inside the last minute: not handed out
    memoram_emulator.fail_next(3, status=503)
    with pytest.raises(EndpointUnavailableError):
        provider.get_token()
    fresh = provider.get_token()
    assert fresh.value != current
    assert fresh.remaining() > 3000


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_failed_refresh_ahead_of_expiry_does_not_hand_out_a_token_past_its_deadline(
    memoram_emulator: Emulator, tmp_path: Path, flavour: str
) -> None:
    # The refresh ahead of expiry outlasts the current token's usable life (the endpoint
    # failing for the whole retry budget, ~8 s by default): the caller gets the refresh's
    # error, not the token, which by then is in its last moments or expired (a 401 caused by
    # us; the log said "valid -5 s more").
    emu = memoram_emulator
    provider = provider_for(emu, tmp_path, policy=FAST)
    now = time.time()
    value = emu.state.issue(emu.api_key, None)["token"]
    # A 20 s lifetime: refreshed ahead from 5 s before expiry, not handed out in the last 2 s.
    current = Token(value, obtained_at=now - 16, expires_at=now + 4)
    provider._adopt(current, "test")
    emu.fail_next(3, status=503)  # every attempt of the refresh
    attempts: list[bool] = []

    def send(request: TokenRequest) -> RawResponse:
        attempts.append(time.time() < current.usable_until)  # True: sent while still usable
        while time.time() < current.usable_until:  # the first attempt takes that long
            time.sleep(0.05)
        return UrllibTransport()(request)

    async def refresh_async() -> Token:
        return await provider.get_token_async(lambda r: anyio.to_thread.run_sync(send, r))

    def refresh() -> Token:
        return provider.get_token(send) if flavour == "sync" else asyncio.run(refresh_async())

    with pytest.raises(EndpointUnavailableError):
        refresh()
    assert attempts == [True, False, False]  # the refresh began ahead of the deadline
    fresh = provider.get_token()  # the next call waits for a new token
    assert fresh.value != value
    assert api_status(emu, fresh.value) == 200


def test_coroutines_share_one_request_and_the_loop_keeps_running(tmp_path: Path) -> None:
    async def scenario(emu: Emulator) -> tuple[set[str], list[float], float, float]:
        provider = provider_for(emu, tmp_path)
        ticks: list[float] = []

        async def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(ticker())
        start = time.monotonic()
        tokens = await asyncio.gather(*(provider.get_token_async() for _ in range(50)))
        done = time.monotonic()
        task.cancel()
        return {t.value for t in tokens}, ticks, start, done

    with Emulator(token_delay=0.3) as emu:
        values, ticks, start, done = asyncio.run(scenario(emu))
        assert len(values) == 1
        assert emu.counters.token_requests == 1
    # A loop blocked by the token request ticks before it and after it, never in the middle of
    # the 0.3 s the endpoint takes; how often it ticks there depends on the machine's load.
    assert done - start >= 0.3
    assert [t for t in ticks if start + 0.1 < t < done - 0.1], "the loop was blocked"


def test_async_failure_reaches_every_waiter(memoram_emulator: Emulator, tmp_path: Path) -> None:
    provider = provider_for(memoram_emulator, tmp_path, policy=FAST)
    memoram_emulator.fail_next(3, status=503)

    async def scenario() -> list[object]:
        return await asyncio.gather(
            *(provider.get_token_async() for _ in range(5)), return_exceptions=True
        )

    results = asyncio.run(scenario())
    assert all(isinstance(r, EndpointUnavailableError) for r in results)
    assert memoram_emulator.counters.token_requests == 3


def test_a_forked_child_does_not_inherit_a_held_lock(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    result = run_worker("fork", memoram_emulator.base_url, memoram_emulator.api_key, str(tmp_path))
    assert json.loads(result.stdout) == {"child_exit": 0}


@pytest.mark.slow
def test_short_tokens_under_steady_traffic_never_reach_the_api_expired(tmp_path: Path) -> None:
    with Emulator(max_lifetime=4) as emu:
        provider = provider_for(emu, tmp_path)
        statuses: list[int] = []
        stop = time.monotonic() + 10

        def traffic() -> None:
            while time.monotonic() < stop:
                statuses.append(api_status(emu, provider.get_token().value))
                time.sleep(0.02)

        threads = [threading.Thread(target=traffic) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(statuses) > 100
        assert set(statuses) == {200}
        assert emu.counters.unauthorized == 0
        # 4 s tokens, of which 3 s are certain (Date has whole seconds), refreshed 0.75 s early.
        assert 3 <= emu.counters.token_requests <= 7


def test_an_entry_written_for_another_base_url_is_not_adopted(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    # Copied or planted under this slot's name: the slot is a digest, the file must agree.
    provider = provider_for(memoram_emulator, tmp_path)
    now = time.time()
    path = tmp_path / f"{provider.slot}.token"
    path.write_text(
        "memoram-auth token cache v1\n"
        f"base_url: https://other.example/api/v1\nkey: {provider.fingerprint}\n"
        f"obtained_at: {now!r}\nexpires_at: {now + 3600!r}\ntoken: planted.token.value\n"
    )
    path.chmod(0o600)
    with pytest.warns(MemoramAuthWarning, match="another base URL or key"):
        token = provider.get_token()
    assert token.value != "planted.token.value"
    assert api_status(memoram_emulator, token.value) == 200
    assert memoram_emulator.counters.token_requests == 1


def test_a_rejected_key_leaves_no_token_in_the_cache(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    provider = provider_for(memoram_emulator, tmp_path, policy=FAST)
    token = provider.get_token()
    memoram_emulator.remove_key(memoram_emulator.api_key)
    provider.invalidate(token.value)  # what the adapters do on the API's 401
    with pytest.raises(KeyRejectedError):
        provider.get_token()  # the replay's token request
    assert not (tmp_path / f"{provider.slot}.token").exists()
    assert provider.cached_token() is None
    other_process = provider_for(memoram_emulator, tmp_path, policy=FAST)
    with pytest.raises(KeyRejectedError):
        other_process.get_token()


def test_a_key_rejected_ahead_of_expiry_is_forgotten_too(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    provider = provider_for(memoram_emulator, tmp_path, policy=FAST)
    token = provider.get_token()
    seed(provider, token.value, remaining=300)  # due for its advisory refresh
    provider = provider_for(memoram_emulator, tmp_path, policy=FAST)  # knows only the cache
    assert provider.get_token().value == token.value
    memoram_emulator.remove_key(memoram_emulator.api_key)
    # The advisory refresh fails with the key rejected: this call still gets the current
    # token (good for 300 s), but nothing of it is left to hand out after.
    assert provider.get_token().value == token.value
    assert memoram_emulator.counters.token_requests == 2
    assert provider.cached_token() is None
    with pytest.raises(KeyRejectedError):
        provider.get_token()


# -- the asked lifetime is part of the slot (issue 16, point 6) ----------------------------------


def test_expires_in_is_part_of_the_slot() -> None:
    from memoram_auth.cache import slot_for
    from memoram_auth.keys import sha256_hex

    base, key = "https://api.memoram.app/api/v1", "mem_" + "a" * 48
    slots = {slot_for(base, key), slot_for(base, key, 60), slot_for(base, key, 3600)}
    assert len(slots) == 3
    # The server's default keeps the slot of earlier versions (and of the CLI's warm path).
    assert slot_for(base, key) == slot_for(base, key, None) == sha256_hex(f"{base}\n{key}")[:32]


def test_expires_in_is_part_of_a_shared_caches_secret() -> None:
    from memoram_auth._derive import cache_secret

    base, key = "https://api.memoram.app/api/v1", "mem_" + "a" * 48
    assert len({cache_secret(key, base), cache_secret(key, base, 60)}) == 2
    assert cache_secret(key, base, None) == cache_secret(key, base)


@pytest.mark.parametrize("first", [60, 3600], ids=["short-first", "long-first"])
def test_two_lifetimes_for_one_key_each_get_their_own(
    memoram_emulator: Emulator, tmp_path: Path, first: int
) -> None:
    emu = memoram_emulator
    from memoram_auth import MemoramAuth

    second = 3660 - first
    auths = {
        lifetime: MemoramAuth(
            emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, expires_in=lifetime
        )
        for lifetime in (first, second)
    }
    tokens = {lifetime: auths[lifetime].provider.get_token() for lifetime in (first, second)}
    for lifetime, token in tokens.items():
        assert lifetime - 5 < token.remaining() <= lifetime
    assert emu.counters.token_requests == 2
    assert auths[60].provider.slot != auths[3600].provider.slot


def test_two_lifetimes_across_processes(memoram_emulator: Emulator, tmp_path: Path) -> None:
    emu = memoram_emulator
    # What a process asking for 60 s tokens gets after another cached an hour's, and back.
    script = (
        "import sys, time\n"
        "from memoram_auth.provider import get_provider\n"
        "p = get_provider(sys.argv[1], sys.argv[2], cache_dir=sys.argv[3],"
        " expires_in=int(sys.argv[4]))\n"
        "print(round(p.get_token().remaining()))\n"
    )

    def remaining_in_a_process(lifetime: int) -> int:
        result = subprocess.run(
            [sys.executable, "-c", script, emu.api_key, emu.base_url, str(tmp_path), str(lifetime)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return int(result.stdout)

    assert 3590 < remaining_in_a_process(3600) <= 3600
    assert 50 < remaining_in_a_process(60) <= 60
    assert emu.counters.token_requests == 2
    # Each process after that finds its own lifetime's token in the cache.
    assert 3590 < remaining_in_a_process(3600) <= 3600
    assert 50 < remaining_in_a_process(60) <= 60
    assert emu.counters.token_requests == 2


def refresh_with_a_gap(provider: TokenProvider, in_the_gap: Callable[[], object]) -> Token:
    """Run *provider*'s refresh steps, calling *in_the_gap* once the token endpoint has answered
    and before the provider reads the answer: what another thread may do in between."""
    transport = UrllibTransport()

    def send_then_gap(request: TokenRequest) -> RawResponse:
        answer = transport(request)
        in_the_gap()
        return answer

    token: Token = drive(provider.refresh_steps(), send_then_gap)
    return token


def test_a_token_requested_before_a_rejection_is_not_taken_for_one_fetched_after(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    # Thread 1 of process a refreshes ahead of expiry: the API issues Y, then revokes every
    # token (Y with them), and thread 2's request with X comes back 401 before thread 1 has
    # read Y's answer. Y was requested before the rejection: thread 2's one replay must not go
    # out with it, and neither may process b's, which saw the revocation too. Before, Y was
    # adopted, and stored as "fetched after a rejection", so b took it as well: a likely cause
    # of the 401s on replayable bodies in one Redis soak (CHANGELOG.md, 0.1.0, "Fixed").
    emu = memoram_emulator
    a, b = provider_for(emu, tmp_path), provider_for(emu, tmp_path)
    x = emu.state.issue(emu.api_key, None)["token"]
    seed(a, x, remaining=300)  # inside the advisory window
    assert a.get_token().value == x == b.get_token().value

    def revoked_meanwhile() -> None:
        emu.revoke_all()
        a.invalidate(x)  # thread 2's 401
        b.invalidate(x)

    y = refresh_with_a_gap(a, revoked_meanwhile)  # thread 1 gets Y for its own request
    assert y.value != x
    assert api_status(emu, a.get_token().value) == 200  # thread 2's replay
    assert api_status(emu, b.get_token().value) == 200
    assert b.get_token().value == a.get_token().value  # b adopts a's replacement
    assert emu.counters.token_requests == 2


def test_waiters_on_an_event_loop_do_not_share_a_token_requested_before_their_rejection(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    # The async path's single flight: a task that saw the 401 while another task's refresh was
    # in flight waits for that refresh, and must not replay with its token.
    emu = memoram_emulator
    provider = provider_for(emu, tmp_path)
    x = emu.state.issue(emu.api_key, None)["token"]
    now = time.time()
    # In memory, inside the mandatory window: every caller waits for the refresh.
    provider._adopt(Token(x, obtained_at=now - 3599, expires_at=now + 1), "test")
    gap = threading.Event()
    go_on = threading.Event()

    def send(request: TokenRequest) -> RawResponse:
        answer = UrllibTransport()(request)
        gap.set()
        go_on.wait(30)
        return answer

    async def main() -> tuple[Token, Token]:
        async def replaying() -> Token:
            await anyio.to_thread.run_sync(gap.wait, 30)
            emu.revoke_all()
            provider.invalidate(x)  # this task's 401, while the leader reads its answer
            waiter = asyncio.ensure_future(provider.get_token_async())
            await asyncio.sleep(0)  # the waiter runs up to the flight under way, and waits
            assert not waiter.done()
            go_on.set()
            return await waiter

        async def leading() -> Token:
            return await provider.get_token_async(lambda r: anyio.to_thread.run_sync(send, r))

        first, replay = await asyncio.gather(leading(), replaying())
        return first, replay

    _, replay = asyncio.run(main())
    assert api_status(emu, replay.value) == 200


def test_a_second_revocation_is_not_answered_with_a_replacement_for_the_first(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    # Two replacements for one rejected token X: process a's Y2, and process b's Y1, which b
    # fetched after the cache lost a's (a cleared cache, or a restarted Redis in front of
    # per-machine caches, as in the Redis soak) and which is now the cached one. Then a second
    # revocation hits both, and a's request with Y2 comes back 401. Y1 was fetched after a
    # rejection, but of X, not of Y2: a's replay must not go out with it. Before, the mark was
    # a yes/no ("fetched after a rejection"), a adopted Y1 and the replay got a second 401
    # (seen in the Redis soak, revoking every 2 s).
    emu = memoram_emulator
    a, b = provider_for(emu, tmp_path), provider_for(emu, tmp_path)
    x = a.get_token()
    assert b.get_token().value == x.value
    emu.revoke_all()  # the first revocation
    a.invalidate(x.value)
    y2 = a.get_token()
    b.cache.delete(b.slot)
    b.invalidate(x.value)
    y1 = b.get_token()
    assert len({x.value, y1.value, y2.value}) == 3
    assert a.cached_token() == y1
    emu.revoke_all()  # the second, within the replacements' lifetime
    assert api_status(emu, y2.value) == 401
    a.invalidate(y2.value)
    replay = a.get_token()
    assert replay.value not in (y1.value, y2.value)
    assert api_status(emu, replay.value) == 200
    # b's 401 on Y1, a moment later: a's new token replaces Y2, not Y1, and predates b's 401,
    # so b cannot tell it from one the same revocation hit; it fetches its own.
    b.invalidate(y1.value)
    b_replay = b.get_token()
    assert b_replay.value not in (y1.value, y2.value, replay.value)
    assert api_status(emu, b_replay.value) == 200
    assert emu.counters.token_requests == 5


def test_a_late_401_for_the_replaced_token_keeps_the_replacement_across_processes(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    # The mark names the token it replaces: a 401 for X, however late, leaves X's replacement
    # alone, in the process that fetched it and in one that finds it in the cache.
    emu = memoram_emulator
    a, b = provider_for(emu, tmp_path), provider_for(emu, tmp_path)
    x = a.get_token()
    assert b.get_token().value == x.value
    emu.revoke_all()
    a.invalidate(x.value)
    y = a.get_token()
    assert y.replaces == token_digest(x.value)
    a.invalidate(x.value)  # a late 401 for a request that went out with X
    assert a.get_token() is y
    b.invalidate(x.value)
    assert b.get_token().value == y.value
    assert emu.counters.token_requests == 2


class _SpreadCache(MemoryOnlyCache):
    """A cache a fleet shares would ask this (see TokenCache.refresh_spread)."""

    refresh_spread = 0.5


@pytest.mark.parametrize("cache_class", [MemoryOnlyCache, _SpreadCache], ids=["none", "half"])
def test_a_cache_may_spread_when_refreshes_ahead_of_expiry_start(
    memoram_emulator: Emulator, cache_class: type[MemoryOnlyCache]
) -> None:
    starts = []
    for _ in range(8):
        provider = TokenProvider(
            memoram_emulator.api_key, memoram_emulator.base_url, cache=cache_class()
        )
        token = provider.get_token()
        entry = provider.header.entry
        assert entry is not None
        window = token.usable_until - token.fresh_until
        assert token.fresh_until <= entry.fresh_until <= token.fresh_until + window / 2
        assert entry.usable_until == token.usable_until  # never handed out for longer
        starts.append(entry.fresh_until - token.fresh_until)
    if cache_class is MemoryOnlyCache:
        assert starts == [0.0] * 8
    else:
        # Uniform over half the window: all eight within a tenth of it has odds below 1e-5.
        assert max(starts) - min(starts) > window / 10
