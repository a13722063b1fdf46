"""The current Authorization header: one holder, one freshness decision, for every provider."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from memoram_auth.agent.client import AgentProvider
from memoram_auth.cache import MemoryOnlyCache
from memoram_auth.core.header import Entry, HeaderHolder
from memoram_auth.provider import TokenProvider
from memoram_auth.token import ADVISORY, FRESH, MANDATORY, Token

PACKAGE = Path(__file__).resolve().parent.parent / "memoram_auth"
API_KEY = "mk_test_0123456789abcdef0123456789abcdef"


def _token(*, age: float, lifetime: float = 3600.0) -> Token:
    """A token obtained *age* seconds ago, living *lifetime* seconds."""
    obtained = time.time() - age
    return Token("header.payload.signature", obtained, obtained + lifetime)


@pytest.mark.parametrize(
    ("age", "state", "header"),
    [
        pytest.param(10.0, FRESH, "Bearer header.payload.signature", id="fresh"),
        pytest.param(3300.0, ADVISORY, None, id="advisory"),
        pytest.param(3590.0, MANDATORY, None, id="mandatory"),
    ],
)
def test_the_holder_decides_where_its_token_stands(
    age: float, state: int, header: str | None
) -> None:
    holder = HeaderHolder()
    assert holder.fresh_authorization() is None
    assert holder.state() == (None, MANDATORY)
    token = _token(age=age)
    entry = holder.hold(token)
    assert holder.state() == (entry, state)
    assert holder.fresh_authorization() == header
    assert holder.fresh_token() is (token if state == FRESH else None)
    assert holder.usable_token() is (None if state == MANDATORY else token)
    holder.drop()
    assert holder.fresh_authorization() is None
    assert holder.usable_token() is None


def test_the_held_header_string_is_built_once_per_token() -> None:
    holder = HeaderHolder()
    token = _token(age=0)
    holder.hold(token)
    assert holder.authorization_for(token) is holder.fresh_authorization()
    other = _token(age=0)
    assert holder.authorization_for(other) == "Bearer header.payload.signature"
    assert holder.authorization_for(other) is not holder.fresh_authorization()


def test_a_spread_only_moves_the_refresh_later() -> None:
    token = _token(age=0)
    for _ in range(50):
        entry = Entry(token, spread=0.9)
        assert token.fresh_until <= entry.fresh_until <= token.usable_until


def _providers() -> list[object]:
    return [
        TokenProvider(API_KEY, "http://127.0.0.1:1/api/v1", cache=MemoryOnlyCache()),
        AgentProvider("/nonexistent/agent.sock", "http://127.0.0.1:1/api/v1"),
    ]


@pytest.mark.parametrize("provider", _providers(), ids=["provider", "agent"])
def test_every_provider_answers_the_adapters_from_one_holder(provider: object) -> None:
    holder = provider.header  # type: ignore[attr-defined]
    assert isinstance(holder, HeaderHolder)
    assert provider.fresh_authorization == holder.fresh_authorization  # type: ignore[attr-defined]
    assert provider.authorization_for == holder.authorization_for  # type: ignore[attr-defined]
    assert provider.fresh_authorization() is None  # type: ignore[attr-defined]
    token = _token(age=0)
    holder.hold(token)
    assert provider.fresh_authorization() == "Bearer header.payload.signature"  # type: ignore[attr-defined]
    assert provider.get_token() is token  # type: ignore[attr-defined]  # no I/O: it is fresh


def test_only_the_holder_and_the_token_compare_a_token_s_windows() -> None:
    # Freshness has one home: a comparison with fresh_until or usable_until anywhere else is
    # a second copy of the rule that can drift from it.
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(
                isinstance(sub, ast.Attribute) and sub.attr in {"fresh_until", "usable_until"}
                for sub in ast.walk(node)
            ):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert {where.split(":")[0] for where in found} == {"token.py", "core/header.py"}, found
