"""The token exchange against the emulator over loopback: the request, the answer, retries."""

from __future__ import annotations

import json
import time
from email.utils import formatdate

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memoram_auth import (
    ConfigurationError,
    EndpointUnavailableError,
    KeyRejectedError,
    MalformedResponseError,
    MemoramAuthError,
    RetryPolicy,
    __version__,
)
from memoram_auth.emulator import Emulator
from memoram_auth.exchange import request_token

from ._attempts import Attempts
from .conftest import FAST


class Sleeps(list[float]):
    """Records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_exchange_returns_a_token_the_api_accepts(memoram_emulator: Emulator) -> None:
    token = request_token(memoram_emulator.base_url, memoram_emulator.api_key)
    assert memoram_emulator.state.check(token.value)
    assert 3590 < token.lifetime <= 3600
    assert token.expires_at == pytest.approx(time.time() + token.lifetime, abs=5)


def test_request_carries_only_the_key_and_no_authorization(memoram_emulator: Emulator) -> None:
    request_token(memoram_emulator.base_url, memoram_emulator.api_key)
    request_token(memoram_emulator.base_url, memoram_emulator.api_key, expires_in=120)
    plain, with_lifetime = memoram_emulator.requests
    assert json.loads(plain.body) == {"api_key": memoram_emulator.api_key}
    assert json.loads(with_lifetime.body) == {
        "api_key": memoram_emulator.api_key,
        "expires_in": 120,
    }
    headers = {k.lower(): v for k, v in plain.headers.items()}
    assert "authorization" not in headers
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith(f"memoram-auth/{__version__} ")
    assert plain.method == "POST"
    assert plain.path == "/api/v1/auth/token"


def test_expires_in_shapes_the_lifetime(memoram_emulator: Emulator) -> None:
    token = request_token(memoram_emulator.base_url, memoram_emulator.api_key, expires_in=60)
    assert 58 <= token.lifetime <= 60


@pytest.mark.parametrize("expires_in", [0, -1, True, 1.5, "60"], ids=repr)
def test_bad_expires_in_is_refused_before_any_request(
    memoram_emulator: Emulator, expires_in: object
) -> None:
    with pytest.raises(ConfigurationError, match="expires_in"):
        request_token(memoram_emulator.base_url, memoram_emulator.api_key, expires_in=expires_in)  # type: ignore[arg-type]
    assert memoram_emulator.counters.token_requests == 0


def test_unknown_key_is_rejected_once_without_retry(memoram_emulator: Emulator) -> None:
    key = "mem_" + "0" * 48
    with pytest.raises(KeyRejectedError) as caught:
        request_token(memoram_emulator.base_url, key, policy=FAST)
    assert caught.value.status == 401
    assert "from api_key= was rejected" in str(caught.value)  # where the key came from
    assert key not in str(caught.value)
    assert memoram_emulator.counters.token_requests == 1


@pytest.mark.parametrize("status", [400, 401, 403])
def test_rejections_are_not_retried(memoram_emulator: Emulator, status: int) -> None:
    memoram_emulator.fail_next(1, status=status)
    with pytest.raises(KeyRejectedError) as caught:
        request_token(memoram_emulator.base_url, memoram_emulator.api_key, policy=FAST)
    assert caught.value.status == status
    assert memoram_emulator.counters.token_requests == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(memoram_emulator: Emulator, status: int) -> None:
    memoram_emulator.fail_next(2, status=status)
    token = request_token(
        memoram_emulator.base_url, memoram_emulator.api_key, policy=FAST, sleep=Sleeps()
    )
    assert memoram_emulator.state.check(token.value)
    assert memoram_emulator.counters.token_requests == 3


def test_retries_give_up_after_the_attempts(memoram_emulator: Emulator) -> None:
    memoram_emulator.fail_next(5, status=503)
    sleeps = Sleeps()
    with pytest.raises(EndpointUnavailableError, match=r"after 3 attempt\(s\): it answered 503"):
        request_token(memoram_emulator.base_url, memoram_emulator.api_key, sleep=sleeps)
    assert memoram_emulator.counters.token_requests == 3
    # Exponential with jitter: each wait in [d/2, d] for d = 0.5, 1.0.
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5
    assert 0.5 <= sleeps[1] <= 1.0


def test_retry_after_seconds_is_honoured(memoram_emulator: Emulator) -> None:
    memoram_emulator.fail_next(1, status=503, headers={"Retry-After": "3"})
    sleeps = Sleeps()
    request_token(memoram_emulator.base_url, memoram_emulator.api_key, sleep=sleeps)
    assert sleeps == [3.0]


def test_retry_after_http_date_is_read_against_the_servers_clock() -> None:
    # The server's clock is an hour ahead; its Retry-After date is 4 s after its own Date.
    with Emulator(clock_offset=3600) as emu:
        emu.fail_next(
            1, status=429, headers={"Retry-After": formatdate(time.time() + 3604, usegmt=True)}
        )
        sleeps = Sleeps()
        request_token(emu.base_url, emu.api_key, sleep=sleeps)
    assert len(sleeps) == 1
    assert 2.5 <= sleeps[0] <= 4.5


def test_retry_after_is_capped(memoram_emulator: Emulator) -> None:
    memoram_emulator.fail_next(1, status=503, headers={"Retry-After": "86400"})
    sleeps = Sleeps()
    request_token(memoram_emulator.base_url, memoram_emulator.api_key, sleep=sleeps)
    assert sleeps == [RetryPolicy().retry_after_cap]


def test_a_wait_past_the_total_timeout_ends_the_exchange(memoram_emulator: Emulator) -> None:
    memoram_emulator.fail_next(1, status=503, headers={"Retry-After": "10"})
    policy = RetryPolicy(total_timeout=2.0)
    sleeps = Sleeps()
    with pytest.raises(EndpointUnavailableError, match="would pass the 2 s allowed") as caught:
        request_token(
            memoram_emulator.base_url, memoram_emulator.api_key, policy=policy, sleep=sleeps
        )
    assert caught.value.status == 503
    assert sleeps == []


def test_dropped_connections_are_retried(memoram_emulator: Emulator) -> None:
    memoram_emulator.drop_next(2)
    token = request_token(memoram_emulator.base_url, memoram_emulator.api_key, policy=FAST)
    assert memoram_emulator.state.check(token.value)


@pytest.mark.timeout(25)  # about timeouts: three 10 s answers waited for would end here
def test_timeouts_are_retried_then_reported(memoram_emulator: Emulator, attempts: Attempts) -> None:
    # Each answer would take 10 s: every attempt is cut off at its 0.2 s, and retried.
    memoram_emulator.delay_next(3, 10.0)
    policy = RetryPolicy(timeout=0.2, backoff=0.01)
    with pytest.raises(EndpointUnavailableError, match=r"no answer within 0\.2 s") as caught:
        request_token(memoram_emulator.base_url, memoram_emulator.api_key, policy=policy)
    assert caught.value.status is None
    assert "after 3 attempt(s)" in str(caught.value)
    assert attempts.begun == 3
    assert len(attempts.pauses) == 2


def test_total_timeout_bounds_slow_answers(memoram_emulator: Emulator, attempts: Attempts) -> None:
    memoram_emulator.delay_next(3, 10.0)
    policy = RetryPolicy(timeout=20.0, total_timeout=0.5, backoff=0.01)
    # Waiting for the first 10 s answer would have got a token: the error is the deadline's.
    with pytest.raises(EndpointUnavailableError):
        request_token(memoram_emulator.base_url, memoram_emulator.api_key, policy=policy)
    assert (attempts.begun, attempts.pauses) == (1, [])  # no time left for a second


def test_unreachable_endpoint_is_reported() -> None:
    with Emulator() as emu:
        base_url, key = emu.base_url, emu.api_key
    with pytest.raises(EndpointUnavailableError, match="cannot connect") as caught:
        request_token(base_url, key, policy=FAST)
    assert "MEMORAM_BASE_URL" in str(caught.value)


@pytest.mark.parametrize("status", [301, 307, 404, 418])
def test_unexpected_statuses_are_malformed_answers(memoram_emulator: Emulator, status: int) -> None:
    with Emulator() as elsewhere:
        memoram_emulator.fail_next(
            1, status=status, headers={"Location": f"{elsewhere.base_url}/auth/token"}
        )
        with pytest.raises(MalformedResponseError, match=f"answered {status}"):
            request_token(memoram_emulator.base_url, memoram_emulator.api_key, policy=FAST)
        # A redirect is never followed: the key must not travel to another origin.
        assert elsewhere.counters.token_requests == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b"{}", "without a token"),
        (b'{"token": ""}', "without a token"),
        (b'{"token": 42}', "without a token"),
        (b'{"token": "a b"}', "cannot go in an HTTP header"),
        (b'{"token": "abc\\r\\nX-Evil: 1"}', "cannot go in an HTTP header"),
        (b'{"token": "abc", "token_type": "MAC"}', "not Bearer"),
        (b'{"token": "abc", "token_type": 1}', "not Bearer"),
    ],
    ids=[
        "html",
        "empty",
        "array",
        "no-token",
        "empty-token",
        "number-token",
        "space-in-token",
        "header-injection",
        "mac-type",
        "numeric-type",
    ],
)
def test_malformed_answers_are_clear_errors(
    memoram_emulator: Emulator, body: bytes, message: str
) -> None:
    memoram_emulator.malformed_next(1, body=body)
    with pytest.raises(MalformedResponseError, match=message) as caught:
        request_token(memoram_emulator.base_url, memoram_emulator.api_key, policy=FAST)
    assert caught.value.status == 200


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER"])
def test_bearer_type_is_accepted_in_any_case(memoram_emulator: Emulator, token_type: str) -> None:
    body = json.dumps({"token": "abc.def.ghi", "token_type": token_type}).encode()
    memoram_emulator.malformed_next(1, body=body)
    assert request_token(memoram_emulator.base_url, memoram_emulator.api_key).value == "abc.def.ghi"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["token", "expires_at", "token_type", "x"]),
                    children,
                    max_size=4,
                )
            ),
            max_leaves=8,
        ).map(lambda value: json.dumps(value).encode()),
    ),
    status=st.sampled_from([200, 201, 400, 401, 404, 500, 503]),
)
def test_any_answer_is_a_token_or_a_memoram_error(
    shared_emulator: Emulator, body: bytes, status: int
) -> None:
    shared_emulator.clear_faults()
    shared_emulator.fail_next(3, status=status, body=body)
    policy = RetryPolicy(attempts=3, backoff=0.001, max_backoff=0.001, retry_after_cap=0.0)
    try:
        token = request_token(shared_emulator.base_url, shared_emulator.api_key, policy=policy)
    except MemoramAuthError as exc:
        message = str(exc)
    else:
        assert token.value
        assert 0 <= token.lifetime <= 86_400
        return
    assert shared_emulator.api_key not in message
