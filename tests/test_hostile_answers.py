"""Hostile or absurd answers from the token endpoint stay inside the error tree (issue 12).

Server text reaches messages only as short printable ASCII (no terminal escapes), and absurd
numbers end as a sane clamped lifetime or a MalformedResponseError, never another exception.
"""

from __future__ import annotations

import base64
import json
import math
from email.utils import formatdate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memoram_auth import MalformedResponseError, MemoramAuthError, RetryPolicy
from memoram_auth.exchange import parse_response, request_token, retry_after
from memoram_auth.token import MAX_LIFETIME, token_lifetime
from memoram_auth.transport import RawResponse

URL = "https://api.memoram.app/api/v1/auth/token"
SENT_AT = 1_800_000_000.0
ESCAPES = "\x1b[31mred\x1b]0;pwned\x07\x1b[2J\r\n\x00\x9b\u202e"


def jwt_with(claims: object) -> str:
    raw = json.dumps(claims, allow_nan=True).encode()
    payload = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{payload}.sig"


def answer(status: int, body: object, **headers: str) -> RawResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body, allow_nan=True).encode()
    return RawResponse(status, headers.items(), raw)


def assert_printable(message: str) -> None:
    assert all(" " <= char <= "~" for char in message), repr(message)


# -- 11. server text in messages ----------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(answer(200, b"<html>", **{"Content-Type": f"text/html{ESCAPES}"}), id="2xx"),
        pytest.param(answer(404, b"nope", **{"Content-Type": f"{ESCAPES}text/x"}), id="404"),
        pytest.param(answer(200, {"token": "a.b.c", "token_type": ESCAPES}), id="token-type"),
        pytest.param(
            answer(200, {"token": "a.b.c", "token_type": "x" * 5000}), id="long-token-type"
        ),
    ],
)
def test_server_text_in_messages_is_short_printable_ascii(response: RawResponse) -> None:
    def transport(*args: object) -> RawResponse:
        return response

    with pytest.raises(MalformedResponseError) as caught:
        request_token("https://api.memoram.app/api/v1", "mem_" + "ab" * 24, transport=transport)
    message = str(caught.value)
    assert_printable(message)
    assert "\x1b" not in message
    assert len(message) < 400


def test_a_hostile_content_type_does_not_reach_the_cli_raw(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from memoram_auth import cli
    from memoram_auth.emulator import Emulator

    with Emulator() as emu:
        emu.malformed_next(1)  # an HTML page, whose Content-Type we then make hostile
        import memoram_auth.transport as transport

        original = transport.urllib_transport

        def hostile(*args: object, **kwargs: object) -> RawResponse:
            response = original(*args, **kwargs)  # type: ignore[arg-type]
            response.headers["content-type"] = f"text/html{ESCAPES}"
            return response

        monkeypatch.setattr(transport, "urllib_transport", hostile)
        status = cli.main(
            ["token", "--no-disk-cache", "--base-url", emu.base_url, "--api-key", emu.api_key]
        )
    err = capsys.readouterr().err
    assert status == 5
    assert "\x1b" not in err
    assert_printable(err.rstrip("\n"))


# -- 12. absurd numbers -------------------------------------------------------------------------

ABSURD = st.one_of(
    st.sampled_from([10**400, -(10**400), 10**308 * 10, math.inf, -math.inf, math.nan]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": 10**400, "iat": 0}, id="exp-10e400"),
        pytest.param({"exp": 10**400}, id="exp-10e400-no-iat"),
        pytest.param({"exp": 1, "iat": -(10**400)}, id="iat-minus-10e400"),
        pytest.param({"exp": math.inf, "iat": 0}, id="exp-inf"),
        pytest.param({"exp": math.inf, "iat": math.inf}, id="inf-minus-inf"),
        pytest.param({"exp": math.nan, "iat": 0}, id="nan"),
        pytest.param({"exp": 1e308, "iat": -1e308}, id="difference-overflows"),
    ],
)
def test_absurd_jwt_times_give_a_clamped_finite_lifetime(claims: dict[str, object]) -> None:
    date = formatdate(SENT_AT, usegmt=True)
    value = token_lifetime(expires_at=None, date_header=date, token=jwt_with(claims), sent_at=0)
    assert math.isfinite(value)
    assert 0 <= value <= MAX_LIFETIME


@settings(max_examples=300, deadline=None)
@given(exp=ABSURD, iat=ABSURD, expires_at=ABSURD, token_type=ABSURD)
def test_any_absurd_answer_is_a_token_or_a_malformed_response(
    exp: object, iat: object, expires_at: object, token_type: object
) -> None:
    body = {
        "token": jwt_with({"exp": exp, "iat": iat}),
        "expires_at": expires_at,
        "token_type": token_type,
    }
    response = answer(200, body, Date=formatdate(SENT_AT, usegmt=True))
    try:
        token = parse_response(response, sent_at=SENT_AT, url=URL)
    except MalformedResponseError as exc:
        assert_printable(str(exc))
        return
    assert math.isfinite(token.expires_at)
    assert 0 <= token.lifetime <= MAX_LIFETIME


@pytest.mark.parametrize("value", ["²", "1" * 400, "١٢", "9" * 5000, "-1", "1e9", "nan"])
def test_absurd_retry_after_is_ignored_or_capped(value: str) -> None:
    response = answer(503, b"", **{"Retry-After": value})
    try:
        wait = retry_after(response, SENT_AT)
    except MemoramAuthError:  # pragma: no cover - would also be acceptable
        return
    assert wait is None or wait >= 0
    policy = RetryPolicy(attempts=2, total_timeout=5.0, retry_after_cap=0.01)
    calls: list[int] = []

    def transport(*args: object) -> RawResponse:
        calls.append(1)
        return response

    with pytest.raises(MemoramAuthError):
        request_token(
            "https://api.memoram.app/api/v1",
            "mem_" + "ab" * 24,
            policy=policy,
            transport=transport,
            sleep=lambda seconds: None,
        )
    assert len(calls) == 2
