"""``MEMORAM_AUTH_REDIS_SENTINEL`` against a real Sentinel (the server binary with
``--sentinel``) watching a real master, and a replica for the failover.

Each "machine" is a MemoramAuth with its own disk cache and its own client, configured as the
README says: the URL names the Sentinel, the setting names the master.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import memoram_auth_redis
import pytest
from _servers import SentinelGroup, TlsFiles
from memoram_auth_redis import RedisTokenCache

from memoram_auth import ConfigurationError, MemoramAuth, MemoramAuthWarning
from memoram_auth.emulator import Emulator


def configure(monkeypatch: pytest.MonkeyPatch, url: str, name: str, timeout: str = "5") -> None:
    monkeypatch.setenv("MEMORAM_AUTH_CACHE_BACKEND", "redis")
    monkeypatch.setenv("MEMORAM_AUTH_REDIS_URL", url)
    monkeypatch.setenv("MEMORAM_AUTH_REDIS_SENTINEL", name)
    # 5 s, not the 0.3 s default, unless the timeout is the point: a loaded CI machine can
    # take longer than 0.3 s to answer, and a timeout would fail these tests for nothing.
    monkeypatch.setenv("MEMORAM_AUTH_REDIS_TIMEOUT", timeout)


def machine(emu: Emulator, cache_dir: Path) -> MemoramAuth:
    """A machine of its own: its disk cache, and (unlike caches of one process) its client."""
    memoram_auth_redis._clients.clear()
    auth = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=str(cache_dir))
    assert isinstance(auth.provider.cache, RedisTokenCache)
    return auth


def test_the_sentinel_names_the_master_the_fleet_shares(
    sentinel: SentinelGroup, emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, sentinel.url, sentinel.name)
    first, second = machine(emu, tmp_path / "a"), machine(emu, tmp_path / "b")
    assert first.provider.get_token().value == second.provider.get_token().value
    assert emu.counters.token_requests == 1
    # The URL names only the Sentinel: the entries are on the master it named.
    assert sentinel.master.client().keys("*:token")


def test_the_sentinel_and_the_master_over_tls(
    tls_files: TlsFiles,
    start: Callable[..., Any],
    emu: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group: SentinelGroup = start(SentinelGroup, tls=tls_files)
    configure(monkeypatch, f"{group.url}?ssl_ca_certs={tls_files.ca}", group.name)
    first, second = machine(emu, tmp_path / "a"), machine(emu, tmp_path / "b")
    assert first.provider.get_token().value == second.provider.get_token().value
    assert emu.counters.token_requests == 1
    assert group.master.client().keys("*:token")


def test_after_a_failover_the_fleet_reads_and_writes_the_new_master(
    start: Callable[..., Any], emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    group: SentinelGroup = start(SentinelGroup, replica=True)
    assert group.replica is not None
    configure(monkeypatch, group.url, group.name)
    old = machine(emu, tmp_path / "old")
    before = old.provider.get_token().value
    group.wait_replicated()  # before the master dies
    promoted = group.fail_over()
    # A machine that starts now finds the token on the promoted replica: no token request.
    late = machine(emu, tmp_path / "late")
    assert late.provider.get_token().value == before
    assert emu.counters.token_requests == 1
    # The machine that was running reconnects through the Sentinel (its pooled connection to
    # the dead master is dropped, not used): after a 401 it stores its new token on the new
    # master, where a third machine finds it. Any Redis failure would warn, an error here.
    old.provider.invalidate(before)
    after = old.provider.get_token().value
    assert after != before
    assert machine(emu, tmp_path / "third").provider.get_token().value == after
    assert emu.counters.token_requests == 2
    assert promoted.client().keys("*:token")


def test_a_silent_sentinel_is_asked_once_and_the_request_goes_on(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        configure(monkeypatch, url, "any", timeout="0.3")
        auth = machine(emu, tmp_path / "a")
        with pytest.warns(MemoramAuthWarning, match="No master found for 'any'") as caught:
            assert auth.provider.get_token()
        # The Sentinel client's repr (a kilobyte of options since redis-py 5.0.8) is shortened
        # to its address; before 5.0.8 it was short already, and is left as it is.
        message, port = str(caught[0].message), silent.getsockname()[1]
        assert (
            f"Sentinel 127.0.0.1:{port} - " in message
            or f"Redis<ConnectionPool<Connection<host=127.0.0.1,port={port},db=0>>> - " in message
        ), message
        assert "<redis." not in message
        # One connection, one timeout: redis-py's default would retry three times, with
        # backoff, for seconds of a refresh that is waiting.
        silent.setblocking(False)
        attempts = 0
        while True:
            try:
                connection, _ = silent.accept()
            except BlockingIOError:
                break
            connection.close()
            attempts += 1
        assert attempts == 1
    assert emu.counters.token_requests == 1


def test_a_unix_socket_cannot_name_a_sentinel() -> None:
    with pytest.raises(ConfigurationError, match="MEMORAM_AUTH_REDIS_SENTINEL"):
        memoram_auth_redis.Settings("unix:///run/sentinel.sock", sentinel="mymaster")
