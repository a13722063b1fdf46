"""Expiry maths: lifetimes measured on the server's clock, deadlines on ours."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memoram_auth.emulator import Emulator
from memoram_auth.exchange import request_token
from memoram_auth.token import (
    DEFAULT_LIFETIME,
    MAX_LIFETIME,
    Token,
    jwt_claims,
    parse_iso8601,
    token_lifetime,
)

NOW = 1_800_000_000.0


def fake_jwt(claims: object) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{payload}.sig"


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def lifetime(
    *, expires_at: object = None, date: float | None = None, token: str = "opaque"
) -> float:
    date_header = formatdate(date, usegmt=True) if date is not None else None
    return token_lifetime(expires_at=expires_at, date_header=date_header, token=token, sent_at=NOW)


@pytest.mark.parametrize(
    "skew", [0, 3 * 3600, -3 * 3600, 86400 * 400], ids=["none", "ahead", "behind", "years"]
)
def test_lifetime_comes_from_the_servers_own_clock(skew: float) -> None:
    server_now = NOW + skew
    # Date has one-second resolution, so one second is kept in hand.
    assert lifetime(expires_at=iso(server_now + 3600), date=server_now) == 3599


def test_jwt_exp_minus_iat_when_expires_at_is_missing() -> None:
    token = fake_jwt({"iat": 5_000, "exp": 5_900})
    assert lifetime(token=token) == 900


def test_jwt_exp_against_date_when_iat_is_missing() -> None:
    token = fake_jwt({"exp": NOW + 7200 + 600})
    assert lifetime(token=token, date=NOW + 7200) == 599


def test_the_shortest_estimate_wins() -> None:
    token = fake_jwt({"iat": 0, "exp": 600})
    assert lifetime(expires_at=iso(NOW + 3600), date=NOW, token=token) == 600


def test_default_when_nothing_is_known() -> None:
    assert lifetime() == DEFAULT_LIFETIME
    assert lifetime(expires_at="next tuesday", date=NOW) == DEFAULT_LIFETIME


def test_expires_at_without_date_trusts_our_clock_only_up_to_the_default() -> None:
    assert lifetime(expires_at=iso(NOW + 120)) == pytest.approx(120, abs=1)
    assert lifetime(expires_at=iso(NOW + 7200)) == DEFAULT_LIFETIME
    assert lifetime(expires_at=iso(NOW - 7200)) == DEFAULT_LIFETIME


def test_lifetime_is_clamped() -> None:
    assert lifetime(expires_at=iso(NOW - 60), date=NOW) == 0
    assert lifetime(token=fake_jwt({"iat": 0, "exp": 10**12})) == MAX_LIFETIME


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05+00:00",
        "2026-01-02T03:04:05.123z",
        "2026-01-02T03:04:05",
    ],
)
def test_iso8601_forms(text: str) -> None:
    parsed = parse_iso8601(text)
    assert parsed is not None
    assert parsed.utcoffset() is not None
    assert int(parsed.timestamp()) == 1767323045


@pytest.mark.parametrize("value", [None, 5, "", "soon", "2026-13-40T00:00:00Z"])
def test_bad_iso8601_is_none(value: object) -> None:
    assert parse_iso8601(value) is None


@pytest.mark.parametrize("token", ["", "a.b", "a.!!!.c", "a.bnVsbA.c", fake_jwt([1, 2])])
def test_jwt_claims_of_non_jwts_are_empty(token: str) -> None:
    assert jwt_claims(token) == {}


@given(
    expires_at=st.one_of(
        st.none(), st.text(max_size=30), st.integers(), st.datetimes().map(lambda d: d.isoformat())
    ),
    date=st.one_of(st.none(), st.text(max_size=40)),
    token=st.text(max_size=60),
)
def test_lifetime_never_raises_and_stays_in_range(
    expires_at: object, date: str | None, token: str
) -> None:
    value = token_lifetime(expires_at=expires_at, date_header=date, token=token, sent_at=NOW)
    assert 0 <= value <= MAX_LIFETIME


def test_token_repr_hides_the_value() -> None:
    token = Token("secret.jwt.value", obtained_at=NOW, expires_at=NOW + 60)
    assert "secret" not in repr(token)
    assert token.lifetime == 60
    assert token.remaining(NOW + 15) == 45


def api_accepts(emu: Emulator, token: str) -> bool:
    request = urllib.request.Request(
        f"{emu.base_url}/tags", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5):
            return True
    except urllib.error.HTTPError as exc:
        exc.close()
        return False


@pytest.mark.slow
@pytest.mark.parametrize("skew", [3 * 3600, -3 * 3600], ids=["server-ahead", "server-behind"])
def test_local_deadline_holds_under_hours_of_skew(skew: float) -> None:
    with Emulator(max_lifetime=3, clock_offset=skew) as emu:
        token = request_token(emu.base_url, emu.api_key)
        # Whole seconds on the server side cost up to 2 s of a 3 s token, never more.
        assert 1.0 <= token.lifetime <= 3.0
        time.sleep(max(0.0, token.remaining() - 0.3))
        assert api_accepts(emu, token.value), "the token died before our deadline"
        time.sleep(max(0.0, token.remaining()) + 1.2)
        assert not api_accepts(emu, token.value)
