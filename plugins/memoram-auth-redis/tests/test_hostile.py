"""A Redis that misbehaves, or someone with write access to it but not the API key.

The trickle and the huge answer come from a fake RESP server (``_fake_resp``), since a real
one cannot be made to do either; the parked lock is set on a real redis-server.
"""

from __future__ import annotations

import threading
import tracemalloc
import warnings
from pathlib import Path

import pytest
import redis
from _fake_resp import FakeRedis, huge, trickle
from _servers import Cluster, SentinelGroup, Server
from memoram_auth_redis import RedisTokenCache, Settings, _guard
from memoram_auth_redis._config import make_client
from memoram_auth_redis._seal import SlotKeys
from redis.sentinel import SentinelManagedConnection

from memoram_auth import MemoramAuthWarning
from memoram_auth._derive import cache_secret
from memoram_auth.cache import slot_for
from memoram_auth.emulator import Emulator
from memoram_auth.provider import TokenProvider

KEY = "mem_" + "5e" * 24
BASE = "http://127.0.0.1:9/api/v1"

#: A complete, valid answer to the read script: no entry (an empty hash, PTTL -2), spelt
#: long (50 bytes) so that trickled it takes 10 s.
MISS = b"*2\r\n*0\r\n:-" + b"0" * 35 + b"2\r\n"
#: The socket timeout in these tests: a trickle of one byte every 0.2 s stays under it on a
#: busy machine too. The deadline is three times this.
TIMEOUT = 1.0


def cache_for(url: str, tmp_path: Path) -> tuple[RedisTokenCache, str]:
    cache = RedisTokenCache.from_settings(
        Settings(url, timeout=TIMEOUT), cache_dir=str(tmp_path / "local")
    )
    slot = slot_for(BASE, KEY)
    cache.bind_secret(slot, cache_secret(KEY, BASE))
    return cache, slot


def test_a_server_that_trickles_its_answer_costs_one_deadline(tmp_path: Path) -> None:
    # One byte every 0.2 s, under the socket timeout: each read succeeds, the answer would
    # take 10 s to come. The deadline (3 x 1 s) cuts it, and the breaker opens.
    with FakeRedis(trickle(MISS, 0.2)) as fake:
        cache, slot = cache_for(fake.url, tmp_path)
        with pytest.warns(MemoramAuthWarning, match=r"no complete answer within 3 s"):
            assert cache.load(slot) is None
        assert cache.breaker.is_open
        assert [c[0] for c in fake.commands].count(b"EVALSHA") == 1


def test_a_trickling_server_does_not_hold_up_a_token_request(tmp_path: Path, emu: Emulator) -> None:
    with FakeRedis(trickle(MISS, 0.2)) as fake:
        cache = RedisTokenCache.from_settings(
            Settings(fake.url, timeout=TIMEOUT), cache_dir=str(tmp_path / "l")
        )
        provider = TokenProvider(emu.api_key, emu.base_url, cache=cache)
        with pytest.warns(MemoramAuthWarning, match="no complete answer"):
            provider.get_token()
        assert emu.counters.token_requests == 1
        # Once: then the breaker skips Redis.
        assert [c[0] for c in fake.commands].count(b"EVALSHA") == 1


@pytest.mark.parametrize("then", ["sent-at-once", "trickled"])
def test_an_answer_announced_huge_fails_into_the_breaker_with_little_read(
    tmp_path: Path, then: str
) -> None:
    # 1.5 GB announced, and sent as fast as the client reads (the SRE's server: 52.7 s and
    # 4.3 GiB before the fallback, then 1.4 GiB within the deadline), or 8 MiB at once and
    # then a byte every 0.2 s. redis-py would read whatever was announced: the bound on a
    # reply's bytes ends the call as soon as they pass it, before the deadline would.
    sent = 1_500_000_000 if then == "sent-at-once" else 8 * 2**20
    with FakeRedis(huge(1_500_000_000, sent)) as fake:
        cache, slot = cache_for(fake.url, tmp_path)
        cache._ensure_client()  # redis-py's import is not the reply's memory
        tracemalloc.start()
        try:
            with pytest.warns(MemoramAuthWarning, match="ReplyTooLarge: an answer of more than"):
                assert cache.load(slot) is None
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert cache.breaker.is_open
        assert [c[0] for c in fake.commands].count(b"EVALSHA") == 1
    # What the client read, and what the kernel buffers between the two then held.
    assert fake.sent < 32 * 2**20
    assert peak < 4 * 2**20


