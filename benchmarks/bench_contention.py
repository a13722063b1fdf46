"""Contention: 8 processes x 8 threads from a cold cache, against the emulator.

Reports the token requests the emulator saw (target 1, the physical minimum) and the time until
every caller holds a token, for a fast and a slow (0.5 s) token endpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time

from memoram_auth.emulator import Emulator

from ._common import main, table, verdict

WORKER = r"""
import json, sys, threading, time
from memoram_auth.provider import get_provider
base_url, key, cache_dir, threads, start_at = sys.argv[1:6]
provider = get_provider(key, base_url, cache_dir=cache_dir)
barrier = threading.Barrier(int(threads))
done = []
def work():
    barrier.wait()
    time.sleep(max(0.0, float(start_at) - time.time()))
    provider.get_token()
    done.append(time.time())
ts = [threading.Thread(target=work) for _ in range(int(threads))]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(max(done)))
"""


def scenario(processes: int, threads: int, delay: float) -> tuple[int, float]:
    with Emulator(token_delay=delay) as emu, tempfile.TemporaryDirectory() as cache:
        start_at = time.time() + 1.5  # every process is up and waiting by then
        command = [
            sys.executable,
            "-c",
            WORKER,
            emu.base_url,
            emu.api_key,
            cache,
            str(threads),
            str(start_at),
        ]
        running = [
            subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(processes)
        ]
        finished = [json.loads(p.communicate(timeout=120)[0]) for p in running]
        return emu.counters.token_requests, max(finished) - start_at


def run(quick: bool) -> tuple[str, list[str]]:
    shapes = [(8, 8, 0.0), (8, 8, 0.5)] if not quick else [(4, 4, 0.0)]
    rows, notes = [], []
    for processes, threads, delay in shapes:
        requests_seen, elapsed = scenario(processes, threads, delay)
        rows.append(
            [f"{processes} x {threads}", f"{delay:g} s", requests_seen, f"{elapsed * 1e3:.0f}"]
        )
        notes.append(
            f"{processes}x{threads}, endpoint {delay:g} s: {requests_seen} token request(s) "
            f"(target 1: {verdict(requests_seen, 1)})"
        )
    header = [
        "processes x threads",
        "token endpoint delay",
        "token requests",
        "ms until all hold a token",
    ]
    return table(header, rows), notes


if __name__ == "__main__":
    main(run, __doc__)
