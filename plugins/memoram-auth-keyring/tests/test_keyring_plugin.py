"""The keyring plugin, installed next to memoram-auth, with a file backend that works headless."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backends.fail
import keyrings.alt.file
import memoram_auth_keyring
import pytest
import requests

from memoram_auth import ConfigurationError, MemoramAuth, plugins
from memoram_auth.emulator import Emulator

BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def file_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("MEMORAM_API_KEY", "MEMORAM_BASE_URL", "MEMORAM_AUTH_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("MEMORAM_AUTH_CACHE_DIR", str(tmp_path / "cache"))
    keyring.set_keyring(keyrings.alt.file.PlaintextKeyring())
    plugins._reset_for_tests()
    yield
    plugins._reset_for_tests()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def test_the_plugin_is_found_through_its_entry_point() -> None:
    assert plugins.third_party_plugins_installed()
    assert plugins.get_plugin_manager().get_plugin("keyring") is memoram_auth_keyring


def test_memoram_auth_takes_the_key_from_the_keyring(emu: Emulator) -> None:
    memoram_auth_keyring.store_api_key(emu.base_url, emu.api_key)
    auth = MemoramAuth(base_url=emu.base_url)
    assert requests.get(f"{emu.base_url}/tags", auth=auth, timeout=10).status_code == 200
    assert emu.counters.token_requests == 1


def test_keys_are_kept_per_base_url(emu: Emulator) -> None:
    memoram_auth_keyring.store_api_key("https://api.memoram.app/api/v1", "mem_production")
    with pytest.raises(ConfigurationError, match="MEMORAM_API_KEY"):
        MemoramAuth(base_url=emu.base_url)


def test_the_environment_still_comes_first(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    memoram_auth_keyring.store_api_key(emu.base_url, "mem_stale_key_in_keyring")
    monkeypatch.setenv("MEMORAM_API_KEY", emu.api_key)
    auth = MemoramAuth(base_url=emu.base_url)
    assert requests.get(f"{emu.base_url}/tags", auth=auth, timeout=10).status_code == 200


def test_no_keyring_backend_is_not_an_error() -> None:
    keyring.set_keyring(keyring.backends.fail.Keyring())
    assert memoram_auth_keyring.memoram_auth_get_api_key("https://x.example/api/v1") is None


def test_command_stores_a_key_read_from_stdin(emu: Emulator) -> None:
    result = subprocess.run(
        [str(BIN / "memoram-auth-keyring"), "set", "--base-url", emu.base_url],
        input=emu.api_key + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert emu.api_key not in result.stdout + result.stderr
    assert "stored key sha256:" in result.stdout
    assert keyring.get_password("memoram-auth", emu.base_url) == emu.api_key


def test_command_refuses_a_mangled_key(emu: Emulator) -> None:
    result = subprocess.run(
        [str(BIN / "memoram-auth-keyring"), "set", "--base-url", emu.base_url],
        input="mem_a mem_b\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "whitespace" in result.stderr
    assert keyring.get_password("memoram-auth", emu.base_url) is None


@pytest.mark.parametrize(
    ("typed", "message"),
    [("\n", "no key given"), ('"mem_0123"\n', "wrapped in quotes")],
    ids=["empty", "quoted"],
)
def test_command_explains_input_it_cannot_store(emu: Emulator, typed: str, message: str) -> None:
    result = subprocess.run(
        [str(BIN / "memoram-auth-keyring"), "set", "--base-url", emu.base_url],
        input=typed,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "MEMORAM_API_KEY" not in result.stderr  # the library's advice, wrong here
    assert "Traceback" not in result.stderr
    assert keyring.get_password("memoram-auth", emu.base_url) is None


@pytest.mark.parametrize("key", ["\x04", "\x03"], ids=["ctrl-d", "ctrl-c"])
def test_giving_up_at_the_prompt_is_no_traceback(key: str) -> None:
    """At a real terminal (getpass reads /dev/tty), Ctrl-D and Ctrl-C cancel cleanly."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal
        os.execv(str(BIN / "memoram-auth-keyring"), ["memoram-auth-keyring", "set"])  # noqa: S606 - our own console script, by absolute path
    output = b""
    try:
        while b"API key:" not in output:
            ready, _, _ = select.select([fd], [], [], 30)
            assert ready, f"no prompt; got {output!r}"
            output += os.read(fd, 1024)
        os.write(fd, key.encode())
        while True:
            ready, _, _ = select.select([fd], [], [], 30)
            assert ready, f"no exit; got {output!r}"
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the child has gone and closed its side
                break
            if not chunk:
                break
            output += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 130, text
    assert "cancelled, nothing stored" in text
    assert "Traceback" not in text
    assert keyring.get_password("memoram-auth", "https://api.memoram.app/api/v1") is None


def test_httpie_finds_the_key_in_the_keyring(emu: Emulator, tmp_path: Path) -> None:
    memoram_auth_keyring.store_api_key(emu.base_url, emu.api_key)
    env = {
        **os.environ,
        "MEMORAM_BASE_URL": emu.base_url,
        "HTTPIE_CONFIG_DIR": str(tmp_path / "httpie"),
    }
    result = subprocess.run(
        [
            str(BIN / "http"),
            "--ignore-stdin",
            "--check-status",
            "-b",
            "-A",
            "memoram",
            f"{emu.base_url}/tags/tag_1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert '"tag_1"' in result.stdout


def test_keyring_is_imported_only_when_a_key_is_asked_for() -> None:
    import subprocess
    import sys

    code = (
        "import sys, memoram_auth_keyring; before = 'keyring' in sys.modules;"
        "memoram_auth_keyring.memoram_auth_get_api_key('https://example.invalid');"
        "print(before, 'keyring' in sys.modules)"
    )
    out = subprocess.check_output([sys.executable, "-c", code], text=True)
    assert out.split() == ["False", "True"]


def test_no_key_says_what_to_run_for_this_base_url(emu: Emulator) -> None:
    with pytest.raises(ConfigurationError) as caught:
        MemoramAuth(base_url=emu.base_url)
    assert f"run memoram-auth-keyring set --base-url {emu.base_url}" in str(caught.value)
    assert emu.counters.token_requests == 0


def test_no_key_on_a_headless_machine_says_how_to_get_a_keyring(emu: Emulator) -> None:
    keyring.set_keyring(keyring.backends.fail.Keyring())
    with pytest.raises(ConfigurationError, match="no keyring backend works here") as caught:
        MemoramAuth(base_url=emu.base_url)
    assert "PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring" in str(caught.value)


def test_a_rejected_key_names_the_keyring(emu: Emulator) -> None:
    memoram_auth_keyring.store_api_key(emu.base_url, "mem_" + "0" * 48)
    result = subprocess.run(
        [str(BIN / "memoram-auth"), "--base-url", emu.base_url, "token"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert "from the keyring plugin was rejected (401)" in result.stderr
