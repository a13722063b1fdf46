"""End to end: requests per second over loopback keep-alive, MemoramAuth against a bare header.

The emulator serves ``GET /api/v1/tags`` on 127.0.0.1 from its own process (in this one it would
share the GIL with the client and measure their contention); one client (requests Session, or
httpx Client) sends sequential requests over one kept-alive connection. Runs alternate between
the two variants and the medians are compared (target: MemoramAuth at least 0.98x).
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
import requests

from memoram_auth import MemoramAuth
from memoram_auth.emulator import generate_api_key

from ._common import main, table, verdict


def rate(send: object, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        send()  # type: ignore[operator]
    return count / (time.perf_counter() - start)


def run(quick: bool) -> tuple[str, list[str]]:
    count, rounds = (50, 2) if quick else (500, 15)
    rows, notes = [], []
    key = generate_api_key()
    command = [sys.executable, "-m", "memoram_auth.emulator", "--port", "0", "--api-key", key]
    with (
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server,
        tempfile.TemporaryDirectory() as cache,
    ):
        # Terminated whatever happens: Popen's exit waits for the process, which serves forever.
        try:
            if server.stdout is None:
                raise RuntimeError("the emulator process has no output")
            base_url = server.stdout.readline().split()[-1]
            auth = MemoramAuth(key, base_url=base_url, cache_dir=cache)
            header = {"Authorization": auth.provider.authorization()}
            url = f"{base_url}/tags"
            with contextlib.ExitStack() as stack:
                plain = stack.enter_context(requests.Session())
                authed = stack.enter_context(requests.Session())
                hplain = stack.enter_context(httpx.Client())
                hauthed = stack.enter_context(httpx.Client(auth=auth))
                authed.auth = auth
                variants = {
                    "requests": {
                        "bare header": lambda: plain.get(url, headers=header).raise_for_status(),
                        "MemoramAuth": lambda: authed.get(url).raise_for_status(),
                    },
                    "httpx": {
                        "bare header": lambda: hplain.get(url, headers=header).raise_for_status(),
                        "MemoramAuth": lambda: hauthed.get(url).raise_for_status(),
                    },
                }
                for library, sends in variants.items():
                    for send in sends.values():
                        rate(send, 20)  # warm up connections
                    samples: dict[str, list[float]] = {name: [] for name in sends}
                    for _ in range(rounds):
                        for name, send in sends.items():
                            samples[name].append(rate(send, count))
                    medians = {name: statistics.median(v) for name, v in samples.items()}
                    ratio = medians["MemoramAuth"] / medians["bare header"]
                    for name, value in medians.items():
                        rows.append(
                            [
                                library,
                                name,
                                f"{value:.0f}",
                                f"{value / medians['bare header']:.3f}x",
                            ]
                        )
                    met = verdict(ratio, 0.98, at_most=False, quick=quick)
                    notes.append(f"{library}: {ratio:.3f}x the bare header (target ≥ 0.98x: {met})")
        finally:
            server.terminate()
    return table(["library", "auth", "requests/s (median)", "vs bare header"], rows), notes


if __name__ == "__main__":
    main(run, __doc__)
