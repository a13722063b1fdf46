"""The ``memoram_emulator`` pytest fixture, registered through the ``pytest11`` entry point.

Installing memoram-auth makes it available in any test suite::

    def test_my_client(memoram_emulator):
        client = MyClient(base_url=memoram_emulator.base_url, api_key=memoram_emulator.api_key)
        ...
        assert memoram_emulator.counters.token_requests == 1
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["memoram_emulator"]


@pytest.fixture
def memoram_emulator() -> Iterator[Emulator]:
    """A running Memoram emulator on 127.0.0.1 with one generated key, stopped after the test."""
    # Imported here so that merely having memoram-auth installed costs pytest nothing.
    from .emulator import Emulator

    with Emulator() as emulator:
        yield emulator
