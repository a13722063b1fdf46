"""Soak under faults: many processes and threads using one key while everything goes wrong.

8 processes x 4 threads for 60 s against the emulator with 5 s tokens, while 20% of token calls
fail (503, or no answer within the client's 2 s timeout), every token is revoked every 15 s and
a worker process is killed with SIGKILL every few seconds and replaced. Reports API calls and
their outcomes, 401s seen by callers (expected only for bodies that cannot be replayed), token
requests against the ideal, corrupt cache reads (expected 0) and the longest wait for a token.

    python -m benchmarks.soak                 # the full soak
    python -m benchmarks.soak --quick         # 10 s, 3 x 2
    python -m benchmarks.soak --redis         # on the redis backend, Redis killed every 10 s

With ``--redis`` (needs memoram-auth-redis and redis-server on PATH) each worker has a disk cache
of its own, like a machine of a fleet, and all share one Redis, which is killed with SIGKILL
every 10 s and restarted a second later.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memoram_auth.emulator import Emulator, Fault

from ._common import table

WORKER = str(Path(__file__).with_name("_soak_worker.py"))
KINDS = ("get:", "post-json:", "post-stream:")
REPLAYED = "replayed after 401"
#: The one failure the injected faults make on purpose: all three attempts of a token request
#: a caller waits for met a fault (at 20 %, one such request in 125).
BY_DESIGN = "EndpointUnavailableError"


@dataclass
class SoakResult:
    duration: float
    processes: int
    threads: int
    lifetime: int
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    token_requests: int = 0
    tokens_issued: int = 0
    api_requests: int = 0
    revocations: int = 0
    kills: int = 0
    redis_kills: int = 0
    longest_wait: float = 0.0
    revoked_at: list[float] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unexpected_401s(self) -> int:
        """401s that reached a caller for a body that could have been replayed."""
        return sum(n for k, n in self.outcomes.items() if k.endswith(": 401") and "stream" not in k)

    def failed_calls(self, error: str | None = None) -> int:
        """Calls that ended in an exception (of type *error*, if given) instead of a response."""
        return sum(
            n
            for k, n in self.outcomes.items()
            if k.startswith(KINDS)
            and not k.endswith(("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", REPLAYED))
            and (error is None or k.endswith(": " + error))
        )

    @property
    def ideal_tokens(self) -> float:
        # A token of L seconds is trusted for L - 1 (Date has whole seconds) and refreshed a
        # quarter of that early; each revocation costs one more.
        usable = (self.lifetime - 1) * 0.75
        return self.duration / usable + self.revocations


def soak(
    *,
    duration: float = 60.0,
    processes: int = 8,
    threads: int = 4,
    lifetime: int = 5,
    fault_rate: float = 0.2,
    revoke_every: float = 15.0,
    kill_every: float = 3.0,
    redis_kill_every: float | None = None,
) -> SoakResult:
    result = SoakResult(duration, processes, threads, lifetime)
    faults = (Fault(status=503, headers={"Retry-After": "1"}), Fault(delay=5.0))
    with contextlib.ExitStack() as stack:
        emu = stack.enter_context(Emulator(max_lifetime=lifetime))
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        env = dict(os.environ)
        server = None
        if redis_kill_every is not None:
            server = stack.enter_context(_redis_server())
            env.update(MEMORAM_AUTH_CACHE_BACKEND="redis", MEMORAM_AUTH_REDIS_URL=server.url)
        stop_at = time.time() + duration
        started = time.monotonic()

        def spawn(index: int) -> subprocess.Popen[bytes]:
            stats = os.path.join(tmp, f"stats-{index}.json")
            command = [
                sys.executable,
                WORKER,
                emu.base_url,
                emu.api_key,
                os.path.join(tmp, f"cache-{index}" if server else "cache"),
                str(threads),
                str(stop_at),
                stats,
            ]
            return subprocess.Popen(command, env=env)

        emu.flaky(fault_rate, *faults)
        spawned = processes
        running = {i: spawn(i) for i in range(processes)}
        next_revoke, next_kill = revoke_every, kill_every
        next_redis_kill = redis_kill_every or 0.0
        redis_back_at: float | None = None
        while time.time() < stop_at:
            time.sleep(0.1)
            elapsed = time.monotonic() - started
            if elapsed >= next_revoke:
                emu.revoke_all()
                result.revoked_at.append(time.time())
                result.revocations += 1
                next_revoke += revoke_every
            if server is not None and redis_kill_every is not None:
                if elapsed >= next_redis_kill:
                    server.kill()
                    result.redis_kills += 1
                    redis_back_at = elapsed + 1.0
                    next_redis_kill += redis_kill_every
                elif redis_back_at is not None and elapsed >= redis_back_at:
                    server.start()
                    redis_back_at = None
            if elapsed >= next_kill and time.time() < stop_at - 1:
                victim = random.choice(list(running))  # noqa: S311
                os.kill(running[victim].pid, signal.SIGKILL)
                running.pop(victim).wait()
                running[spawned] = spawn(spawned)
                spawned += 1
                result.kills += 1
                next_kill += kill_every
        for process in running.values():
            process.wait(timeout=60)
        emu.clear_faults()
        for index in range(spawned):
            path = os.path.join(tmp, f"stats-{index}.json")
            if os.path.exists(path):
                with open(path) as handle:
                    data = json.load(handle)
                result.outcomes.update(data["stats"])
                result.longest_wait = max(result.longest_wait, data["longest_wait"])
                result.details.extend(data.get("details", []))
        result.token_requests = emu.counters.token_requests
        result.tokens_issued = emu.counters.tokens_issued
        result.api_requests = emu.counters.api_requests
    return result


@contextlib.contextmanager
def _redis_server() -> Iterator[Any]:
    # The plugin's own test helper starts real servers; one place decides how.
    plugin_tests = Path(__file__).parent.parent / "plugins" / "memoram-auth-redis" / "tests"
    sys.path.insert(0, str(plugin_tests))
    from _servers import Server

    with Server() as server:
        yield server


def report(result: SoakResult) -> str:
    rows = [[name, count] for name, count in sorted(result.outcomes.items())]
    lines = [
        f"{result.processes} processes x {result.threads} threads for {result.duration:g} s, "
        f"{result.lifetime} s tokens, {result.revocations} revocations, {result.kills} workers "
        "killed with SIGKILL and replaced"
        + (f", Redis killed {result.redis_kills} times" if result.redis_kills else ""),
        "",
        table(["outcome (by request kind)", "count"], rows),
        "",
        f"- API requests reaching the emulator: {result.api_requests}",
        f"- 401s seen by callers on replayable bodies: {result.unexpected_401s} (expected 0)",
        f"- token requests: {result.token_requests} ({result.tokens_issued} answered with a "
        f"token, the rest failed by design); ideal about {result.ideal_tokens:.0f}",
        f"- corrupt cache reads: {result.outcomes.get('corrupt cache reads', 0)} (expected 0)",
        f"- calls that failed with {BY_DESIGN}: {result.failed_calls(BY_DESIGN)} (by design of "
        "the faults: every attempt of a token request met one; rare, not always 0); any other "
        f"failure: {result.failed_calls() - result.failed_calls(BY_DESIGN)} (expected 0)",
        f"- longest wait for a token: {result.longest_wait:.2f} s",
    ]
    for detail in result.details:
        # The revocation before the 401, and the tokens sent (iat in whole seconds).
        before = [at for at in result.revoked_at if at <= detail["at"]]
        since = (
            f"{detail['at'] - before[-1]:.3f} s after revocation {len(before)}" if before else ""
        )
        tokens = ", then ".join(
            f"iat {t['iat'] - int(before[-1]) if before else t['iat']:+d} s jti {t['jti']}"
            if t
            else "?"
            for t in detail["tokens"]
        )
        lines.append(f"- 401 on {detail['kind']} in pid {detail['pid']} {since}: {tokens}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 s, 3 processes x 2 threads")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--redis", action="store_true", help="the redis backend, Redis killed")
    args = parser.parse_args()
    redis_kill_every = 10.0 if args.redis else None
    if args.quick:
        result = soak(
            duration=10,
            processes=3,
            threads=2,
            revoke_every=4,
            kill_every=2.5,
            redis_kill_every=4.0 if args.redis else None,
        )
    else:
        result = soak(duration=args.duration, redis_kill_every=redis_kill_every)
    print(report(result))


if __name__ == "__main__":
    main()
