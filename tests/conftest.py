from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from memoram_auth.emulator import Emulator
from memoram_auth.exchange import RetryPolicy

# pytester runs throwaway test suites, to check the fixture users get through the entry point.
pytest_plugins = ["pytester"]

#: Retries without the real waits, so failure tests take milliseconds.
FAST = RetryPolicy(backoff=0.01, max_backoff=0.02, retry_after_cap=0.05, total_timeout=5.0)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own MEMORAM_* settings must not change what the tests see.
    for name in ("MEMORAM_API_KEY", "MEMORAM_BASE_URL", "MEMORAM_AUTH_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Emulator]:
    """One emulator for a whole module, for Hypothesis tests (which dislike function fixtures)."""
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog
