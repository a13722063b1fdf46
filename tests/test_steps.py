"""The provider's refresh as plain steps: what a cold start asks for, read without running it."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from memoram_auth.cache import FileCache
from memoram_auth.core.steps import Blocking, TokenRequest, Wait, drive
from memoram_auth.emulator import Emulator
from memoram_auth.provider import TokenProvider
from memoram_auth.token import Token
from memoram_auth.transport import UrllibTransport

from .conftest import FAST


def recorded(steps: Generator[Any, Any, Any], log: list[Any]) -> Generator[Any, Any, Any]:
    """*steps*, each one also appended to *log* before the driver runs it."""
    answer = None
    try:
        while True:
            step = steps.send(answer)
            log.append(step)
            answer = yield step
    except StopIteration as done:
        return done.value


def names(log: list[Any]) -> list[str]:
    return [step.name if isinstance(step, Blocking) else type(step).__name__ for step in log]


def test_a_cold_start_asks_for_these_steps(memoram_emulator: Emulator, tmp_path: Path) -> None:
    emu = memoram_emulator
    provider = TokenProvider(emu.api_key, emu.base_url, cache=FileCache(tmp_path), policy=FAST)
    log: list[Any] = []
    token: Token = drive(recorded(provider.refresh_steps(), log), UrllibTransport())
    assert names(log) == [
        "wait_thread_lock",  # one refresh per process
        "cached_token",  # another process's token, read without the lock
        "_lock_and_load",  # the cross-process lock, then the cache again
        "TokenRequest",  # POST /auth/token
        "_keep",  # store, release the lock, tell the plugins
    ]
    assert log[1] == Blocking(provider.cached_token)  # steps are data: they compare
    request = log[3]
    assert isinstance(request, TokenRequest)
    assert request.url == f"{emu.base_url}/auth/token"
    assert log[4].args[0] is token
    assert emu.counters.token_requests == 1


def test_a_token_another_process_cached_takes_two_steps(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    emu = memoram_emulator
    first = TokenProvider(emu.api_key, emu.base_url, cache=FileCache(tmp_path), policy=FAST)
    first.get_token()
    second = TokenProvider(emu.api_key, emu.base_url, cache=FileCache(tmp_path), policy=FAST)
    log: list[Any] = []
    drive(recorded(second.refresh_steps(), log), UrllibTransport())
    assert names(log) == ["wait_thread_lock", "cached_token"]
    assert emu.counters.token_requests == 1


def test_a_retry_is_a_wait_step(memoram_emulator: Emulator, tmp_path: Path) -> None:
    emu = memoram_emulator
    emu.fail_next(1, status=503)
    provider = TokenProvider(emu.api_key, emu.base_url, cache=FileCache(tmp_path), policy=FAST)
    log: list[Any] = []
    drive(recorded(provider.refresh_steps(), log), UrllibTransport(), sleep=lambda _: None)
    assert names(log)[3:6] == ["TokenRequest", "Wait", "TokenRequest"]
    wait = log[4]
    assert isinstance(wait, Wait)
    assert 0 < wait.seconds <= FAST.max_backoff


@pytest.mark.parametrize(
    ("one", "other", "equal"),
    [
        pytest.param(Wait(1.0), Wait(1.0), True, id="equal waits"),
        pytest.param(Wait(1.0), Wait(2.0), False, id="different waits"),
        pytest.param(Blocking(len, "ab"), Blocking(len, "ab"), True, id="same call"),
        pytest.param(Blocking(len, "ab"), Blocking(len, "abc"), False, id="other argument"),
        pytest.param(Blocking(len, "ab"), Blocking(repr, "ab"), False, id="other function"),
    ],
)
def test_steps_compare_as_data(one: object, other: object, equal: bool) -> None:
    assert (one == other) is equal


def test_a_blocking_step_shows_its_name_not_its_arguments() -> None:
    secret = Token("the-token-value", obtained_at=0.0, expires_at=1.0)
    step = Blocking(repr, secret)
    assert repr(step) == "Blocking(repr)"
    assert "the-token-value" not in repr(step)
