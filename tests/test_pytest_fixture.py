"""The ``memoram_emulator`` fixture keeps code under test off the developer's API and key.

A throwaway suite runs in a pytest subprocess whose environment holds a "production" setup: a
second emulator's base URL and key (so that a leak is counted, not sent anywhere), a socket of
an agent and a cache backend.
"""

from __future__ import annotations

import pytest

from memoram_auth.emulator import Emulator


def test_code_under_test_talks_to_the_emulator_not_production(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import os, subprocess, sys

        import httpx
        import requests

        from memoram_auth import MemoramAuth


        def list_tags():
            # The code under test: it configures nothing, as in production.
            url = os.environ["MEMORAM_BASE_URL"] + "/tags"
            return requests.get(url, auth=MemoramAuth(), timeout=10).status_code


        def test_requests(memoram_emulator):
            assert list_tags() == 200
            assert memoram_emulator.counters.token_requests == 1
            assert "MEMORAM_AUTH_SOCK" not in os.environ
            assert "MEMORAM_AUTH_CACHE_BACKEND" not in os.environ


        def test_httpx_and_the_command_line(memoram_emulator):
            with httpx.Client(auth=MemoramAuth()) as client:
                assert client.get(memoram_emulator.base_url + "/tags").status_code == 200
            subprocess.run([sys.executable, "-m", "memoram_auth", "token"], check=True,
                           stdout=subprocess.DEVNULL, timeout=60)
            assert memoram_emulator.counters.token_requests == 1  # the CLI used the cache


        def test_zz_restored_after():
            assert os.environ["MEMORAM_API_KEY"] != ""
            assert "MEMORAM_AUTH_SOCK" in os.environ
        """
    )
    with Emulator() as production:
        monkeypatch.setenv("MEMORAM_BASE_URL", production.base_url)
        monkeypatch.setenv("MEMORAM_API_KEY", production.api_key)
        monkeypatch.setenv("MEMORAM_AUTH_SOCK", str(pytester.path / "no-agent.sock"))
        monkeypatch.setenv("MEMORAM_AUTH_CACHE_BACKEND", "not-installed")
        monkeypatch.setenv("MEMORAM_AUTH_CACHE_DIR", str(pytester.path / "developers-cache"))
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
        result.assert_outcomes(passed=3)
        assert production.counters.token_requests == 0
        assert production.counters.api_requests == 0
    assert not (pytester.path / "developers-cache").exists()
