"""Real processes with separate disk caches (stand-ins for machines) sharing one Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from _servers import Cluster, Server
from memoram_auth_redis import RedisTokenCache, Settings
from memoram_auth_redis._config import make_client

from memoram_auth._derive import cache_secret
from memoram_auth.cache import slot_for
from memoram_auth.emulator import Emulator
from memoram_auth.keys import fingerprint
from memoram_auth.provider import TokenProvider
from memoram_auth.token import Token

BASE = "http://127.0.0.1:9/api/v1"
KEY = "mem_" + "5e" * 24

WORKER = str(Path(__file__).with_name("_fleet_worker.py"))


def fleet_env(url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "MEMORAM_AUTH_REDIS_URL": url, **extra}


def cold_start(
    emu: Emulator, tmp_path: Path, env: dict[str, str], machines: int
) -> list[dict[str, object]]:
    go = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                WORKER,
                "get",
                emu.base_url,
                emu.api_key,
                str(tmp_path / f"m{i}"),
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(machines)
    ]
    time.sleep(1.0)  # let them import; a late one only finds the token already in Redis
    go.touch()
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_a_cold_fleet_of_12_makes_one_token_request(
    server: Server, emu: Emulator, tmp_path: Path
) -> None:
    emu.token_delay = 0.3  # a real exchange takes a while: the others must wait, not fetch
    results = cold_start(emu, tmp_path, fleet_env(server.url), 12)
    assert len({r["token"] for r in results}) == 1
    assert emu.counters.token_requests == 1


def test_a_cold_fleet_on_a_three_master_cluster(
    cluster: Cluster, emu: Emulator, tmp_path: Path
) -> None:
    emu.token_delay = 0.3
    env = fleet_env(cluster.url, MEMORAM_AUTH_REDIS_CLUSTER="1")
    results = cold_start(emu, tmp_path, env, 4)
    assert len({r["token"] for r in results}) == 1
    assert emu.counters.token_requests == 1
    names = [n for s in cluster.servers for n in s.client().keys("*")]
    assert len(names) >= 2  # token, generation (the lock is gone)
    slots = {cluster.servers[0].client().cluster("keyslot", n) for n in names}
    assert len(slots) == 1


def test_a_cluster_client_uses_no_deprecated_option(cluster: Cluster, tmp_path: Path) -> None:
    # redis-py 6 deprecates cluster_error_retry_attempts: every worker of a fleet printed a
    # DeprecationWarning. The client takes what the installed redis-py recommends.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = make_client(Settings(cluster.url, cluster=True))
        cache = RedisTokenCache(client, cache_dir=str(tmp_path / "a"))
        slot = slot_for(BASE, KEY)
        cache.bind_secret(slot, cache_secret(KEY, BASE))
        now = time.time()
        with cache.lock(slot, 5):
            token = Token("tok.en.one", obtained_at=now, expires_at=now + 600)
            cache.store(slot, token, base_url=BASE, key_fingerprint=fingerprint(KEY))
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    reader = RedisTokenCache(
        make_client(Settings(cluster.url, cluster=True)), cache_dir=str(tmp_path / "b")
    )
    reader.bind_secret(slot, cache_secret(KEY, BASE))
    loaded = reader.load(slot)
    assert loaded is not None
    assert loaded.value == "tok.en.one"


class Machine:
    """A serving worker process: one request per "call" line."""

    def __init__(self, emu: Emulator, cache_dir: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, WORKER, "serve", emu.base_url, emu.api_key, str(cache_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert json.loads(self.readline()) == {"ready": True}

    def readline(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def call(self) -> dict[str, object]:
        assert self.process.stdin is not None
        self.process.stdin.write("call\n")
        self.process.stdin.flush()
        line = self.readline()
        assert line, self.process.stderr.read() if self.process.stderr else ""
        return json.loads(line)  # type: ignore[no-any-return]

    def quit(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait(timeout=30)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.parametrize(
    ("machines", "spread"),
    [(6, 0.0), (16, 0.8)],
    ids=["6-machines-at-once", "16-machines-over-0.8s"],
)
def test_a_warm_fleet_recovers_from_a_revocation_with_one_or_two_requests(
    server: Server, emu: Emulator, tmp_path: Path, machines: int, spread: float
) -> None:
    # Spread out, the 401s of late machines come while the first one's replacement is being
    # fetched: each used to raise the rejection floor above it, and the fleet fetched again.
    emu.token_delay = 0.1
    env = fleet_env(server.url)
    fleet = [Machine(emu, tmp_path / f"m{i}", env) for i in range(machines)]
    try:
        for machine in fleet:
            assert machine.call() == {"status": 200, "replayed": False}
        assert emu.counters.token_requests == 1
        emu.revoke_all()
        results: list[dict[str, object]] = []

        def call(machine: Machine, delay: float) -> None:
            time.sleep(delay)
            results.append(machine.call())

        threads = [
            threading.Thread(target=call, args=(m, spread * i / machines))
            for i, m in enumerate(fleet)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [r["status"] for r in results] == [200] * machines  # no failed call
        assert all(r["replayed"] for r in results)
        assert 2 <= emu.counters.token_requests <= 3  # the first, then at most 2 new ones
    finally:
        for machine in fleet:
            machine.quit()


def test_machines_sharing_a_token_start_refreshing_at_different_moments(
    server: Server, emu: Emulator, tmp_path: Path
) -> None:
    # One token, one expiry: with Redis down when the refresh-ahead window opened, 16
    # machines fetched within 0.25 s. Each now starts at its own point in the window's first
    # half (the fleet benchmark measures the burst with 64).
    providers = [
        TokenProvider(
            emu.api_key,
            emu.base_url,
            cache=RedisTokenCache.from_settings(Settings(server.url), cache_dir=str(tmp_path / n)),
        )
        for n in map(str, range(16))
    ]
    tokens = [p.get_token() for p in providers]
    assert len({t.value for t in tokens}) == 1
    assert emu.counters.token_requests == 1
    starts = [p.header.entry.fresh_until for p in providers if p.header.entry is not None]
    window = tokens[0].usable_until - tokens[0].fresh_until  # 540 s of a one-hour token
    for token, start in zip(tokens, starts):
        assert token.fresh_until <= start <= token.fresh_until + window / 2
    # Uniform over 270 s: 16 starts within 54 s of each other has odds below 1e-9.
    assert max(starts) - min(starts) > window / 10


def test_redis_killed_and_restarted_under_traffic_fails_no_call(
    server: Server, emu: Emulator, tmp_path: Path
) -> None:
    emu.max_lifetime = 2  # refreshes every second or so, to meet Redis down and back
    providers = [
        TokenProvider(
            emu.api_key,
            emu.base_url,
            cache=RedisTokenCache.from_settings(Settings(server.url), cache_dir=str(tmp_path / n)),
        )
        for n in "abc"
    ]
    errors: list[BaseException] = []
    stop = time.monotonic() + 6

    def work(provider: TokenProvider) -> None:
        while time.monotonic() < stop:
            try:
                provider.get_token()
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)
            time.sleep(0.01)

    threads = [threading.Thread(target=work, args=(p,)) for p in providers]
    # At most the one "unavailable" warning, from whichever thread met Redis down first.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for thread in threads:
            thread.start()
        for _ in range(2):
            time.sleep(1.5)
            server.kill()
            time.sleep(1.0)
            server.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert [str(w.message)[:40] for w in caught if "Redis token cache" not in str(w.message)] == []
    assert emu.counters.token_requests >= 3  # it did refresh while Redis came and went
