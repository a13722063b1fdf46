"""Background refresh: the slowest request with and without it, and token requests per lifetime.

P processes x T threads (requests) plus an asyncio and a trio client (httpx) each, calling the
emulator's API every 50 ms with 5 s tokens from a token endpoint that takes 1 s, sharing one
file cache (one machine). The same run with ``background_refresh=False`` shows the spike a
user sees today: the request that refreshes in the advisory window waits for the endpoint.

    python -m benchmarks.bench_background            # 8 x 8, 32 s per mode
    python -m benchmarks.bench_background --quick    # 2 x 2, 12 s per mode
    python -m benchmarks.bench_background --png latency.png
    python -m benchmarks.bench_background --lifetime 10   # 10 s tokens
    python -m benchmarks.bench_background --fleet    # 16 machines on one Redis, 2 threads each

``--fleet`` needs memoram-auth-redis and redis-server (or valkey-server): each process has a
disk cache of its own, like a machine of a fleet, and all share one Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from memoram_auth.emulator import Emulator

from ._common import table

WORKER = str(Path(__file__).with_name("_background_worker.py"))
LIFETIME = 5
TOKEN_DELAY = 1.0


def soak(
    mode: str,
    processes: int,
    threads: int,
    seconds: float,
    redis_url: str | None = None,
    lifetime: int = LIFETIME,
) -> tuple[list[list[float]], int, int]:
    """Samples (start offset, seconds) after warm-up, the token requests made, and how many
    requests after warm-up found no usable token (and so waited for one).

    With *redis_url*, each process has a cache directory of its own and the Redis backend.
    """
    env = dict(os.environ)
    if redis_url:
        env["MEMORAM_AUTH_REDIS_URL"] = redis_url
    with Emulator(token_delay=TOKEN_DELAY) as emu, tempfile.TemporaryDirectory() as cache:
        procs = []
        for number in range(processes):
            directory = os.path.join(cache, str(number)) if redis_url else cache
            args = [emu.base_url, emu.api_key, directory, str(lifetime), str(seconds)]
            args += [str(threads), mode, "redis" if redis_url else "file"]
            command = [sys.executable, WORKER, *args]
            procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env))
        samples = [s for p in procs for s in json.loads(p.communicate()[0])]
        first = min(start for start, _, _ in samples)
        after = [(start - first, took, waits) for start, took, waits in samples]
        # Requests of the first lifetime wait for the first token in both modes.
        after = [sample for sample in after if sample[0] > lifetime]
        waited = sum(1 for _, _, waits in after if waits)
        return [[start, took] for start, took, _ in after], emu.counters.token_requests, waited


def run(
    quick: bool, png: str | None = None, redis_url: str | None = None, lifetime: int = LIFETIME
) -> tuple[str, list[str]]:
    processes, threads, seconds = (2, 2, 12.0) if quick else (8, 8, 32.0)
    if redis_url:
        processes, threads = 16, 2
    rows, series = [], {}
    for mode in ("off", "on"):
        samples, token_requests, waited = soak(
            mode, processes, threads, seconds, redis_url, lifetime
        )
        series[mode] = samples
        took = sorted(t for _, t in samples)
        lifetimes = seconds / lifetime
        rows.append(
            [
                f"background_refresh={'True' if mode == 'on' else 'False'}",
                str(len(took)),
                f"{took[len(took) // 2] * 1000:.1f} ms",
                f"{took[int(len(took) * 0.999)] * 1000:.1f} ms",
                f"{took[-1] * 1000:.0f} ms",
                str(waited),
                f"{token_requests / lifetimes:.2f}",
            ]
        )
    header = [
        "run",
        "requests",
        "median",
        "p99.9",
        "slowest",
        "found no usable token",
        "token requests / lifetime",
    ]
    where = "one Redis, a cache directory per process" if redis_url else "one cache directory"
    notes = [
        f"{where}: {processes} processes x ({threads} threads + asyncio + trio if installed), "
        "every 50 ms, "
        f"{lifetime} s tokens, token endpoint {TOKEN_DELAY:.0f} s, {seconds:.0f} s per run; "
        f"requests in the first {lifetime} s (the cold start) left out",
    ]
    if png:
        write_png(png, series, seconds)
        notes.append(f"latency over time: {png}")
    return table(header, rows), notes


# -- a scatter plot as a PNG, with the stdlib (zlib) ------------------------------------------

COLOURS = {"off": (214, 39, 40), "on": (31, 119, 180)}


def write_png(path: str, series: dict[str, list[list[float]]], seconds: float) -> None:
    """Latency (log scale, 1 ms to 2 s) over time: red without background refresh, blue with;
    grey lines at 10 ms, 100 ms and 1 s."""
    import math

    width, height, margin = 900, 360, 10
    pixels = [[255, 255, 255] * width for _ in range(height)]

    def y_of(value: float) -> int:
        low, high = math.log10(0.001), math.log10(2.0)
        share = (math.log10(min(max(value, 0.001), 2.0)) - low) / (high - low)
        return int((height - 1 - margin) - share * (height - 1 - 2 * margin))

    for line in (0.01, 0.1, 1.0):
        row = pixels[y_of(line)]
        for x in range(width):
            row[3 * x : 3 * x + 3] = [200, 200, 200]
    for mode, samples in series.items():
        colour = list(COLOURS[mode])
        for start, took in samples:
            x = int(margin + (start / seconds) * (width - 1 - 2 * margin))
            y = y_of(took)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if 0 <= y + dy < height and 0 <= x + dx < width:
                        pixels[y + dy][3 * (x + dx) : 3 * (x + dx) + 3] = colour
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 x 2, 12 s per mode")
    parser.add_argument("--png", help="write the latency-over-time plot here")
    parser.add_argument("--fleet", action="store_true", help="16 machines on one Redis")
    parser.add_argument(
        "--lifetime", type=int, default=LIFETIME, help=f"token lifetime in s ({LIFETIME})"
    )
    args = parser.parse_args()
    if args.fleet:
        # The plugin's own test helper starts a real server; one place decides how.
        plugin_tests = Path(__file__).parent.parent / "plugins" / "memoram-auth-redis" / "tests"
        sys.path.insert(0, str(plugin_tests))
        from _servers import Server

        with Server() as server:
            text, notes = run(args.quick, args.png, server.url, args.lifetime)
    else:
        text, notes = run(args.quick, args.png, lifetime=args.lifetime)
    print(text)
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
