"""The command line with the Redis backend: a fresh token in the local file is served as with
the file backend, loading neither the plugin, pluggy, redis-py nor cryptography; anything else
goes through Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _servers import Server

from memoram_auth.cache import FileCache, slot_for
from memoram_auth.emulator import Emulator
from memoram_auth.keys import fingerprint
from memoram_auth.token import Token

HEAVY = {"memoram_auth_redis", "pluggy", "redis", "cryptography"}
# Runs the command line's main() in the process and says which of HEAVY it imported.
TOKEN_AND_IMPORTS = (
    "import json, sys; from memoram_auth.cli import main;"
    "status = main(['token']);"
    f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HEAVY)!r}));"
    "print(json.dumps(heavy), file=sys.stderr); sys.exit(status)"
)


def run_token(emu: Emulator, server: Server, cache_dir: Path) -> tuple[str, list[str]]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")},
        "MEMORAM_API_KEY": emu.api_key,
        "MEMORAM_BASE_URL": emu.base_url,
        "MEMORAM_AUTH_CACHE_BACKEND": "redis",
        "MEMORAM_AUTH_REDIS_URL": server.url,
        "MEMORAM_AUTH_CACHE_DIR": str(cache_dir),
    }
    result = subprocess.run(
        [sys.executable, "-c", TOKEN_AND_IMPORTS],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), json.loads(result.stderr.strip().splitlines()[-1])


def test_a_warm_token_is_served_from_the_local_file_without_the_plugin(
    server: Server, emu: Emulator, tmp_path: Path
) -> None:
    cold, loaded = run_token(emu, server, tmp_path / "a")
    assert "memoram_auth_redis" in loaded  # the check is real: a cold run asks Redis
    warm, loaded = run_token(emu, server, tmp_path / "a")
    assert warm == cold
    assert loaded == []
    assert emu.counters.token_requests == 1
    # Redis had it before the local file did: another machine gets it from there.
    other, loaded = run_token(emu, server, tmp_path / "b")
    assert other == cold
    assert "redis" in loaded
    assert emu.counters.token_requests == 1


@pytest.mark.parametrize("local", ["missing", "stale"])
def test_without_a_fresh_local_token_the_command_line_asks_redis(
    server: Server, emu: Emulator, tmp_path: Path, local: str
) -> None:
    shared, _ = run_token(emu, server, tmp_path / "a")
    if local == "stale":
        # A token of this key and base URL past its fresh window: not to be served as it is.
        now = time.time()
        FileCache(str(tmp_path / "b")).store(
            slot_for(emu.base_url, emu.api_key),
            Token("stale.local.token", obtained_at=now - 600, expires_at=now + 5),
            base_url=emu.base_url,
            key_fingerprint=fingerprint(emu.api_key),
        )
    served, loaded = run_token(emu, server, tmp_path / "b")
    assert served == shared
    assert {"memoram_auth_redis", "redis"} <= set(loaded)
    assert emu.counters.token_requests == 1
