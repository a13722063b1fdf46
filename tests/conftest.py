from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoram_auth import MemoramAuthError, MemoramAuthWarning, RetryPolicy
from memoram_auth.cache import FileCache
from memoram_auth.emulator import Emulator
from memoram_auth.emulator._state import State

# pytester runs throwaway test suites, to check the fixture users get through the entry point.
pytest_plugins = ["pytester"]

#: Retries without the real waits, so failure tests take milliseconds.
FAST = RetryPolicy(backoff=0.01, max_backoff=0.02, retry_after_cap=0.05, total_timeout=5.0)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own MEMORAM_* settings must not change what the tests see.
    for name in ("MEMORAM_API_KEY", "MEMORAM_BASE_URL", "MEMORAM_AUTH_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def _no_secret_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test runs with DEBUG logging on every logger and with its secrets watched.

    Afterwards: no API key of an emulator the test started appears in a log record, a warning
    or error message memoram-auth produced, or a file in a cache directory it used; no token
    it issued appears in a log record.
    """
    handler = _Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    states: list[State] = []
    texts: list[str] = []
    directories: list[str] = []

    def watch(cls: type, remember: list, what: str) -> None:  # type: ignore[type-arg]
        original = cls.__init__  # type: ignore[misc]

        def init(self: object, *args: object, **kwargs: object) -> None:
            original(self, *args, **kwargs)
            remember.append(getattr(self, what) if what else self)

        monkeypatch.setattr(cls, "__init__", init)

    watch(State, states, "")
    watch(FileCache, directories, "directory")
    original_error_init = MemoramAuthError.__init__
    original_warning_init = MemoramAuthWarning.__init__

    def error_init(self: Exception, *args: object, **kwargs: object) -> None:
        original_error_init(self, *args, **kwargs)  # type: ignore[arg-type]
        texts.append(str(self))

    def warning_init(self: Warning, *args: object) -> None:
        original_warning_init(self, *args)
        texts.append(str(self))

    monkeypatch.setattr(MemoramAuthError, "__init__", error_init)
    monkeypatch.setattr(MemoramAuthWarning, "__init__", warning_init)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    keys = {key for state in states for key in state.api_keys}
    tokens = {token for state in states for token in state.issued_tokens}
    files: list[str] = []
    for directory in directories:
        if os.path.isdir(directory) and not directory.startswith("/proc"):
            for pattern in ("*.token", "*.lock", "*.tmp"):
                found = Path(directory).glob(pattern)
                files += [p.read_text(errors="replace") for p in found if p.is_file()]
    for key in keys:
        leaks = [t for t in handler.messages + texts + files if key in t]
        assert not leaks, f"the API key leaked into: {leaks[:3]}"
    for token in tokens:
        leaks = [m for m in handler.messages if token in m]
        assert not leaks, f"a token leaked into a log record: {leaks[:3]}"


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Emulator]:
    """One emulator for a whole module, for Hypothesis tests (which dislike function fixtures)."""
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog
