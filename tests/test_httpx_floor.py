"""An httpx older than the floor in pyproject.toml is named, not a TypeError about ``proxy=``.

Checked by hand against a real httpx 0.25.2 (``Client.__init__() got an unexpected keyword
argument 'proxy'`` before); here the installed httpx reports an old version.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from memoram_auth import MemoramAuth
from memoram_auth.emulator import Emulator
from memoram_auth.exceptions import ConfigurationError
from memoram_auth.transports.httpx import HTTPX_FLOOR, check_httpx_version

ROOT = Path(__file__).resolve().parent.parent


def test_the_floor_is_pyprojects() -> None:
    declared = re.search(r'"httpx>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert declared is not None
    assert ".".join(map(str, HTTPX_FLOOR)) == declared.group(1)


@pytest.mark.parametrize("version", ["0.25.2", "0.23.0", "0.9"])
def test_an_older_httpx_is_named_with_the_floor(version: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"needs httpx 0\.26 or later.*{version}"):
        check_httpx_version(version)


@pytest.mark.parametrize("version", ["0.26.0", "0.28.1", "1.0.0.dev1", "1.0"])
def test_the_floor_and_later_pass(version: str) -> None:
    check_httpx_version(version)


def test_a_proxy_with_an_old_httpx_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(httpx, "__version__", "0.25.2")
    with Emulator() as emu:
        auth = MemoramAuth(
            emu.api_key, base_url=emu.base_url, proxy="http://127.0.0.1:9", cache_dir=False
        )
        with httpx.Client(auth=auth) as client, pytest.raises(ConfigurationError) as caught:
            client.get(f"{emu.base_url}/tags")
    assert "pip install 'httpx>=0.26'" in str(caught.value)
    assert emu.counters.token_requests == 0
