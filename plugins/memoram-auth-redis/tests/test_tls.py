"""``rediss://`` and ``valkeys://`` against a real redis-server that speaks TLS only.

The certificates come from a throwaway CA (trustme); the plugin is configured as its README
says, through the environment, with the CA (and a client certificate) named in the URL.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests
from _servers import Server, TlsFiles
from memoram_auth_redis import RedisTokenCache

from memoram_auth import MemoramAuth, MemoramAuthWarning
from memoram_auth.cache import FileCache, slot_for
from memoram_auth.emulator import Emulator


def tls_url(server: Server, scheme: str = "rediss", **query: str) -> str:
    return f"{scheme}://127.0.0.1:{server.port}/0" + (
        "?" + urlencode(query, quote_via=quote) if query else ""
    )


def machine(emu: Emulator, cache_dir: Path) -> MemoramAuth:
    """One machine of the fleet: its own disk cache, the backend and URL from the environment."""
    auth = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=str(cache_dir))
    assert isinstance(auth.provider.cache, RedisTokenCache)
    return auth


def call(auth: MemoramAuth, emu: Emulator) -> int:
    """A request as a user makes it: through requests, with the token MemoramAuth adds."""
    with requests.Session() as session:
        session.auth = auth
        return session.get(f"{emu.base_url}/tags", timeout=30).status_code


def configure(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MEMORAM_AUTH_CACHE_BACKEND", "redis")
    monkeypatch.setenv("MEMORAM_AUTH_REDIS_URL", url)
    # Not the 0.3 s default: on a loaded CI machine a handshake can take longer, and these
    # tests are about certificates, not time.
    monkeypatch.setenv("MEMORAM_AUTH_REDIS_TIMEOUT", "5")


@pytest.mark.parametrize("scheme", ["rediss", "valkeys"])
def test_a_token_goes_round_the_fleet_through_tls(
    tls_server: Server,
    tls_files: TlsFiles,
    emu: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
) -> None:
    configure(monkeypatch, tls_url(tls_server, scheme, ssl_ca_certs=tls_files.ca))
    first, second = machine(emu, tmp_path / "a"), machine(emu, tmp_path / "b")
    assert call(first, emu) == 200
    assert call(second, emu) == 200  # an empty disk cache: the token came from Redis
    assert second.provider.get_token().value == first.provider.get_token().value
    assert emu.counters.token_requests == 1
    # The server has no plain port: what is stored there went through TLS.
    assert tls_server.client().keys("*:token")


@pytest.mark.parametrize(
    "trust",
    [
        pytest.param({}, id="system-CAs-only"),
        pytest.param({"ssl_ca_certs": "other"}, id="another-CA"),
    ],
)
def test_an_untrusted_certificate_fails_closed_to_the_local_cache(
    tls_server: Server,
    tls_files: TlsFiles,
    emu: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trust: dict[str, str],
) -> None:
    query = {k: tls_files.other_ca for k in trust}
    configure(monkeypatch, tls_url(tls_server, **query))
    first, second = machine(emu, tmp_path / "a"), machine(emu, tmp_path / "b")
    with pytest.warns(MemoramAuthWarning) as caught:
        assert call(first, emu) == 200
    (warning,) = caught
    message = str(warning.message)
    assert "not usable (configuration, not an outage)" in message  # a setting to fix
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "ssl_ca_certs=" in message  # the hint: how to name a private CA
    assert "using the local token cache" in message
    # Closed: nothing reached the server; the token is on this machine's disk instead.
    assert tls_server.client().keys("*") == []
    slot = slot_for(emu.base_url, emu.api_key)
    assert FileCache(tmp_path / "a").load(slot) is not None
    # Another machine runs on its own cache too (one token request each), with no new warning.
    assert call(second, emu) == 200
    assert emu.counters.token_requests == 2
    assert first.provider.cache.breaker.is_open  # type: ignore[attr-defined]


@pytest.fixture
def mtls_server(tls_files: TlsFiles, start: Callable[..., Any]) -> Server:
    """A server that wants a client certificate from the CA (tls-auth-clients yes)."""
    server: Server = start(Server, tls=tls_files, verify_clients=True)
    return server


def test_mutual_tls_with_a_client_certificate(
    mtls_server: Server,
    tls_files: TlsFiles,
    emu: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = tls_url(
        mtls_server,
        ssl_ca_certs=tls_files.ca,
        ssl_certfile=tls_files.client_cert,
        ssl_keyfile=tls_files.client_key,
    )
    configure(monkeypatch, url)
    first, second = machine(emu, tmp_path / "a"), machine(emu, tmp_path / "b")
    assert first.provider.get_token().value == second.provider.get_token().value
    assert emu.counters.token_requests == 1
    assert mtls_server.client().keys("*:token")


def test_mutual_tls_without_a_client_certificate_falls_back(
    mtls_server: Server,
    tls_files: TlsFiles,
    emu: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(monkeypatch, tls_url(mtls_server, ssl_ca_certs=tls_files.ca))
    auth = machine(emu, tmp_path / "a")
    with pytest.warns(
        MemoramAuthWarning, match="Redis token cache .* (unavailable|not usable)"
    ) as caught:
        assert call(auth, emu) == 200
    # The server hangs up on the handshake; whether the client sees its alert or the hang-up
    # is timing (rarely a reset, which says nothing of certificates): both get the advice.
    message = str(caught[0].message)
    assert "ssl_certfile=" in message or "reset by peer" in message
    assert emu.counters.token_requests == 1
    assert mtls_server.client().keys("*") == []
