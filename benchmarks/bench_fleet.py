"""A fleet on one Redis: 4, 16 and 32 processes with separate disk caches, from cold.

Each process stands in for a machine (its own cache directory, the shared Redis). Reports
the token requests the emulator saw (goal: 1 for the whole fleet), the time until every
worker holds a token, and the Redis commands per worker (from ``INFO commandstats``); then,
with Redis down, what the first call of a process pays on top of the file backend. Then a
serving fleet: what one revocation costs in token requests with 16 and 64 machines (goal:
at most 2), and, with Redis killed before the shared token's refresh-ahead window opens, how
the 64 machines' own token requests spread out (the outage burst).

Needs the memoram-auth-redis plugin and redis-server (or valkey-server) on PATH.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

from memoram_auth.emulator import Emulator
from memoram_auth.exceptions import MemoramAuthWarning
from memoram_auth.provider import TokenProvider

from ._common import main, table

# The plugin's own test helper starts real servers; one place decides how.
sys.path.insert(0, str(Path(__file__).parent.parent / "plugins" / "memoram-auth-redis" / "tests"))
from _servers import Server

WORKER = r"""
import json, sys, time
from memoram_auth.provider import get_provider
# Imported before the clock starts: import redis alone takes ~150 ms of a cold process, which
# says nothing about the coordination measured here.
import memoram_auth_redis, memoram_auth.exchange, redis, urllib.request, filelock
base_url, key, cache_dir = sys.argv[1:4]
provider = get_provider(key, base_url, cache_dir=cache_dir, cache_backend="redis")
print("ready", flush=True)
start_at = float(sys.stdin.readline())
time.sleep(max(0.0, start_at - time.time()))
provider.get_token()
print(json.dumps(time.time()))
"""

#: A token exchange over a real network takes a while; the emulator answers this late.
TOKEN_DELAY = 0.1


def _commands(server: Server) -> int:
    stats = server.client().info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def fleet(server: Server, workers: int) -> tuple[int, float, float]:
    server.client().flushall()
    server.client().config_resetstat()
    with Emulator(token_delay=TOKEN_DELAY) as emu, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MEMORAM_AUTH_REDIS_URL": server.url}
        command = [sys.executable, "-c", WORKER, emu.base_url, emu.api_key]
        running = [
            subprocess.Popen(
                [*command, os.path.join(tmp, f"machine-{i}")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for i in range(workers)
        ]
        for process in running:  # every process is up, has imported and is waiting
            if process.stdout is None or process.stdout.readline().strip() != "ready":
                raise RuntimeError("a fleet worker did not start")
        start_at = time.time() + 0.2
        for process in running:
            if process.stdin is not None:
                process.stdin.write(f"{start_at!r}\n")
                process.stdin.close()
        done = []
        for process in running:
            if process.stdout is not None:
                done.append(json.loads(process.stdout.read()))
                process.stdout.close()
            process.wait(timeout=120)
        return emu.counters.token_requests, max(done) - start_at, _commands(server) / workers


SERVE = r"""
import collections, json, random, sys, time
import requests
from memoram_auth import MemoramAuth
base_url, key, cache_dir, interval = sys.argv[1:5]
session = requests.Session()
session.auth = MemoramAuth(key, base_url=base_url, cache_dir=cache_dir, cache_backend="redis")
session.get(f"{base_url}/tags", timeout=30).raise_for_status()  # warm: a token in memory
print("ready", flush=True)
start_at, end_at = map(float, sys.stdin.readline().split())
next_at = start_at + random.uniform(0, float(interval))  # machines are not in step
outcomes = collections.Counter()
while next_at < end_at:
    time.sleep(max(0.0, next_at - time.time()))
    response = session.get(f"{base_url}/tags", timeout=30)
    outcomes[f"{response.status_code}{' after a replay' if response.history else ''}"] += 1
    next_at += float(interval)
