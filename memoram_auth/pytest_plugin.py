"""The ``memoram_emulator`` pytest fixture, registered through the ``pytest11`` entry point.

Installing memoram-auth makes it available in any test suite::

    import requests

    from memoram_auth import MemoramAuth


    def test_list_tags(memoram_emulator):
        auth = MemoramAuth(memoram_emulator.api_key, base_url=memoram_emulator.base_url)
        response = requests.get(f"{memoram_emulator.base_url}/tags", auth=auth, timeout=10)
        assert response.status_code == 200
        assert memoram_emulator.counters.token_requests == 1

Each use gets its own token cache directory (``memoram_emulator.cache_dir``, also set as
``MEMORAM_AUTH_CACHE_DIR`` for the test and restored after it), so tests never write into the
user's real cache nor share tokens with each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from ._env import CACHE_DIR_ENV

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["memoram_emulator"]


@pytest.fixture
def memoram_emulator(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Emulator]:
    """A running Memoram emulator on 127.0.0.1 with one generated key, stopped after the test.

    ``cache_dir`` is a new, private token cache directory, and ``MEMORAM_AUTH_CACHE_DIR``
    points at it until the test ends: the emulator's tokens are of no use anywhere else, and
    the user's own cache (``~/.cache/memoram-auth``) gained two files per test run before.
    """
    # Imported here so that merely having memoram-auth installed costs pytest nothing.
    from .emulator import Emulator

    cache_dir = str(tmp_path_factory.mktemp("memoram-auth-cache"))
    monkeypatch.setenv(CACHE_DIR_ENV, cache_dir)
    with Emulator() as emulator:
        emulator.cache_dir = cache_dir
        yield emulator