def test_a_complete_answer_larger_than_anything_stored_is_refused(tmp_path: Path) -> None:
    # Under the bound on a reply's bytes (framing included), over the bound on its strings.
    with FakeRedis(huge(160 * 1024, 160 * 1024)) as fake:
        cache, slot = cache_for(fake.url, tmp_path)
        with pytest.warns(MemoramAuthWarning, match="ReplyTooLarge: an answer of more than 128"):
            assert cache.load(slot) is None
        assert cache.breaker.is_open


def park_the_lock(server: Server, emu: Emulator, ttl_ms: int | None) -> str:
    """What someone with write access but no API key can do: SET the slot's lock."""
    keys = SlotKeys(cache_secret(emu.api_key, emu.base_url))
    if ttl_ms is None:
        server.client().set(keys.lock, "x")
    else:
        server.client().set(keys.lock, "x", px=ttl_ms)
    return keys.lock


@pytest.mark.parametrize("ttl_ms", [10**9, None], ids=["PX-1e9", "no-expiry"])
def test_a_parked_lock_is_taken_over_not_waited_for(
    server: Server, tmp_path: Path, emu: Emulator, ttl_ms: int | None
) -> None:
    # Before, every refresh waited out its lock timeout (with a warning, which the suite
    # turns into an error), then fetched on its own.
    providers = [
        TokenProvider(
            emu.api_key,
            emu.base_url,
            cache=RedisTokenCache.from_settings(
                Settings(server.url), cache_dir=str(tmp_path / name)
            ),
        )
        for name in "abcd"
    ]
    emu.token_delay = 0.2  # the others find the lock taken over and wait for its holder
    lock = park_the_lock(server, emu, ttl_ms)
    tokens: list[str] = []
    threads = [
        threading.Thread(target=lambda p=p: tokens.append(p.get_token().value)) for p in providers
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(tokens) == 4
    assert len(set(tokens)) == 1
    assert emu.counters.token_requests == 1
    assert server.client().get(lock) != b"x"


def is_bounded(connection_class: type[object], base: type[object]) -> bool:
    made_here = connection_class in _guard._bounded_classes.values()
    return made_here and issubclass(connection_class, base)


def test_every_kind_of_client_bounds_its_replies(
    cluster: Cluster, sentinel: SentinelGroup, tmp_path: Path
) -> None:
    for url, base in [
        ("redis://127.0.0.1:6379/0", redis.Connection),
        ("rediss://127.0.0.1:6380/0", redis.SSLConnection),
        (f"unix://{tmp_path}/redis.sock", redis.UnixDomainSocketConnection),
    ]:
        client = make_client(Settings(url))
        assert is_bounded(client.connection_pool.connection_class, base), url
    node = make_client(Settings(cluster.url, cluster=True)).get_default_node()
    assert is_bounded(node.redis_connection.connection_pool.connection_class, redis.Connection)
    # A TLS cluster's URL names SSLConnection, which the pool's class bounds in turn.
    pool = _guard.bounded_pool()(connection_class=redis.SSLConnection)
    assert is_bounded(pool.connection_class, redis.SSLConnection)
    master = make_client(Settings(sentinel.url, sentinel=sentinel.name))
    assert is_bounded(master.connection_pool.connection_class, SentinelManagedConnection)
    assert master.ping()
