"""The ``memoram_emulator`` pytest fixture, registered through the ``pytest11`` entry point.

Installing memoram-auth makes it available in any test suite::

    import requests

    from memoram_auth import MemoramAuth


    def test_list_tags(memoram_emulator):
        auth = MemoramAuth(memoram_emulator.api_key, base_url=memoram_emulator.base_url)
        response = requests.get(f"{memoram_emulator.base_url}/tags", auth=auth, timeout=10)
        assert response.status_code == 200
        assert memoram_emulator.counters.token_requests == 1

For the test's duration the environment points memoram-auth at the emulator, so that code
under test which builds ``MemoramAuth()`` (or runs ``memoram-auth token``) with no arguments talks
to it, never to the API and key of the developer's shell:

- ``MEMORAM_BASE_URL`` and ``MEMORAM_API_KEY``: the emulator's base URL and key;
- ``MEMORAM_AUTH_CACHE_DIR``: a new, private token cache directory for this use
  (``memoram_emulator.cache_dir``), so tests never write into the user's real cache nor share
  tokens with each other;
- ``MEMORAM_AUTH_SOCK`` and ``MEMORAM_AUTH_CACHE_BACKEND`` are removed: an agent or a shared
  cache would serve the developer's key.

Everything is restored after the test (pytest's ``monkeypatch``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from ._env import API_KEY_ENV, AUTH_SOCK_ENV, BASE_URL_ENV, CACHE_BACKEND_ENV, CACHE_DIR_ENV

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["memoram_emulator"]


@pytest.fixture
def memoram_emulator(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Emulator]:
    """A running Memoram emulator on 127.0.0.1 with one generated key, stopped after the test.

    Until the test ends, ``MEMORAM_BASE_URL`` and ``MEMORAM_API_KEY`` name the emulator and its
    key, ``MEMORAM_AUTH_CACHE_DIR`` a new private directory (``cache_dir``), and
    ``MEMORAM_AUTH_SOCK`` and ``MEMORAM_AUTH_CACHE_BACKEND`` are unset: code under test that
    calls ``MemoramAuth()`` with no arguments gets tokens from the emulator, never from the
    API and key in the developer's environment, and leaves none in the user's own cache.
    """
    # Imported here so that merely having memoram-auth installed costs pytest nothing.
    from .emulator import Emulator

    cache_dir = str(tmp_path_factory.mktemp("memoram-auth-cache"))
    monkeypatch.setenv(CACHE_DIR_ENV, cache_dir)
    monkeypatch.delenv(AUTH_SOCK_ENV, raising=False)
    monkeypatch.delenv(CACHE_BACKEND_ENV, raising=False)
    with Emulator() as emulator:
        emulator.cache_dir = cache_dir
        monkeypatch.setenv(BASE_URL_ENV, emulator.base_url)
        monkeypatch.setenv(API_KEY_ENV, emulator.api_key)
        yield emulator
