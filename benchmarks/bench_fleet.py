"""A fleet on one Redis: 4, 16 and 32 processes with separate disk caches, from cold.

Each process stands in for a machine (its own cache directory, the shared Redis). Reports
the token requests the emulator saw (goal: 1 for the whole fleet), the time until every
worker holds a token, and the Redis commands per worker (from ``INFO commandstats``); then,
with Redis down, what the first call of a process pays on top of the file backend.

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
    notes = [
        f"the emulator answers token requests after {TOKEN_DELAY * 1000:.0f} ms; every worker "
        "is a separate Python process with its own cache directory, started before the clock",
        "Redis commands per worker: every command the server counted (scripts and the commands "
        "they call, SCRIPT LOAD, connection set-up) divided by the workers; a worker that "
        "finds the token reads once, and a waiter polls the lock with jitter",
    ]
    return f"{text}\n\n{down}", notes


if __name__ == "__main__":
    main(run, __doc__)
