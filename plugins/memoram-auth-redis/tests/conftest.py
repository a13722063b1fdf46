from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import memoram_auth_redis
import pytest
from memoram_auth_redis import _breaker

from memoram_auth import plugins
from memoram_auth.emulator import Emulator

sys.path.insert(0, str(Path(__file__).parent))

from _servers import Cluster, Server, ServerMissing


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


def _start(factory: type[Server] | type[Cluster], **kwargs: object) -> Server | Cluster:
    try:
        return factory(**kwargs).start()  # type: ignore[arg-type]
    except ServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def server() -> Iterator[Server]:
    started = _start(Server)
    assert isinstance(started, Server)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = _start(Cluster)
    assert isinstance(started, Cluster)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator
