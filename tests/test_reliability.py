"""Reliability under stress: a short soak, fuzzed answers and inputs, resource faults, leaks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.soak import soak
from memoram_auth import (
    ConfigurationError,
    MemoramAuth,
    MemoramAuthError,
    MemoramAuthWarning,
    RetryPolicy,
)
from memoram_auth.cache import FileCache
from memoram_auth.emulator import Emulator, Fault
from memoram_auth.exchange import request_token
from memoram_auth.provider import TokenProvider
from memoram_auth.token import Token
from tests._attempts import Attempts


@pytest.mark.slow
def test_short_soak_under_faults() -> None:
    result = soak(duration=8, processes=3, threads=2, lifetime=4, revoke_every=3, kill_every=2)
    outcomes = result.outcomes
    assert sum(n for k, n in outcomes.items() if k.endswith((": 200", ": 201"))) > 100
    assert result.unexpected_401s == 0, outcomes
    assert outcomes.get("corrupt cache reads", 0) == 0
    assert result.kills >= 3
    # Failures callers see are the endpoint's (injected 503s and time-outs), never a crash.
    failures = {k.split(": ")[1] for k, n in outcomes.items() if not k.split(": ")[1][:1].isdigit()}
    assert failures <= {"EndpointUnavailableError", "replayed after 401"}, outcomes
    assert not any(k.startswith("warning:") for k in outcomes), outcomes
    assert result.tokens_issued <= 3 * result.ideal_tokens


HEADER_VALUE = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40
) | st.sampled_from(
    ["Thu, 01 Jan 1970 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "-1", "99999999999", "0"]
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    status=st.integers(min_value=200, max_value=599),
    date=HEADER_VALUE,
    retry_after=HEADER_VALUE,
    content_type=st.sampled_from(
        ["application/json", "text/html", "", "application/json; charset=x"]
    ),
    body=st.one_of(
        st.binary(max_size=100),
        st.fixed_dictionaries(
            {
                "token": st.text(max_size=30),
                "expires_at": HEADER_VALUE,
                "token_type": st.text(max_size=8),
            }
        ).map(lambda d: json.dumps(d).encode()),
    ),
)
def test_any_answer_is_a_token_or_a_memoram_error_in_bounded_time(
    shared_emulator: Emulator,
    status: int,
    date: str,
    retry_after: str,
    content_type: str,
    body: bytes,
) -> None:
    shared_emulator.clear_faults()
    headers = {"Date": date, "Retry-After": retry_after, "Content-Type": content_type}
    shared_emulator.inject(Fault(status=status, headers=headers, body=body), count=3)
    policy = RetryPolicy(
        timeout=1.0, total_timeout=2.0, backoff=0.01, max_backoff=0.02, retry_after_cap=0.1
    )
    with Attempts() as attempts:
        try:
            token = request_token(shared_emulator.base_url, shared_emulator.api_key, policy=policy)
        except MemoramAuthError as exc:
            message = str(exc)
        else:
            assert 0 <= token.lifetime <= 86_400
            message = ""
    # Bounded by the policy, not by the server: whatever Retry-After or Date says, no more
    # attempts than the policy's and no pause longer than its caps.
    assert 1 <= attempts.begun <= policy.attempts
    assert all(0 <= pause <= policy.retry_after_cap for pause in attempts.pauses), attempts.pauses
    assert shared_emulator.api_key not in message


@settings(max_examples=150)
@given(api_key=st.text(max_size=60), base_url=st.text(max_size=60))
def test_any_key_and_base_url_is_accepted_or_a_clear_error(api_key: str, base_url: str) -> None:
    try:
        auth = MemoramAuth(api_key, base_url=base_url, cache_dir=False)
    except ConfigurationError as exc:
        message = str(exc)
        assert message
        # Short keys can be words of the message itself ("/api" is in its example URL).
        if len(api_key.strip()) >= 8:
            assert api_key.strip() not in message
    else:
        assert auth.base_url.startswith(("https://", "http://"))
        assert api_key.strip() not in repr(auth) or len(api_key.strip()) < 8


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300))
def test_any_cache_bytes_are_a_miss_that_heals(tmp_path: Path, content: bytes) -> None:
    cache = FileCache(tmp_path)
    Path(cache.path("slot")).write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MemoramAuthWarning)
        cache.load("slot")
    token = Token("a.b.c", obtained_at=1.0, expires_at=61.0)
    cache.store("slot", token, base_url="https://x.example", key_fingerprint="sha256:0")
    assert cache.load("slot") == token


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make *directory* refuse new files, for root too (chattr +i) or as an ordinary user."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a directory read-only")
    if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode != 0:
        pytest.skip("this file system does not support chattr +i")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_read_only_directory_during_a_refresh(memoram_emulator: Emulator, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    provider = TokenProvider(
        memoram_emulator.api_key, memoram_emulator.base_url, cache=FileCache(cache_dir)
    )
    provider.get_token()
    stale = Token(
        provider.get_token().value, obtained_at=time.time() - 3590, expires_at=time.time() + 10
    )
    provider.cache.store(
        provider.slot, stale, base_url=provider.base_url, key_fingerprint=provider.fingerprint
    )
    # A new process: it knows only the nearly expired cached token.
    provider = TokenProvider(
        memoram_emulator.api_key, memoram_emulator.base_url, cache=FileCache(cache_dir)
    )
    with read_only(cache_dir), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh = provider.get_token()
        again = provider.get_token()
    assert [w.category for w in caught] == [MemoramAuthWarning]
    assert "keeping tokens in memory only" in str(caught[0].message)
    assert fresh.value != stale.value
    assert again is fresh
    assert memoram_emulator.counters.token_requests == 2


DISK_FULL = r"""
import json, resource, signal, sys, warnings
from memoram_auth.cache import FileCache
from memoram_auth.provider import TokenProvider
base_url, key, cache_dir = sys.argv[1:4]
provider = TokenProvider(key, base_url, cache=FileCache(cache_dir))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    first = provider.get_token()
    second = provider.get_token()
print(json.dumps({"same": first is second, "warnings": [str(w.message) for w in caught]}))
"""


def test_disk_full_falls_back_to_memory(memoram_emulator: Emulator, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            DISK_FULL,
            memoram_emulator.base_url,
            memoram_emulator.api_key,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["same"] is True
    assert len(report["warnings"]) == 1
    assert "keeping tokens in memory only" in report["warnings"][0]
    assert memoram_emulator.counters.token_requests == 1
    assert not list(tmp_path.glob("*.tmp")), "a failed write leaves no temporary file"


def test_the_leak_guard_catches_a_leak(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(Path(__file__).with_name("conftest.py").read_text())
    pytester.makepyfile(
        """
        import logging
        from memoram_auth.emulator import Emulator

        def test_leaky():
            with Emulator() as emu:
                logging.getLogger("someone").debug("oops %s", emu.api_key)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*the API key leaked into*"])
