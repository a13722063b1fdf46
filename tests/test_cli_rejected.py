"""``memoram-auth token --rejected TOKEN``: a shell script's way out of a revoked token.

Real ``memoram-auth`` processes against the emulator; the agent's case through a real agent
served from this process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoram_auth.agent.server import AgentServer
from memoram_auth.cache import FileCache
from memoram_auth.emulator import Emulator
from memoram_auth.provider import TokenProvider

from .test_cli import Cli

SCRIPT = Path(sys.executable).with_name("memoram-auth")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "memoram_auth"]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def cli(emu: Emulator, tmp_path: Path) -> Cli:
    return Cli(emu, tmp_path / "cache")


def api_status(emu: Emulator, token: str) -> int:
    request = urllib.request.Request(
        f"{emu.base_url}/tags", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_after_a_revocation_rejected_prints_a_token_that_works(emu: Emulator, cli: Cli) -> None:
    old = cli("token").stdout.strip()
    emu.revoke_all()
    assert api_status(emu, old) == 401
    # Without --rejected the cached token is still fresh, so it is printed again.
    assert cli("token").stdout.strip() == old
    result = cli("token", "--rejected", old)
    assert result.returncode == 0, result.stderr
    new = result.stdout.strip()
    assert new != old
    assert api_status(emu, new) == 200
    assert emu.counters.token_requests == 2
    assert cli("token").stdout.strip() == new  # the replacement is what the cache holds now
    header = cli("header", f"--rejected={old}")
    assert header.stdout.strip() == f"Authorization: Bearer {new}"
    assert emu.counters.token_requests == 2


def test_the_rejected_token_can_come_from_standard_input(emu: Emulator, cli: Cli) -> None:
    old = cli("token").stdout.strip()
    emu.revoke_all()
    command = [*COMMAND, "token", "--rejected", "-"]
    env = {k: v for k, v in cli.env.items() if v}
    result = subprocess.run(
        command, input=old + "\n", env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() not in ("", old)
    empty = subprocess.run(command, input="", env=env, capture_output=True, text=True, timeout=60)
    assert empty.returncode == 2
    assert "standard input held no token" in empty.stderr


def test_a_token_already_replaced_costs_no_token_request(emu: Emulator, cli: Cli) -> None:
    first = cli("token").stdout.strip()
    emu.revoke_all()
    second = cli("token", "--rejected", first).stdout.strip()
    # A second script that saw the same 401 later gets the replacement, not a third token.
    assert cli("token", "--rejected", first).stdout.strip() == second
    assert cli("--no-disk-cache", "token").returncode == 0  # a control: this one does ask
    assert emu.counters.token_requests == 3


def test_many_scripts_reporting_one_token_at_once_cost_one_token_request(
    emu: Emulator, cli: Cli
) -> None:
    old = cli("token").stdout.strip()
    emu.revoke_all()
    command = [*COMMAND, "token", "--rejected", old]
    env = {k: v for k, v in cli.env.items() if v}
    processes = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs.append(out.strip())
    assert len(set(outputs)) == 1
    assert outputs[0] != old
    assert api_status(emu, outputs[0]) == 200
    assert emu.counters.token_requests == 2


def test_rejected_through_the_agent(emu: Emulator, tmp_path: Path) -> None:
    directory = Path(tempfile.mkdtemp(prefix="ma-"))  # a socket's path must be short
    provider = TokenProvider(emu.api_key, emu.base_url, cache=FileCache(tmp_path / "agent"))
    server = AgentServer(provider, str(directory / "s" / "agent.sock"), log=lambda line: None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")}
        env.update(
            MEMORAM_BASE_URL=emu.base_url,
            MEMORAM_AUTH_SOCK=server.path,
            MEMORAM_AUTH_CACHE_DIR=str(tmp_path / "cli"),
        )

        def token(*args: str) -> str:
            return subprocess.run(
                [*COMMAND, "token", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout.strip()

        old = token()
        emu.revoke_all()
        assert token() == old
        new = token("--rejected", old)
        assert new != old
        assert api_status(emu, new) == 200
        assert token("--rejected", old) == new  # compare-and-invalidate in the agent too
        assert emu.counters.token_requests == 2
    finally:
        server.stop()
        thread.join(5)
        shutil.rmtree(directory, ignore_errors=True)


def test_token_help_documents_rejected(cli: Cli) -> None:
    result = cli("token", "--help")
    assert "--rejected TOKEN" in result.stdout
    assert "--rejected TOKEN" not in cli("status", "--help").stdout
    assert cli("status", "--rejected", "x").returncode == 2


def test_the_emulators_revoke_message_names_rejected(emu: Emulator) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memoram_auth.emulator", "revoke", "--port", str(emu.port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "memoram-auth token --rejected" in result.stdout
