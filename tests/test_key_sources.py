"""Where the key came from: a 401 names it, and "no key" names the key plugins that found none.

Keys that cannot be keys (quoted, a JWT, ``Bearer ...``) are refused before any token request
in ``test_cli.py`` and ``test_config.py``; here, keys that look right and are wrong.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memoram_auth import ConfigurationError, KeyRejectedError, hookimpl, plugins
from memoram_auth.emulator import Emulator
from memoram_auth.keys import ApiKey
from memoram_auth.provider import get_provider
from memoram_auth.settings import resolve

WRONG = "mem_" + "0" * 48
SCRIPT = Path(sys.executable).with_name("memoram-auth")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "memoram_auth"]


@pytest.fixture(autouse=True)
def fresh_plugin_manager() -> Iterator[None]:
    plugins._reset_for_tests()
    yield
    plugins._reset_for_tests()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


class Registered:
    def __init__(self, plugin: object, name: str) -> None:
        self.plugin, self.name = plugin, name

    def __enter__(self) -> Any:
        plugins.get_plugin_manager().register(self.plugin, name=self.name)
        return self.plugin

    def __exit__(self, *exc: object) -> None:
        plugins.get_plugin_manager().unregister(name=self.name)


class VaultPlugin:
    def __init__(self, key: str | None) -> None:
        self.key = key

    @hookimpl
    def memoram_auth_get_api_key(self, base_url: str) -> str | None:
        return self.key

    @hookimpl
    def memoram_auth_no_key_hint(self, base_url: str) -> str | None:
        return f"run vault-login {base_url}"


def rejection(emu: Emulator, **resolve_args: Any) -> str:
    settings = resolve(base_url=emu.base_url, cache_dir=False, **resolve_args)
    from memoram_auth.provider import provider_for

    with pytest.raises(KeyRejectedError) as caught:
        provider_for(settings).get_token()
    return str(caught.value)


def test_a_401_names_the_plugin_the_key_came_from(emu: Emulator) -> None:
    with Registered(VaultPlugin(WRONG), "vault"):
        message = rejection(emu)
    assert "from the vault plugin was rejected (401)" in message
    assert "MEMORAM_API_KEY" not in message
    assert WRONG not in message


def test_a_401_names_the_environment_or_the_argument(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMORAM_API_KEY", WRONG)
    with Registered(VaultPlugin(emu.api_key), "vault"):  # the environment wins over it
        assert "from MEMORAM_API_KEY was rejected" in rejection(emu)
    assert "from api_key= was rejected" in rejection(emu, api_key=WRONG + "1")
    with pytest.raises(KeyRejectedError, match="from api_key= was rejected"):
        get_provider(WRONG + "2", emu.base_url, cache_dir=False).get_token()


def test_the_command_line_names_its_option_or_the_environment(emu: Emulator) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")}
    env.update(MEMORAM_BASE_URL=emu.base_url, MEMORAM_AUTH_DISABLE_PLUGINS="1")

    def token(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*COMMAND, "--no-disk-cache", "token", *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )

    by_option = token("--api-key", WRONG)
    assert by_option.returncode == 3
    assert "from --api-key KEY was rejected" in by_option.stderr
    by_environment = token(MEMORAM_API_KEY=WRONG)
    assert by_environment.returncode == 3
    assert "from MEMORAM_API_KEY was rejected" in by_environment.stderr


def test_no_key_with_a_key_plugin_installed_says_what_to_run(emu: Emulator) -> None:
    with Registered(VaultPlugin(None), "vault"), pytest.raises(ConfigurationError) as caught:
        resolve(base_url=emu.base_url)
    message = str(caught.value)
    assert message.startswith("no Memoram API key: set MEMORAM_API_KEY, or pass api_key=")
    assert f"the vault plugin has none for {emu.base_url}: run vault-login {emu.base_url}" in (
        message
    )
    assert emu.counters.token_requests == 0


def test_no_key_without_a_plugin_says_nothing_of_plugins(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMORAM_AUTH_DISABLE_PLUGINS", "1")  # any installed here (keyring)
    with pytest.raises(ConfigurationError) as caught:
        resolve(base_url=emu.base_url)
    assert "plugin" not in str(caught.value)


def test_the_source_is_not_part_of_the_key() -> None:
    assert ApiKey(WRONG, "MEMORAM_API_KEY") == ApiKey(WRONG, "api_key=")
    assert repr(ApiKey(WRONG, "the vault plugin")) == repr(ApiKey(WRONG))
    assert ApiKey.of(ApiKey(WRONG, "x"), "y").source == "x"
