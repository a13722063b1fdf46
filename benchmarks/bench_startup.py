"""Start-up: ``memoram-auth token`` with a warm cache against ``python -c pass``, and imports.

Runs each command many times, alternating, and reports medians and the ratio (target ≤ 2x).
Also times ``import memoram_auth`` and ``from memoram_auth import MemoramAuth`` in fresh
interpreters.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memoram_auth.emulator import Emulator

from ._common import main, table, verdict

BIN = Path(sys.executable).parent


def wall(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def medians(commands: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            samples[name].append(wall(command, env))
    return {name: statistics.median(values) for name, values in samples.items()}


def installed_plugins() -> list[str]:
    """The ``memoram_auth`` entry points installed here (the warm path must not load them)."""
    from importlib.metadata import entry_points

    if sys.version_info >= (3, 10):
        found = entry_points(group="memoram_auth")
    else:
        found = entry_points().get("memoram_auth", ())
    return sorted(f"{ep.name} ({ep.value})" for ep in found)


def run(quick: bool) -> tuple[str, list[str]]:
    runs = 5 if quick else 41
    script = BIN / "memoram-auth"
    token_command = [str(script)] if script.exists() else [sys.executable, "-m", "memoram_auth"]
    with Emulator() as emu, tempfile.TemporaryDirectory() as cache:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")},
            "MEMORAM_API_KEY": emu.api_key,
            "MEMORAM_BASE_URL": emu.base_url,
            "MEMORAM_AUTH_CACHE_DIR": cache,
        }
        subprocess.run([*token_command, "token"], env=env, stdout=subprocess.DEVNULL, check=True)
        results = medians(
            {
                "python -c pass": [sys.executable, "-c", "pass"],
                "memoram-auth token (warm cache)": [*token_command, "token"],
                "python -c 'import memoram_auth'": [sys.executable, "-c", "import memoram_auth"],
                "python -c 'from memoram_auth import MemoramAuth'": [
                    sys.executable,
                    "-c",
                    "from memoram_auth import MemoramAuth",
                ],
            },
            env,
            runs,
        )
        token_requests = emu.counters.token_requests
    base = results["python -c pass"]
    rows = [
        [name, f"{seconds * 1e3:.1f}", f"{seconds / base:.2f}x"]
        for name, seconds in results.items()
    ]
    ratio = results["memoram-auth token (warm cache)"] / base
    met = verdict(ratio, 2.0, quick=quick)
    notes = [
        f"memoram-auth token: {ratio:.2f}x python -c pass (target ≤ 2x: {met}); "
        f"{token_requests} token request(s) in {runs + 1} runs; memoram-auth plugins installed: "
        f"{', '.join(installed_plugins()) or 'none'} (the key comes from MEMORAM_API_KEY)",
        f"import memoram_auth adds {(results[rows[2][0]] - base) * 1e3:.1f} ms; "
        f"MemoramAuth (requests + httpx) adds {(results[rows[3][0]] - base) * 1e3:.1f} ms",
    ]
    return table(["command", "median ms", "vs python -c pass"], rows), notes


if __name__ == "__main__":
    main(run, __doc__)
