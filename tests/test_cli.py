"""The memoram-auth command, run as a user runs it: a real process against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoram_auth.emulator import Emulator

SCRIPT = Path(sys.executable).with_name("memoram-auth")


class Cli:
    def __init__(self, emu: Emulator, cache_dir: Path) -> None:
        self.emu = emu
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")},
            "MEMORAM_BASE_URL": emu.base_url,
            "MEMORAM_API_KEY": emu.api_key,
            "MEMORAM_AUTH_CACHE_DIR": str(cache_dir),
        }

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "memoram_auth"]
        merged = {**self.env, **env}
        for name in [k for k, v in merged.items() if v == ""]:
            del merged[name]  # an empty value means: unset it
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, env=merged, timeout=120
        )


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def cli(emu: Emulator, tmp_path: Path) -> Cli:
    return Cli(emu, tmp_path / "cache")


def api_status(emu: Emulator, header: str) -> int:
    name, _, value = header.partition(": ")
    request = urllib.request.Request(f"{emu.base_url}/tags", headers={name: value})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def test_token_and_header_work_with_curl_style_use(emu: Emulator, cli: Cli) -> None:
    token = cli("token")
    header = cli("header")
    assert (token.returncode, header.returncode) == (0, 0), token.stderr + header.stderr
    assert header.stdout.strip() == f"Authorization: Bearer {token.stdout.strip()}"
    assert api_status(emu, header.stdout.strip()) == 200
    assert emu.counters.token_requests == 1  # the second call read the cache


def test_python_dash_m_is_the_same_command(emu: Emulator, cli: Cli) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memoram_auth", "token"],
        capture_output=True,
        text=True,
        env=cli.env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(".") == 2  # a JWT


def test_a_warm_token_loads_no_http_library(emu: Emulator, cli: Cli) -> None:
    assert cli("token").returncode == 0
    # Installed key plugins (keyring, ...) may import what they like: measure memoram-auth alone.
    env = {**cli.env, "MEMORAM_AUTH_DISABLE_PLUGINS": "1"}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "memoram_auth", "token"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    for heavy in (
        "requests",
        "httpx",
        "urllib3",
        "urllib.request",
        "memoram_auth.exchange",
        "json",
    ):
        assert heavy not in imported
    assert emu.counters.token_requests == 1


def test_a_warm_token_loads_no_plugin_even_with_plugins_installed(
    emu: Emulator, cli: Cli, tmp_path: Path
) -> None:
    # An installed plugin, as pip leaves one: a distribution declaring a memoram_auth entry
    # point, whose module would show up in the import list if anything loaded it.
    site = tmp_path / "site"
    info = site / "noisy_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: noisy-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[memoram_auth]\nnoisy = noisy_plugin\n")
    (site / "noisy_plugin.py").write_text("raise RuntimeError('the plugin was imported')\n")
    env = {**cli.env, "PYTHONPATH": str(site)}
    assert cli("token", PYTHONPATH=str(site)).returncode == 0
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "memoram_auth", "token"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "memoram_auth.cache" in imported  # the list is real
    loaded = {"noisy_plugin", "pluggy", "importlib.metadata", "memoram_auth_keyring", "keyring"}
    assert loaded & imported == set()
    # Without the key in the environment the plugin is asked, so it is loaded (and here fails
    # to import, which is a warning, not a crash).
    asked = cli("token", MEMORAM_API_KEY="", PYTHONPATH=str(site))
    assert asked.returncode == 2
    assert "'noisy'" in asked.stderr
    assert "no Memoram API key" in asked.stderr


def test_a_backend_that_puts_the_file_in_front_is_answered_from_it_without_its_plugin(
    emu: Emulator, cli: Cli, tmp_path: Path
) -> None:
    # A cache backend's plugin that declares its backend in memoram_auth.file_in_front: a
    # fresh token in the local file is served without loading it (its module would fail the
    # run if imported). Without the declaration, or without a fresh token, the plugin is asked
    # (and fails to import here: its backend is then unknown).
    def site(name: str, entry_points: str) -> str:
        root = tmp_path / name
        info = root / "noisy_backend-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: noisy-backend\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(entry_points)
        (root / "noisy_backend.py").write_text("raise RuntimeError('the plugin was imported')\n")
        return str(root)

    declared = site(
        "declared",
        "[memoram_auth]\nnoisy = noisy_backend\n\n"
        "[memoram_auth.file_in_front]\nnoisy = noisy_backend:make_cache\n",
    )
    undeclared = site("undeclared", "[memoram_auth]\nnoisy = noisy_backend\n")
    first = cli("token")  # the file backend fills the local file
    assert first.returncode == 0, first.stderr
    served = cli("token", PYTHONPATH=declared, MEMORAM_AUTH_CACHE_BACKEND="noisy")
    assert served.returncode == 0, served.stderr
    assert served.stdout == first.stdout
    asked = cli("token", PYTHONPATH=undeclared, MEMORAM_AUTH_CACHE_BACKEND="noisy")
    assert asked.returncode == 2
    assert "'noisy'" in asked.stderr
    # Plugins switched off: the backend does not exist, whatever the file holds.
    off = cli(
        "token",
        PYTHONPATH=declared,
        MEMORAM_AUTH_CACHE_BACKEND="noisy",
        MEMORAM_AUTH_DISABLE_PLUGINS="1",
    )
    assert off.returncode == 2
    assert "cache backend 'noisy'" in off.stderr
    # No fresh token in the file: the backend itself is asked.
    empty = cli(
        "token",
        PYTHONPATH=declared,
        MEMORAM_AUTH_CACHE_BACKEND="noisy",
        MEMORAM_AUTH_CACHE_DIR=str(tmp_path / "empty"),
    )
    assert empty.returncode == 2
    assert "'noisy'" in empty.stderr
    assert emu.counters.token_requests == 1


def test_options_go_before_or_after_the_command(emu: Emulator, cli: Cli, tmp_path: Path) -> None:
    other_cache = str(tmp_path / "other")
    before = cli("--api-key", emu.api_key, "--cache-dir", other_cache, "token", MEMORAM_API_KEY="")
    after = cli(
        "token", f"--base-url={emu.base_url}", "--api-key", emu.api_key, MEMORAM_BASE_URL=""
    )
    assert (before.returncode, after.returncode) == (0, 0), before.stderr + after.stderr
    assert any(Path(other_cache).glob("*.token"))


def test_no_disk_cache_asks_every_time(emu: Emulator, cli: Cli) -> None:
    for _ in range(2):
        assert cli("token", "--no-disk-cache").returncode == 0
    assert emu.counters.token_requests == 2


def test_status_never_shows_the_token(emu: Emulator, cli: Cli) -> None:
    empty = cli("status")
    assert empty.returncode == 0
    assert "none cached" in empty.stdout
    token = cli("token").stdout.strip()
    text = cli("status")
    data = json.loads(cli("status", "--json").stdout)
    assert "valid, expires in" in text.stdout
    assert token not in text.stdout + json.dumps(data)
    assert emu.api_key not in text.stdout + json.dumps(data)
    assert data["cached"] is True
    assert data["state"] == "valid"
    assert 3500 < data["expires_in"] <= 3600
    assert data["base_url"] == emu.base_url
    assert data["key"].startswith("sha256:")


def test_clear_removes_the_keys_token_or_all(emu: Emulator, cli: Cli) -> None:
    cli("token")
    assert "removed the cached token" in cli("clear").stdout
    assert json.loads(cli("status", "--json").stdout)["cached"] is False
    cli("token")
    assert "removed 1 cached token(s)" in cli("clear", "--all").stdout
    assert emu.counters.token_requests == 2


@pytest.mark.parametrize(
    ("setup", "env", "status", "words"),
    [
        pytest.param(None, {"MEMORAM_API_KEY": ""}, 2, "MEMORAM_API_KEY", id="no-key"),
        pytest.param(
            None,
            {"MEMORAM_BASE_URL": "http://api.memoram.app/api/v1"},
            2,
            "refusing plain http",
            id="insecure-url",
        ),
        pytest.param(
            lambda emu: emu.remove_key(emu.api_key), {}, 3, "was rejected (401)", id="rejected"
        ),
        pytest.param(lambda emu: emu.malformed_next(1), {}, 5, "not JSON", id="malformed"),
        pytest.param(
            lambda emu: emu.fail_next(3, status=503, headers={"Retry-After": "0"}),
            {},
            4,
            "unavailable after 3",
            id="unavailable",
        ),
    ],
)
def test_errors_are_one_line_with_a_documented_status(
    emu: Emulator, cli: Cli, setup: object, env: dict[str, str], status: int, words: str
) -> None:
    if setup is not None:
        setup(emu)  # type: ignore[operator]
    result = cli("token", **env)
    assert result.returncode == status
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("memoram-auth: ")
    assert words in lines[0]
    assert emu.api_key not in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_endpoint_is_status_4(cli: Cli) -> None:
    with Emulator() as gone:
        url = gone.base_url
    result = cli("token", MEMORAM_BASE_URL=url)
    assert result.returncode == 4
    assert "cannot connect" in result.stderr


def test_usage_errors_are_status_2(cli: Cli) -> None:
    assert cli("bogus").returncode == 2
    assert cli("token", "--base-url").returncode == 2
    assert cli("--base-url", "x").returncode == 2  # options but no command


def test_alone_it_lists_the_commands_and_exits_0(cli: Cli) -> None:
    # As gh does: the help on stdout, status 0 (documented in the epilog and the README).
    result = cli()
    assert result.returncode == 0, result.stderr
    for command in ("token", "header", "status", "clear", "emulator", "demo"):
        assert f"\n    {command} " in result.stdout
    assert "exits 0" in result.stdout


def test_version(cli: Cli) -> None:
    from memoram_auth import __version__

    result = cli("--version")
    assert (result.returncode, result.stdout) == (0, f"memoram-auth {__version__}\n")


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        pytest.param(["token", "--bogus"], "usage: memoram-auth token ", id="token"),
        pytest.param(["status", "--bogus"], "usage: memoram-auth status ", id="status"),
        pytest.param(["clear", "--bogus=1"], "usage: memoram-auth clear ", id="clear"),
        pytest.param(["header", "--json"], "usage: memoram-auth header ", id="header-json"),
    ],
)
def test_an_unknown_option_shows_the_commands_usage(cli: Cli, args: list[str], usage: str) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(usage), result.stderr
    assert "unrecognized arguments: " + args[-1] in result.stderr


def test_token_json_is_a_credential_process_answer(emu: Emulator, cli: Cli) -> None:
    import datetime

    cold = cli("token", "--json")
    warm = cli("--no-disk-cache", "token", "--json")  # not through the fast path's file read
    warm_fast = cli("token", "--json")
    assert (cold.returncode, warm.returncode, warm_fast.returncode) == (0, 0, 0), cold.stderr
    data = json.loads(cold.stdout)
    assert set(data) == {"token", "expires_at", "token_type"}
    assert data["token_type"] == "Bearer"
    assert json.loads(warm_fast.stdout) == data  # the cached token, the same answer
    assert json.loads(warm.stdout)["token"] != data["token"]
    assert api_status(emu, f"Authorization: Bearer {data['token']}") == 200
    assert data["expires_at"].endswith("Z")
    expires = datetime.datetime.strptime(data["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
    left = expires.replace(tzinfo=datetime.timezone.utc).timestamp() - time.time()
    assert 3500 < left <= 3601


def test_json_for_token_keeps_the_warm_path_free_of_argparse(emu: Emulator, cli: Cli) -> None:
    from memoram_auth.cli import _fast_args

    assert _fast_args(["token", "--json"]) is not None
    assert _fast_args(["--json", "token"]) is None  # argparse's error, as for any misplaced option
    assert _fast_args(["header", "--json"]) is None


def test_status_all_lists_every_slot_without_secrets(emu: Emulator, cli: Cli) -> None:
    with Emulator() as other:
        tokens = [
            cli("token").stdout.strip(),
            cli("token", MEMORAM_BASE_URL=other.base_url, MEMORAM_API_KEY=other.api_key).stdout,
        ]
        # Neither key is needed: status --all reads what the files say.
        text = cli("status", "--all", MEMORAM_API_KEY="")
        listed = cli("status", "--all", "--json", MEMORAM_API_KEY="")
        secrets = [*tokens, emu.api_key, other.api_key]
        other_url = other.base_url
    assert (text.returncode, listed.returncode) == (0, 0), text.stderr + listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted(row["base_url"] for row in rows) == sorted([emu.base_url, other_url])
    assert {row["state"] for row in rows} == {"valid"}
    assert all(row["key"].startswith("sha256:") for row in rows)
    assert all(3500 < row["expires_in"] <= 3600 for row in rows)
    lines = text.stdout.strip().splitlines()
    assert lines[0].split() == ["BASE", "URL", "KEY", "STATE", "EXPIRES"]
    assert len(lines) == 3
    for secret in secrets:
        assert secret.strip() not in text.stdout + listed.stdout


def test_status_all_skips_files_the_cache_would_not_trust(emu: Emulator, cli: Cli) -> None:
    cli("token")
    directory = Path(cli.env["MEMORAM_AUTH_CACHE_DIR"])
    planted = directory / ("0" * 32 + ".token")
    planted.write_text("memoram-auth token cache v1\nbase_url: https://evil.example\n")
    planted.chmod(0o644)
    (directory / "notes.token").write_text("not ours")
    result = cli("status", "--all", "--json")
    assert result.returncode == 0
    assert [row["base_url"] for row in json.loads(result.stdout)] == [emu.base_url]


def test_status_all_with_no_cache_directory_creates_none(cli: Cli, tmp_path: Path) -> None:
    result = cli("status", "--all", MEMORAM_AUTH_CACHE_DIR=str(tmp_path / "none"))
    assert result.returncode == 0
    assert "no cached tokens" in result.stdout
    assert not (tmp_path / "none").exists()


def test_a_damaged_cache_is_one_warning_line_and_still_works(emu: Emulator, cli: Cli) -> None:
    cli("token")
    cache_file = next(Path(cli.env["MEMORAM_AUTH_CACHE_DIR"]).glob("*.token"))
    cache_file.write_bytes(b"\x00garbage")
    result = cli("token")
    assert result.returncode == 0
    assert result.stderr.strip().startswith("memoram-auth: warning: the cached token file")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "garbage" not in result.stderr


def test_emulator_subcommand(cli: Cli) -> None:
    command = [str(SCRIPT), "emulator", "--port", "0", "--api-key", "mem_cli"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=cli.env) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            assert "listening at http://127.0.0.1:" in first
            assert process.stdout.readline().strip() == "accepted API key: mem_cli"
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.mark.slow
def test_demo_runs_offline_and_exits_0(cli: Cli, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")}
    result = subprocess.run(
        [str(SCRIPT), "demo"], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "total" in result.stdout
    assert "shared 1 token request(s)" in result.stdout
    assert "✗" not in result.stdout


def plant_entry(cli: Cli, *, base_url: str, obtained_at: str, expires_at: str) -> Path:
    """A private, well-formed cache file in the key's slot, as another writer could leave it."""
    from memoram_auth.cache import slot_for
    from memoram_auth.keys import fingerprint

    directory = Path(cli.env["MEMORAM_AUTH_CACHE_DIR"])
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / f"{slot_for(cli.emu.base_url, cli.emu.api_key)}.token"
    path.write_text(
        "memoram-auth token cache v1\n"
        f"base_url: {base_url}\nkey: {fingerprint(cli.emu.api_key)}\n"
        f"obtained_at: {obtained_at}\nexpires_at: {expires_at}\ntoken: planted.token.value\n"
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("base_url", "obtained_ahead"),
    [
        pytest.param("https://other.example/api/v1", 0, id="written-for-another-base-url"),
        pytest.param(None, 86_400, id="clock-moved-back-a-day"),
    ],
)
def test_the_warm_path_uses_only_an_entry_of_its_own_slot(
    emu: Emulator, cli: Cli, base_url: str | None, obtained_ahead: float
) -> None:
    import time

    obtained = time.time() + obtained_ahead
    plant_entry(
        cli,
        base_url=base_url or emu.base_url,
        obtained_at=repr(obtained),
        expires_at=repr(obtained + 3600),
    )
    result = cli("token")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() != "planted.token.value"
    assert api_status(emu, f"Authorization: Bearer {result.stdout.strip()}") == 200
    assert emu.counters.token_requests == 1
    assert "planted" not in result.stderr


def test_status_of_an_entry_with_infinite_times_is_none_cached(emu: Emulator, cli: Cli) -> None:
    plant_entry(cli, base_url=emu.base_url, obtained_at="inf", expires_at="inf")
    result = cli("status", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cached"] is False
    assert "Traceback" not in result.stderr


def test_after_the_key_is_rejected_the_cli_prints_no_token(emu: Emulator, cli: Cli) -> None:
    from memoram_auth.cache import FileCache
    from memoram_auth.exceptions import KeyRejectedError
    from memoram_auth.provider import TokenProvider

    token = cli("token").stdout.strip()
    emu.remove_key(emu.api_key)
    # Another process using the key gets a 401, invalidates and asks for a new token.
    cache = FileCache(cli.env["MEMORAM_AUTH_CACHE_DIR"])
    provider = TokenProvider(emu.api_key, emu.base_url, cache=cache)
    provider.invalidate(token)
    with pytest.raises(KeyRejectedError):
        provider.get_token()
    result = cli("token")
    assert (result.returncode, result.stdout) == (3, "")
    assert "none cached" in cli("status").stdout


def test_a_relative_cache_dir_is_a_usage_error(emu: Emulator, cli: Cli, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(SCRIPT), "token"],
        capture_output=True,
        text=True,
        env={**cli.env, "MEMORAM_AUTH_CACHE_DIR": "relative/cache"},
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    assert "MEMORAM_AUTH_CACHE_DIR" in result.stderr
    assert not (tmp_path / "relative").exists()
    assert emu.counters.token_requests == 0


def test_messages_name_the_command_lines_options(cli: Cli) -> None:
    no_key = cli("token", MEMORAM_API_KEY="", MEMORAM_AUTH_DISABLE_PLUGINS="1")
    assert no_key.returncode == 2
    assert "set MEMORAM_API_KEY, or pass --api-key KEY" in no_key.stderr
    assert "api_key=" not in no_key.stderr
    bad_option = cli("token", "--base-url", "ftp://x.example/api")
    bad_variable = cli("token", MEMORAM_BASE_URL="https://u:pw@api.example/?k=1")
    assert (bad_option.returncode, bad_variable.returncode) == (2, 2)
    assert "(from --base-url: 'ftp://x.example/api')" in bad_option.stderr
    assert "(from MEMORAM_BASE_URL: 'https://...@api.example/?...')" in bad_variable.stderr
    assert "pw" not in bad_variable.stderr


@pytest.mark.parametrize(
    ("wrap", "message"),
    [
        ('"{}"', "wrapped in quotes"),
        ("Bearer {}", "Authorization header"),
    ],
    ids=["quoted", "bearer"],
)
def test_a_pasted_mistake_for_the_key_is_named_and_costs_no_token_request(
    emu: Emulator, cli: Cli, wrap: str, message: str
) -> None:
    result = cli("token", MEMORAM_API_KEY=wrap.format(emu.api_key))
    assert result.returncode != 0
    assert message in result.stderr
    assert emu.api_key not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert emu.counters.token_requests == 0