print(json.dumps(outcomes), flush=True)
"""


class _Fleet:
    """*workers* serving processes, each calling the API every *interval* seconds."""

    def __init__(
        self, server: Server, emu: Emulator, tmp: str, workers: int, interval: float
    ) -> None:
        env = {**os.environ, "MEMORAM_AUTH_REDIS_URL": server.url}
        command = [sys.executable, "-c", SERVE, emu.base_url, emu.api_key]
        self.processes = [
            subprocess.Popen(
                [*command, os.path.join(tmp, f"machine-{i}"), str(interval)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # Each machine's one "Redis unavailable" warning, 64 times over in the burst.
                stderr=subprocess.DEVNULL,
                text=True,
                env=env,
            )
            for i in range(workers)
        ]
        for process in self.processes:
            if process.stdout is None or process.stdout.readline().strip() != "ready":
                raise RuntimeError("a fleet worker did not start")

    def run(self, start_at: float, end_at: float) -> None:
        for process in self.processes:
            if process.stdin is not None:
                process.stdin.write(f"{start_at!r} {end_at!r}\n")
                process.stdin.close()

    def outcomes(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for process in self.processes:
            if process.stdout is not None:
                for name, count in json.loads(process.stdout.read()).items():
                    total[name] = total.get(name, 0) + count
                process.stdout.close()
            process.wait(timeout=120)
        return total


def revocations(server: Server, workers: int, interval: float, times: int) -> list[object]:
    """Token requests each of *times* revocations cost a warm serving fleet, 3 s apart."""
    server.client().flushall()
    with Emulator(token_delay=TOKEN_DELAY) as emu, tempfile.TemporaryDirectory() as tmp:
        fleet = _Fleet(server, emu, tmp, workers, interval)
        start_at = time.time() + 0.5
        first = start_at + interval + 0.5  # every machine has called once
        fleet.run(start_at, first + 3.0 * times)
        costs = []
        for k in range(times):
            time.sleep(max(0.0, first + 3.0 * k - time.time()))
            before = emu.counters.token_requests
            emu.revoke_all()
            time.sleep(2.9)
            costs.append(emu.counters.token_requests - before)
        outcomes = fleet.outcomes()
    failed = sum(n for name, n in outcomes.items() if not name.startswith("200"))
    return [
        workers,
        f"every {interval:g} s",
        " ".join(map(str, costs)),
        max(costs),
        f"{failed} of {sum(outcomes.values())}",
    ]


def outage_burst(server: Server, workers: int, lifetime: int) -> tuple[list[object], list[float]]:
    """Redis killed while a warm fleet's shared token is fresh: when do the machines fetch?"""
    server.client().flushall()
    with Emulator(token_delay=TOKEN_DELAY) as emu, tempfile.TemporaryDirectory() as tmp:
        emu.max_lifetime = lifetime
        seen: list[float] = []
        stop = threading.Event()

        def watch() -> None:
            count = 0
            while not stop.wait(0.005):
                now, current = time.time(), emu.counters.token_requests
                seen.extend([now] * (current - count))
                count = current

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        fleet = _Fleet(server, emu, tmp, workers, 0.5)
        time.sleep(0.05)
        issued = seen[0]  # the fleet's one token, fetched by the first machine to start
        del seen[:]
        server.kill()
        fleet.run(time.time() + 0.2, issued + lifetime * 0.95)
        outcomes = fleet.outcomes()
        stop.set()
        watcher.join()
    failed = sum(n for name, n in outcomes.items() if not name.startswith("200"))
    busiest = max((sum(1 for t in seen if s <= t < s + 1.0) for s in seen), default=0)
    spread = max(seen) - min(seen) if seen else 0.0
    row: list[object] = [
        workers,
        f"{lifetime} s",
        len(seen),
        f"{spread:.1f} s",
        busiest,
        f"{failed} of {sum(outcomes.values())}",
    ]
    return row, [t - issued for t in seen]


