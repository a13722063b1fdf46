"""Start-up: ``memoram-auth token`` with a warm cache against ``python -c pass``, and imports.

Runs each command many times, alternating, and reports medians and the ratio (target ≤ 2x).
With the memoram-auth-redis plugin installed and a Redis or Valkey server on PATH, also
``memoram-auth token`` with the redis backend and a fresh token in the local file (same
target). Also times ``import memoram_auth`` and ``from memoram_auth import MemoramAuth`` in
fresh interpreters.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from memoram_auth.emulator import Emulator

from ._common import main, table, verdict

BIN = Path(sys.executable).parent


def wall(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def medians(
    commands: dict[str, list[str]],
    env: dict[str, str],
    runs: int,
    envs: dict[str, dict[str, str]] | None = None,
) -> dict[str, float]:
    """Median seconds of each command, run in turns; ``envs[name]`` replaces *env* for one."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            samples[name].append(wall(command, (envs or {}).get(name, env)))
    return {name: statistics.median(values) for name, values in samples.items()}


def installed_plugins() -> list[str]:
    """The ``memoram_auth`` entry points installed here (the warm path must not load them)."""
    from importlib.metadata import entry_points

    if sys.version_info >= (3, 10):
        found = entry_points(group="memoram_auth")
    else:
        found = entry_points().get("memoram_auth", ())
    return sorted(f"{ep.name} ({ep.value})" for ep in found)


REDIS_ROW = "memoram-auth token (warm, redis backend)"


def redis_server(stack: ExitStack) -> str | None:
    """A Redis URL for the redis backend's row: a server started in *stack*, or ``None``
    (saying why) when the plugin or a server binary is missing."""
    try:
        import memoram_auth_redis  # noqa: F401 - only whether it is installed

        # The plugin's own test helper starts real servers; one place decides how.
        sys.path.insert(0, str(Path(__file__).parents[1] / "plugins/memoram-auth-redis/tests"))
        from _servers import NoServerInstalled, Server
    except ImportError:
        print("no redis backend row: memoram-auth-redis is not installed", file=sys.stderr)
        return None
    try:
        server = stack.enter_context(Server())
    except NoServerInstalled as exc:
        print(f"no redis backend row: {exc}", file=sys.stderr)
        return None
    return str(server.url)


def run(quick: bool) -> tuple[str, list[str]]:
    runs = 5 if quick else 41
    script = BIN / "memoram-auth"
    token_command = [str(script)] if script.exists() else [sys.executable, "-m", "memoram_auth"]
    with ExitStack() as stack:
        emu = stack.enter_context(Emulator())
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")},
            "MEMORAM_API_KEY": emu.api_key,
            "MEMORAM_BASE_URL": emu.base_url,
            "MEMORAM_AUTH_CACHE_DIR": stack.enter_context(tempfile.TemporaryDirectory()),
        }
        token = [*token_command, "token"]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "memoram-auth token (warm cache)": token,
            "python -c 'import memoram_auth'": [sys.executable, "-c", "import memoram_auth"],
            "python -c 'from memoram_auth import MemoramAuth'": [
                sys.executable,
                "-c",
                "from memoram_auth import MemoramAuth",
            ],
        }
        subprocess.run(token, env=env, stdout=subprocess.DEVNULL, check=True)
        envs: dict[str, dict[str, str]] = {}
        redis_url = redis_server(stack)
        if redis_url is not None:
            # Its own cache directory, filled by a first run through Redis.
            redis_env = {
                **env,
                "MEMORAM_AUTH_CACHE_BACKEND": "redis",
                "MEMORAM_AUTH_REDIS_URL": redis_url,
                "MEMORAM_AUTH_CACHE_DIR": stack.enter_context(tempfile.TemporaryDirectory()),
            }
            subprocess.run(token, env=redis_env, stdout=subprocess.DEVNULL, check=True)
            commands[REDIS_ROW] = token
            envs[REDIS_ROW] = redis_env
        results = medians(commands, env, runs, envs)
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
        f"{token_requests} token request(s) in all the runs; memoram-auth plugins installed: "
        f"{', '.join(installed_plugins()) or 'none'} (the key comes from MEMORAM_API_KEY)",
        f"import memoram_auth adds {(results[rows[2][0]] - base) * 1e3:.1f} ms; "
        f"MemoramAuth (requests + httpx) adds {(results[rows[3][0]] - base) * 1e3:.1f} ms",
    ]
    if REDIS_ROW in results:
        redis_ratio = results[REDIS_ROW] / base
        notes.append(
            f"with the redis backend and a fresh token in the local file: {redis_ratio:.2f}x "
            f"python -c pass (target ≤ 2x: {verdict(redis_ratio, 2.0, quick=quick)}); the "
            "plugin is not loaded unless the file lacks a fresh token"
        )
    return table(["command", "median ms", "vs python -c pass"], rows), notes


if __name__ == "__main__":
    main(run, __doc__)
