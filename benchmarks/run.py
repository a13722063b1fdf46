"""Run every benchmark and print the tables that BENCHMARKS.md records.

python -m benchmarks.run            # the full run (a few minutes)
python -m benchmarks.run --quick    # a smoke run, as CI does (no speed assertions)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from . import (
    bench_agent,
    bench_aiohttp,
    bench_apply,
    bench_background,
    bench_contention,
    bench_e2e,
    bench_startup,
)

SECTIONS = [
    ("1. Cost of applying a cached token, per call", bench_apply.run),
    ("2 and 5. Start-up and import times", bench_startup.run),
    ("3. Contention from a cold cache", bench_contention.run),
    ("4. End to end over loopback keep-alive", bench_e2e.run),
    ("6. aiohttp: MemoramMiddleware per request", bench_aiohttp.run),
    ("7. Background refresh: the slowest request", bench_background.run),
    ("8. The agent: warm tokens, a cold start under 200 clients, a revocation", bench_agent.run),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="few iterations: a smoke run")
    mode.add_argument("--full", action="store_true", help="the full run (the default)")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; "
        f"{'quick' if args.quick else 'full'} run on {time.strftime('%Y-%m-%d')}\n"
    )
    for title, run in SECTIONS:
        start = time.perf_counter()
        text, notes = run(args.quick)
        print(f"## {title}\n\n{text}\n")
        for note in notes:
            print(f"- {note}")
        print(f"\n({time.perf_counter() - start:.1f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