def first_call(redis_url: str | None, repeat: int) -> float:
    """Median seconds of a cold process's first get_token (file backend when no URL)."""
    from memoram_auth_redis import RedisTokenCache, Settings

    from memoram_auth.cache import FileCache

    samples = []
    with Emulator() as emu:
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as tmp:
                cache = (
                    RedisTokenCache.from_settings(Settings(redis_url), cache_dir=tmp)
                    if redis_url
                    else FileCache(tmp)
                )
                provider = TokenProvider(emu.api_key, emu.base_url, cache=cache)
                started = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", MemoramAuthWarning)
                    provider.get_token()
                samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _row(name: str, seconds: float, baseline: float) -> list[object]:
    return [name, f"{seconds * 1000:.1f} ms", f"{(seconds - baseline) * 1000:+.1f} ms"]


def _serving(server: Server, quick: bool) -> tuple[str, str]:
    """The revocation and outage tables."""
    sizes = ((4, 0.5),) if quick else ((16, 0.5), (64, 1.0))
    revoked = table(
        [
            "serving machines",
            "calls",
            "token requests per revocation",
            "most",
            "calls that failed",
        ],
        [revocations(server, workers, interval, 3 if quick else 6) for workers, interval in sizes],
    )
    burst_row, _ = outage_burst(server, 8 if quick else 64, 40 if quick else 120)
    burst = table(
        [
            "machines",
            "token lifetime",
            "token requests with Redis down",
            "first to last",
            "most in one second",
            "calls that failed",
        ],
        [burst_row],
    )
    return revoked, burst


def run(quick: bool) -> tuple[str, list[str]]:
    sizes = (4,) if quick else (4, 16, 32)
    rows: list[list[object]] = []
    with Server() as server:
        for workers in sizes:
            requests, until_all, commands = fleet(server, workers)
            rows.append([workers, requests, f"{until_all * 1000:.0f} ms", f"{commands:.1f}"])
        warm = first_call(server.url, 3 if quick else 9)
        down_port = server.port
    text = table(
        [
            "workers",
            "token requests",
            "until every worker has a token",
            "Redis commands per worker",
        ],
        rows,
    )
    repeat = 3 if quick else 9
    baseline = first_call(None, repeat)
    refused = first_call(f"redis://127.0.0.1:{down_port}/0", repeat)  # the server is gone
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        hanging = first_call(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", repeat)
    down = table(
        ["first call of a cold process", "median", "added to the file backend"],
        [
            ["file backend", f"{baseline * 1000:.1f} ms", "-"],
            _row("redis backend, Redis up", warm, baseline),
            _row("redis backend, connection refused", refused, baseline),
            _row("redis backend, address never answers", hanging, baseline),
        ],
    )
    with Server() as server_again:
        revoked, burst = _serving(server_again, quick)
    notes = [
        f"the emulator answers token requests after {TOKEN_DELAY * 1000:.0f} ms; every worker "
        "is a separate Python process with its own cache directory, started before the clock",
        "Redis commands per worker: every command the server counted (scripts and the commands "
        "they call, SCRIPT LOAD, connection set-up) divided by the workers; a worker that "
        "finds the token reads once, and a waiter polls the lock with jitter",
    ]
    notes += [
        "revocations: a warm serving fleet, each machine calling GET /tags at its own phase; "
        "every token is revoked, 3 s apart; the count is the token requests in the 2.9 s "
        "after each (goal: at most 2); failed calls are 401s that reached a caller",
        "outage burst: the fleet shares one token; Redis is killed at once, and each machine "
        "fetches its own when its refresh ahead of expiry starts (a random point in the first "
        "half of the window between the advisory and the mandatory one)",
    ]
    return f"{text}\n\n{down}\n\n{revoked}\n\n{burst}", notes


if __name__ == "__main__":
    main(run, __doc__)
