"""The API key stays out of traceback locals (pytest --showlocals, rich, error trackers), and
the objects that hold it refuse to be pickled or copied (issue 12, point 9)."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import pytest
import requests

from memoram_auth import MemoramAuth, MemoramAuthError
from memoram_auth.emulator import Emulator
from memoram_auth.exchange import request_token
from memoram_auth.keys import ApiKey
from memoram_auth.provider import TokenProvider, get_provider

from .conftest import FAST

HERE = Path(__file__).resolve().parent


def locals_seen(error: BaseException) -> list[str]:
    """repr() of every local of every frame of *error*'s traceback and chained ones, as a
    traceback formatter that shows locals would print them; the test's own frames (which
    hold the key they pass in, as a user's code would) are left out."""
    seen: list[str] = []
    pending: list[BaseException | None] = [error]
    done: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in done:
            continue
        done.add(id(current))
        tb: TracebackType | None = current.__traceback__
        while tb is not None:
            if Path(tb.tb_frame.f_code.co_filename).parent == HERE:
                tb = tb.tb_next
                continue
            for name, value in tb.tb_frame.f_locals.items():
                try:
                    seen.append(f"{name}={value!r}")
                except Exception:  # noqa: BLE001, S112 - a broken repr is not our leak
                    continue
            tb = tb.tb_next
        pending += [current.__cause__, current.__context__]
    return seen


def leaks(error: BaseException, key: str) -> list[str]:
    return [text for text in locals_seen(error) if key in text or key[4:] in text]


SCENARIOS: dict[str, Callable[[Emulator, Path], object]] = {
    "request_token": lambda emu, _: request_token(emu.base_url, emu.api_key, policy=FAST),
    "provider": lambda emu, _: TokenProvider(
        emu.api_key, emu.base_url, cache=None, policy=FAST
    ).get_token(),
    "get_provider": lambda emu, tmp: get_provider(
        emu.api_key, emu.base_url, cache_dir=tmp, policy=FAST
    ).get_token(),
    "requests": lambda emu, tmp: requests.get(
        f"{emu.base_url}/tags",
        auth=MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp, policy=FAST),
        timeout=10,
    ),
}


@pytest.mark.parametrize("fault", ["rejected", "unavailable"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_key_is_in_no_traceback_local(
    memoram_emulator: Emulator, tmp_path: Path, scenario: str, fault: str
) -> None:
    key = memoram_emulator.api_key
    if fault == "rejected":
        memoram_emulator.remove_key(key)
    else:
        memoram_emulator.fail_next(3, status=503)
    with pytest.raises(MemoramAuthError) as caught:
        SCENARIOS[scenario](memoram_emulator, tmp_path)
    assert locals_seen(caught.value), "the check looks at real frames"
    assert leaks(caught.value, key) == []


def test_a_bad_base_url_at_construction_shows_no_key_in_locals(tmp_path: Path) -> None:
    key = "mem_" + "3f" * 24
    with pytest.raises(MemoramAuthError) as caught:
        MemoramAuth(key, base_url="http://api.example.com/v1", cache_dir=tmp_path)
    assert leaks(caught.value, key) == []


def test_the_check_catches_a_leak() -> None:
    # A frame outside the tests that holds the key: normalize_api_key before it dropped it.
    from memoram_auth import settings

    with pytest.raises(MemoramAuthError) as caught:
        settings.resolve_base_url("mem_secretsecret")  # a key where the URL goes
    assert leaks(caught.value, "mem_secretsecret")


def test_the_key_type_shows_only_the_fingerprint() -> None:
    key = ApiKey("mem_" + "ab" * 24)
    assert key.reveal() == "mem_" + "ab" * 24
    assert "ab" * 24 not in repr(key)
    assert "ab" * 24 not in str(key)
    assert key.fingerprint in repr(key)


@pytest.mark.parametrize("kind", ["key", "provider", "auth"])
def test_holders_of_the_key_refuse_pickle_and_copy(kind: str, tmp_path: Path) -> None:
    value = "mem_" + "cd" * 24
    holder: object
    if kind == "key":
        holder = ApiKey(value)
    elif kind == "provider":
        holder = TokenProvider(value, "http://127.0.0.1:9/api/v1", cache=None)
    else:
        holder = MemoramAuth(value, base_url="http://127.0.0.1:9/api/v1", cache_dir=tmp_path)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be pickled or copied") as caught:
            pickle.dumps(holder, protocol=protocol)
        assert value not in str(caught.value)
    for copier in (copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="cannot be pickled or copied"):
            copier(holder)
