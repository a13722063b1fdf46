"""The agent: a token from a warm agent, a cold agent under 200 clients, a revocation.

- Warm: ``GET /v1/token`` from a Python client (connect included, a new connection each time)
  for p50 and p99 (targets 1 ms and 5 ms), ``curl --unix-socket`` beside it, and
  ``memoram-auth token`` through the agent beside today's warm command (the cache file).
- Cold: 200 client processes started at once against an agent with no token: how many token
  requests (target 1), whether all were served, and how long until the last one was.
- Revocation: N clients report the one rejected token at once: token requests (target 1).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from memoram_auth.agent import protocol
from memoram_auth.agent.client import request
from memoram_auth.emulator import Emulator

from ._common import main, table, verdict

BIN = Path(sys.executable).parent
CLI = (
    [str(BIN / "memoram-auth")]
    if (BIN / "memoram-auth").exists()
    else [
        sys.executable,
        "-m",
        "memoram_auth",
    ]
)
CLIENT = (
    "import sys\n"
    "from memoram_auth.agent.client import request\n"
    "status, body = request(sys.argv[1], 'GET', '/v1/token')\n"
    "sys.exit(0 if status == 200 and b'token' in body else 1)\n"
)


def _start_agent(emu: Emulator, directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    path = str(directory / "s" / "agent.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")}
    env.update(
        MEMORAM_API_KEY=emu.api_key,
        MEMORAM_BASE_URL=emu.base_url,
        MEMORAM_AUTH_CACHE_DIR=str(directory / "agent-cache"),
    )
    process = subprocess.Popen(
        [*CLI, "agent", "--socket", path],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(500):
        if os.path.exists(path):
            return process, path
        time.sleep(0.02)
    process.kill()
    raise RuntimeError("the agent did not start")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(30)


def _wall(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def warm(quick: bool, emu: Emulator, directory: Path) -> tuple[list[list[object]], list[str]]:
    process, path = _start_agent(emu, directory)
    try:
        request(path, "GET", protocol.TOKEN_PATH)  # warm: the agent has its token
        samples = []
        for _ in range(200 if quick else 5000):
            start = time.perf_counter()
            status, _ = request(path, "GET", protocol.TOKEN_PATH)
            samples.append(time.perf_counter() - start)
            assert status == 200  # noqa: S101 - a benchmark of failures would mean nothing
        p50, p99 = statistics.median(samples) * 1e3, _percentile(samples, 0.99) * 1e3
        rows: list[list[object]] = [
            ["Python client, GET /v1/token (connect included)", f"{p50:.3f}", f"{p99:.3f}"]
        ]
        notes = [
            f"p50 {p50:.3f} ms, target 1 ms: {verdict(p50, 1.0, quick=quick)}; "
            f"p99 {p99:.3f} ms, target 5 ms: {verdict(p99, 5.0, quick=quick)}"
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")}
        env["MEMORAM_BASE_URL"] = emu.base_url
        runs = 10 if quick else 60
        if shutil.which("curl"):
            url = "http://localhost/v1/token"
            curl = [_wall(["curl", "-s", "--unix-socket", path, url], env) for _ in range(runs)]
            rows.append(
                [
                    "curl --unix-socket (a process per call)",
                    f"{statistics.median(curl) * 1e3:.1f}",
                    f"{_percentile(curl, 0.99) * 1e3:.1f}",
                ]
            )
        via_agent = {**env, "MEMORAM_AUTH_SOCK": path}
        warm_cache = {
            **env,
            "MEMORAM_API_KEY": emu.api_key,
            "MEMORAM_AUTH_CACHE_DIR": str(directory / "cli-cache"),
        }
        subprocess.run([*CLI, "token"], env=warm_cache, stdout=subprocess.DEVNULL, check=True)
        agent_cli, file_cli = [], []
        for _ in range(runs):  # alternating, so that load on the machine hits both alike
            agent_cli.append(_wall([*CLI, "token"], via_agent))
            file_cli.append(_wall([*CLI, "token"], warm_cache))
        for name, values in (
            ("memoram-auth token through the agent", agent_cli),
            ("memoram-auth token, warm cache file (today)", file_cli),
        ):
            rows.append(
                [
                    name,
                    f"{statistics.median(values) * 1e3:.1f}",
                    f"{_percentile(values, 0.99) * 1e3:.1f}",
                ]
            )
        return rows, notes
    finally:
        _stop(process)


def cold(quick: bool, emu: Emulator, directory: Path) -> list[str]:
    clients = 20 if quick else 200
    shutil.rmtree(directory / "agent-cache", ignore_errors=True)
    emu.reset_counters()
    process, path = _start_agent(emu, directory)
    try:
        start = time.perf_counter()
        children = [subprocess.Popen([sys.executable, "-c", CLIENT, path]) for _ in range(clients)]
        failed = sum(child.wait(120) != 0 for child in children)
        elapsed = time.perf_counter() - start
        count = emu.counters.token_requests
        return [
            f"{clients} client processes started at once against a cold agent: "
            f"{clients - failed} served, {failed} failed, {count} token request(s) "
            f"(target 1: {verdict(count, 1)}), the last served after {elapsed:.2f} s "
            "(process start-up included)"
        ]
    finally:
        _stop(process)


def revocation(quick: bool, emu: Emulator, directory: Path) -> list[str]:
    reporters = 20 if quick else 100
    process, path = _start_agent(emu, directory)
    try:
        old = json.loads(request(path, "GET", protocol.TOKEN_PATH)[1])["token"]
        emu.revoke_all()
        emu.reset_counters()
        body = json.dumps({"token": old}).encode()
        answers: list[int] = []

        def report() -> None:
            answers.append(request(path, "POST", protocol.REJECTED_PATH, body)[0])

        threads = [threading.Thread(target=report) for _ in range(reporters)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        count = emu.counters.token_requests
        return [
            f"after a revocation, {reporters} clients report the rejected token at once: "
            f"{answers.count(200)} served, {count} token request(s) (target 1: {verdict(count, 1)})"
        ]
    finally:
        _stop(process)


def run(quick: bool) -> tuple[str, list[str]]:
    with Emulator() as emu, tempfile.TemporaryDirectory(prefix="ma-bench-") as name:
        directory = Path(name)
        rows, notes = warm(quick, emu, directory)
        notes += cold(quick, emu, directory)
        notes += revocation(quick, emu, directory)
    return table(["a token from a warm agent", "p50 ms", "p99 ms"], rows), notes


if __name__ == "__main__":
    main(run, __doc__)
