from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import memoram_auth_redis
import pytest
from memoram_auth_redis import _breaker

from memoram_auth import plugins
from memoram_auth.emulator import Emulator

sys.path.insert(0, str(Path(__file__).parent))

from _servers import (
    Cluster,
    NoServerInstalled,
    SentinelGroup,
    Server,
    ServerMissing,
    TlsFiles,
    TlsUnsupported,
)

_Started = TypeVar("_Started", Server, Cluster, SentinelGroup)


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("MEMORAM_API_KEY", "MEMORAM_BASE_URL", "MEMORAM_AUTH_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MEMORAM_AUTH_CACHE_DIR", str(tmp_path / "cache"))
    plugins._reset_for_tests()
    _breaker._reset_for_tests()
    memoram_auth_redis.configure(None)
    memoram_auth_redis._clients.clear()
    yield
    memoram_auth_redis.configure(None)
    memoram_auth_redis._clients.clear()
    plugins._reset_for_tests()
    _breaker._reset_for_tests()


@contextmanager
def running(factory: Callable[..., _Started], **kwargs: object) -> Iterator[_Started]:
    """Start a server (or a group of them) for a test, and stop it after, whatever happens.

    No server installed skips the test, saying what to install; a server asked for and not
    found fails it; a binary built without TLS skips TLS tests. Either skip is one line of
    pytest's summary for the whole run (:func:`pytest_runtest_makereport`).
    """
    try:
        started = factory(**kwargs)
    except NoServerInstalled as exc:
        _skip(str(exc))
    except ServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        started.start()
    except TlsUnsupported as exc:
        started.stop()
        _skip(f"no TLS: {exc}")
    except BaseException:
        started.stop()
        raise
    try:
        yield started
    finally:
        started.stop()


_skip_reasons: set[str] = set()


def _skip(reason: str) -> None:
    _skip_reasons.add(f"Skipped: {reason}")
    pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Skips for want of a server, reported where :func:`_skip` is, not at each test.

    pytest -ra folds skips of one place and reason into one line, and puts a skip raised in
    a fixture at the test's own line: without this, a machine with no server would read the
    same advice some forty times.
    """
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = report.longrepr[2]
        if reason in _skip_reasons:
            report.longrepr = (__file__, _skip.__code__.co_firstlineno, reason)


class Starter:
    """``start(Server, tls=…)`` inside a test: what it starts stops when the test ends."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack

    def __call__(self, factory: Callable[..., _Started], **kwargs: object) -> _Started:
        return self._stack.enter_context(running(factory, **kwargs))


@pytest.fixture
def start() -> Iterator[Starter]:
    with ExitStack() as stack:
        yield Starter(stack)


@pytest.fixture
def server() -> Iterator[Server]:
    with running(Server) as started:
        yield started


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running(Cluster) as started:
        yield started


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    return TlsFiles.make(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(tls_files: TlsFiles) -> Iterator[Server]:
    """A server that speaks TLS only."""
    with running(Server, tls=tls_files) as started:
        yield started


@pytest.fixture
def sentinel() -> Iterator[SentinelGroup]:
    """A master and a Sentinel that watches it."""
    with running(SentinelGroup) as started:
        yield started


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator
