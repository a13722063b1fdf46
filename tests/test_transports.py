"""The token request travels like the user's own requests: TLS trust, client certificates,
proxies, mocks and event loops, against the emulator served over TLS with a private CA."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import requests

from memoram_auth import MemoramAuth, MemoramAuthError, RetryPolicy
from memoram_auth.emulator import Emulator
from memoram_auth.provider import TokenProvider, get_provider
from memoram_auth.transport import NetworkSettings
from memoram_auth.transports.requests import requests_transport
from tests._attempts import Attempts
from tests._proxy import ConnectProxy

#: Quick retries with the default time budget (conftest.FAST also shortens the budget).
BRIEF_BACKOFF = RetryPolicy(backoff=0.01, max_backoff=0.02)
#: If a failure were retried, its first backoff alone would take >= 2.5 s.
SLOW_RETRY = RetryPolicy(backoff=5.0, max_backoff=5.0)


def tunnel_to(emu: Emulator) -> str:
    return f"127.0.0.1:{emu.port}"


@pytest.fixture
def mtls_emulator(tls_emulator: Emulator, tls_ca: object) -> Emulator:
    context = tls_emulator.ssl_context
    assert context is not None
    context.verify_mode = ssl.CERT_REQUIRED
    tls_ca.configure_trust(context)  # type: ignore[attr-defined]
    return tls_emulator


def ca_context(ca_bundle: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_bundle)


# -- 1. explicit settings, in every adapter and in get_provider --------------------------------


@pytest.mark.parametrize("form", ["path", "context"])
@pytest.mark.parametrize("adapter", ["requests", "httpx", "httpx-async", "provider"])
def test_explicit_verify_trusts_a_private_ca(
    tls_emulator: Emulator, ca_bundle: str, tmp_path: Path, adapter: str, form: str
) -> None:
    verify: str | ssl.SSLContext = ca_bundle if form == "path" else ca_context(ca_bundle)
    url = f"{tls_emulator.base_url}/tags"
    if adapter == "provider":
        provider = get_provider(
            tls_emulator.api_key, tls_emulator.base_url, cache_dir=tmp_path, verify=verify
        )
        assert tls_emulator.state.check(provider.get_token().value)
    else:
        auth = MemoramAuth(
            tls_emulator.api_key, base_url=tls_emulator.base_url, cache_dir=tmp_path, verify=verify
        )
        # The user's own request trusts the CA in its own way; the token request by verify=.
        if adapter == "requests":
            status = requests.get(url, auth=auth, verify=ca_bundle, timeout=10).status_code
        elif adapter == "httpx":
            with httpx.Client(auth=auth, verify=ca_context(ca_bundle)) as client:
                status = client.get(url).status_code
        else:

            async def call() -> int:
                async with httpx.AsyncClient(auth=auth, verify=ca_context(ca_bundle)) as client:
                    return (await client.get(url)).status_code

            status = asyncio.run(call())
        assert status == 200
    assert tls_emulator.counters.token_requests == 1


@pytest.mark.parametrize("adapter", ["requests", "httpx", "provider"])
def test_explicit_client_certificate_for_mutual_tls(
    mtls_emulator: Emulator,
    ca_bundle: str,
    tls_client_cert: tuple[str, str],
    tmp_path: Path,
    adapter: str,
) -> None:
    emu = mtls_emulator
    if adapter == "provider":
        provider = get_provider(
            emu.api_key, emu.base_url, cache_dir=tmp_path, verify=ca_bundle, cert=tls_client_cert
        )
        assert emu.state.check(provider.get_token().value)
    else:
        auth = MemoramAuth(
            emu.api_key,
            base_url=emu.base_url,
            cache_dir=tmp_path,
            verify=ca_bundle,
            cert=tls_client_cert,
        )
        if adapter == "requests":
            response = requests.get(
                f"{emu.base_url}/tags",
                auth=auth,
                verify=ca_bundle,
                cert=tls_client_cert,
                timeout=10,
            )
            assert response.status_code == 200
        else:
            context = ca_context(ca_bundle)
            context.load_cert_chain(*tls_client_cert)
            with httpx.Client(auth=auth, verify=context) as client:
                assert client.get(f"{emu.base_url}/tags").status_code == 200
    assert emu.counters.token_requests == 1


def test_without_the_client_certificate_mutual_tls_fails_clearly(
    mtls_emulator: Emulator, ca_bundle: str, tmp_path: Path
) -> None:
    provider = TokenProvider(
        mtls_emulator.api_key,
        mtls_emulator.base_url,
        cache=None,
        policy=BRIEF_BACKOFF,
        network=NetworkSettings(verify=ca_bundle),
    )
    with pytest.raises(MemoramAuthError, match=r"unavailable|failed"):
        provider.get_token()
    assert mtls_emulator.counters.token_requests == 0


@pytest.mark.parametrize("adapter", ["requests", "httpx", "provider"])
def test_explicit_proxy_carries_the_token_request(
    tls_emulator: Emulator,
    ca_bundle: str,
    connect_proxy: ConnectProxy,
    tmp_path: Path,
    adapter: str,
) -> None:
    settings = {"verify": ca_bundle, "proxy": connect_proxy.url}
    if adapter == "provider":
        provider = get_provider(
            tls_emulator.api_key, tls_emulator.base_url, cache_dir=tmp_path, **settings
        )
        provider.get_token()
    else:
        auth = MemoramAuth(
            tls_emulator.api_key, base_url=tls_emulator.base_url, cache_dir=tmp_path, **settings
        )
        # The user's own request goes direct: only the token request uses the proxy.
        if adapter == "requests":
            auth(requests.Request("GET", f"{tls_emulator.base_url}/tags").prepare())
        else:
            with httpx.Client(auth=auth, verify=ca_context(ca_bundle)) as client:
                assert client.get(f"{tls_emulator.base_url}/tags").status_code == 200
    assert connect_proxy.tunnels == [tunnel_to(tls_emulator)]
    assert tls_emulator.counters.token_requests == 1


def test_settings_of_the_wrong_type_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="verify="):
        MemoramAuth("mem_x", cache_dir=tmp_path, verify=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cert="):
        MemoramAuth("mem_x", cache_dir=tmp_path, cert=("a", "b", "c"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="proxy=") as caught:
        MemoramAuth("mem_x", cache_dir=tmp_path, proxy="ftp://user:secret@p")
    assert "secret" not in str(caught.value)


# -- 2. requests: the environment as requests reads it, and requests' mocks ---------------------


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_requests_reads_the_ca_bundle_variables(
    tls_emulator: Emulator,
    ca_bundle: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    monkeypatch.setenv(variable, ca_bundle)
    auth = MemoramAuth(tls_emulator.api_key, base_url=tls_emulator.base_url, cache_dir=tmp_path)
    assert requests.get(f"{tls_emulator.base_url}/tags", auth=auth, timeout=10).status_code == 200
    assert tls_emulator.counters.token_requests == 1


@pytest.mark.parametrize(
    ("no_proxy", "through_proxy"),
    [
        ("", True),
        ("127.0.0.0/8", False),
        ("127.0.0.1", False),
        ("10.0.0.0/8,example.com", True),
        # requests compares an IP host with whole entries only: host:port does not exempt it.
        ("127.0.0.1:{port}", True),
        ("*", False),
    ],
    ids=["no-exemption", "cidr", "address", "others", "ip-with-port", "star"],
)
def test_requests_matches_no_proxy_as_requests_does(
    tls_emulator: Emulator,
    ca_bundle: str,
    connect_proxy: ConnectProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
    through_proxy: bool,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy.format(port=tls_emulator.port))
    auth = MemoramAuth(
        tls_emulator.api_key, base_url=tls_emulator.base_url, cache_dir=tmp_path, verify=ca_bundle
    )
    auth.provider.authorization(requests_transport(auth.network))
    assert bool(connect_proxy.tunnels) is through_proxy
    # The stdlib transport (the command line's) matches the same way.
    provider = TokenProvider(
        tls_emulator.api_key,
        tls_emulator.base_url,
        cache=None,
        network=NetworkSettings(verify=ca_bundle),
    )
    before = len(connect_proxy.tunnels)
    provider.get_token()
    assert (len(connect_proxy.tunnels) > before) is through_proxy


def test_trust_env_false_ignores_the_environment_proxy(
    tls_emulator: Emulator,
    ca_bundle: str,
    connect_proxy: ConnectProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url)
    auth = MemoramAuth(
        tls_emulator.api_key,
        base_url=tls_emulator.base_url,
        cache_dir=tmp_path,
        verify=ca_bundle,
        trust_env=False,
    )
    auth.provider.authorization(requests_transport(auth.network))
    assert connect_proxy.tunnels == []
    assert tls_emulator.counters.token_requests == 1


def test_responses_mocks_the_token_request(tmp_path: Path) -> None:
    import responses

    base = "https://api.memoram.example/api/v1"
    with responses.RequestsMock() as mock:
        mock.post(f"{base}/auth/token", json={"token": "tok.en.x", "token_type": "Bearer"})
        mock.get(f"{base}/tags", json={"tags": []})
        auth = MemoramAuth("mem_test", base_url=base, cache_dir=tmp_path)
        assert requests.get(f"{base}/tags", auth=auth, timeout=5).json() == {"tags": []}
        assert mock.calls[1].request.headers["Authorization"] == "Bearer tok.en.x"


def test_requests_mock_mocks_the_token_request(tmp_path: Path) -> None:
    import requests_mock

    base = "https://api.memoram.example/api/v1"
    with requests_mock.Mocker() as mock:
        mock.post(f"{base}/auth/token", json={"token": "tok.en.y"})
        mock.get(f"{base}/tags", json={"tags": []})
        auth = MemoramAuth("mem_test", base_url=base, cache_dir=tmp_path)
        requests.get(f"{base}/tags", auth=auth, timeout=5)
        assert mock.request_history[-1].headers["Authorization"] == "Bearer tok.en.y"


# -- 3. httpx: the client's own settings, and httpx's mocks -------------------------------------


def test_httpx_client_settings_apply_to_the_token_request(
    tls_emulator: Emulator, ca_bundle: str, connect_proxy: ConnectProxy, tmp_path: Path
) -> None:
    auth = MemoramAuth(tls_emulator.api_key, base_url=tls_emulator.base_url, cache_dir=tmp_path)
    with httpx.Client(verify=ca_context(ca_bundle), proxy=connect_proxy.url, auth=auth) as client:
        response = client.get(f"{tls_emulator.base_url}/tags")
    assert response.status_code == 200
    assert response.history == []  # the token request is ours, not the user's
    assert connect_proxy.tunnels  # token request and API call through the client's proxy
    assert tls_emulator.counters.token_requests == 1


def test_httpx_async_client_settings_apply_to_the_token_request(
    tls_emulator: Emulator, ca_bundle: str, connect_proxy: ConnectProxy, tmp_path: Path
) -> None:
    auth = MemoramAuth(tls_emulator.api_key, base_url=tls_emulator.base_url, cache_dir=tmp_path)

    async def call() -> int:
        async with httpx.AsyncClient(
            verify=ca_context(ca_bundle), proxy=connect_proxy.url, auth=auth
        ) as client:
            return (await client.get(f"{tls_emulator.base_url}/tags")).status_code

    assert asyncio.run(call()) == 200
    assert connect_proxy.tunnels
    assert tls_emulator.counters.token_requests == 1


def test_respx_mocks_the_token_request(tmp_path: Path) -> None:
    import respx

    base = "https://api.memoram.example/api/v1"
    with respx.mock(assert_all_called=True) as mock:
        token = mock.post(f"{base}/auth/token").respond(json={"token": "tok.en.z"})
        tags = mock.get(f"{base}/tags").respond(json={"tags": []})
        auth = MemoramAuth("mem_test", base_url=base, cache_dir=tmp_path)
        with httpx.Client(auth=auth) as client:
            assert client.get(f"{base}/tags").json() == {"tags": []}
    assert token.call_count == 1
    assert tags.calls.last.request.headers["Authorization"] == "Bearer tok.en.z"


def test_pytest_httpx_mocks_the_token_request(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    pytest.importorskip("pytest_httpx")  # not in the "min" environment: it pins httpx
    httpx_mock = request.getfixturevalue("httpx_mock")
    base = "https://api.memoram.example/api/v1"
    httpx_mock.add_response(  # type: ignore[attr-defined]
        method="POST", url=f"{base}/auth/token", json={"token": "tok.en.w"}
    )
    httpx_mock.add_response(method="GET", url=f"{base}/tags", json={"tags": []})  # type: ignore[attr-defined]
    auth = MemoramAuth("mem_test", base_url=base, cache_dir=tmp_path)
    with httpx.Client(auth=auth) as client:
        client.get(f"{base}/tags")
    sent = httpx_mock.get_requests()  # type: ignore[attr-defined]
    assert [r.url.path for r in sent] == ["/api/v1/auth/token", "/api/v1/tags"]
    assert sent[1].headers["Authorization"] == "Bearer tok.en.w"


# -- 5. async under asyncio, uvloop and trio ----------------------------------------------------


def run_async(loop: str, main: object) -> object:
    if loop == "trio":
        import trio

        return trio.run(main)  # type: ignore[arg-type]
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(main())  # type: ignore[operator]
    return asyncio.run(main())  # type: ignore[operator]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "trio"])
def test_concurrent_cold_requests_share_one_token_request(loop: str, tmp_path: Path) -> None:
    with Emulator(token_delay=0.2) as emu:
        auth = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)

        async def main() -> list[int]:
            import anyio

            statuses: list[int] = []
            async with httpx.AsyncClient(auth=auth) as client:

                async def one() -> None:
                    statuses.append((await client.get(f"{emu.base_url}/tags")).status_code)

                async with anyio.create_task_group() as group:
                    for _ in range(20):
                        group.start_soon(one)
            return statuses

        assert run_async(loop, main) == [200] * 20
        assert emu.counters.token_requests == 1
        # A revoked token costs one replay, on this loop too.
        emu.revoke_all()
        emu.reset_counters()

        async def again() -> httpx.Response:
            async with httpx.AsyncClient(auth=auth) as client:
                return await client.post(
                    f"{emu.base_url}/memory-blobs", json={"user_id": "u1", "content": "x"}
                )

        response = run_async(loop, again)
        assert isinstance(response, httpx.Response)
        assert response.status_code == 201
        assert [r.status_code for r in response.history] == [401]
        assert emu.counters.token_requests == 1


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_provider_async_path_runs_on_any_loop(loop: str, tmp_path: Path) -> None:
    with Emulator() as emu:
        provider = TokenProvider(emu.api_key, emu.base_url, cache=None)

        async def main() -> str:
            return (await provider.get_token_async()).value

        assert emu.state.check(str(run_async(loop, main)))


# -- 6. failures that say what to do -----------------------------------------------------------


def token_fetch(adapter: str, api_key: str, base_url: str, tmp_path: Path) -> Callable[[], object]:
    """What fetches a token: the requests adapter's transport, or the plain provider's."""
    if adapter == "provider":
        return TokenProvider(api_key, base_url, cache=None, policy=SLOW_RETRY).get_token
    auth = MemoramAuth(api_key, base_url=base_url, cache_dir=tmp_path, policy=SLOW_RETRY)
    return lambda: auth.provider.authorization(requests_transport(auth.network))


@pytest.mark.parametrize("adapter", ["requests", "provider"])
def test_an_untrusted_certificate_is_not_retried_and_names_the_ca_options(
    tls_emulator: Emulator, tmp_path: Path, adapter: str, attempts: Attempts
) -> None:
    fetch = token_fetch(adapter, tls_emulator.api_key, tls_emulator.base_url, tmp_path)
    with pytest.raises(MemoramAuthError) as caught:
        fetch()
    assert (attempts.begun, attempts.pauses) == (1, [])  # final: not retried
    message = str(caught.value)
    assert "did not verify" in message
    for option in ("verify=", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        assert option in message


@pytest.mark.parametrize("adapter", ["requests", "provider"])
def test_https_to_a_plain_http_server_says_so(
    tmp_path: Path, adapter: str, attempts: Attempts
) -> None:
    with Emulator() as emu:
        fetch = token_fetch(adapter, emu.api_key, emu.base_url.replace("http:", "https:"), tmp_path)
        with pytest.raises(MemoramAuthError, match="plain-http server"):
            fetch()
        assert (attempts.begun, attempts.pauses) == (1, [])  # final: not retried


def test_a_socks_proxy_fails_at_once_or_works(
    tls_emulator: Emulator, ca_bundle: str, tmp_path: Path, attempts: Attempts
) -> None:
    # https: a plain-http (loopback) token request never goes through a proxy.
    emu = tls_emulator
    # The stdlib transport (the command line) has no SOCKS: it says so at once.
    provider = TokenProvider(
        emu.api_key,
        emu.base_url,
        cache=None,
        policy=SLOW_RETRY,
        network=NetworkSettings(proxy="socks5h://127.0.0.1:9", verify=ca_bundle),
    )
    with pytest.raises(MemoramAuthError, match="socks5h:// proxy"):
        provider.get_token()
    assert (attempts.begun, attempts.pauses) == (1, [])  # final: not retried
    # requests with PySocks: a refused SOCKS connection is an ordinary quick failure.
    auth = MemoramAuth(
        emu.api_key,
        base_url=emu.base_url,
        cache_dir=tmp_path,
        policy=BRIEF_BACKOFF,
        proxy="socks5h://127.0.0.1:9",
        verify=ca_bundle,
    )
    with pytest.raises(MemoramAuthError):
        auth.provider.authorization(requests_transport(auth.network))
    # Retried as any refused connection is, within the policy: never a hang.
    assert attempts.begun == 1 + BRIEF_BACKOFF.attempts
    assert all(pause <= BRIEF_BACKOFF.max_backoff for pause in attempts.pauses)


# -- 4. httpie: the environment route, with the real program ------------------------------------


def test_httpie_token_request_uses_the_environment_ca_bundle(
    tls_emulator: Emulator, ca_bundle: str, tmp_path: Path
) -> None:
    http = Path(sys.executable).with_name("http")
    if not http.exists():
        pytest.skip("httpie is not installed in this environment")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")},
        "MEMORAM_API_KEY": tls_emulator.api_key,
        "MEMORAM_BASE_URL": tls_emulator.base_url,
        "MEMORAM_AUTH_CACHE_DIR": str(tmp_path / "cache"),
        "REQUESTS_CA_BUNDLE": ca_bundle,
        "HTTPIE_CONFIG_DIR": str(tmp_path / "httpie"),
    }
    result = subprocess.run(
        [
            str(http),
            "--ignore-stdin",
            "--check-status",
            "-A",
            "memoram",
            f"{tls_emulator.base_url}/tags",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert tls_emulator.counters.token_requests == 1


# -- the command line: flags and environment -----------------------------------------------------


@pytest.mark.parametrize("how", ["flags", "environment"])
def test_cli_token_request_settings(
    mtls_emulator: Emulator,
    ca_bundle: str,
    tls_client_cert: tuple[str, str],
    connect_proxy: ConnectProxy,
    tmp_path: Path,
    how: str,
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")},
        "MEMORAM_API_KEY": mtls_emulator.api_key,
        "MEMORAM_BASE_URL": mtls_emulator.base_url,
        "MEMORAM_AUTH_CACHE_DIR": str(tmp_path / "cache"),
    }
    command = [sys.executable, "-m", "memoram_auth", "token"]
    certfile, keyfile = tls_client_cert
    if how == "flags":
        command += ["--ca-bundle", ca_bundle, "--cert", certfile, "--cert-key", keyfile]
        command += ["--proxy", connect_proxy.url]
    else:
        env.update(
            MEMORAM_AUTH_CA_BUNDLE=ca_bundle,
            MEMORAM_AUTH_CLIENT_CERT=certfile,
            MEMORAM_AUTH_CLIENT_KEY=keyfile,
            MEMORAM_AUTH_PROXY=connect_proxy.url,
        )
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert mtls_emulator.state.check(result.stdout.strip())
    assert connect_proxy.tunnels == [tunnel_to(mtls_emulator)]


def test_cli_untrusted_certificate_is_one_line_naming_the_options(
    tls_emulator: Emulator, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")},
        "MEMORAM_API_KEY": tls_emulator.api_key,
        "MEMORAM_BASE_URL": tls_emulator.base_url,
        "MEMORAM_AUTH_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "memoram_auth", "token"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 4
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--ca-bundle" in result.stderr
    assert "MEMORAM_AUTH_CA_BUNDLE" in result.stderr


@pytest.fixture(autouse=True)
def _no_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    # Installed key plugins (keyring, ...) play no part in how the token request travels.
    monkeypatch.setenv("MEMORAM_AUTH_DISABLE_PLUGINS", "1")


@pytest.mark.parametrize(
    ("url", "no_proxy"),
    [
        ("https://api.example.com/x", "example.com"),
        ("https://api.example.com/x", ".example.com"),
        ("https://api.example.com:8443/x", "api.example.com:8443"),
        ("https://api.example.com:8443/x", "api.example.com:443"),
        ("https://10.1.2.3/x", "10.0.0.0/8"),
        ("https://10.1.2.3:8443/x", "10.1.2.3:8443"),
        ("https://[::1]/x", "::1"),
        ("https://host/x", "*"),
        ("https://host/x", ""),
    ],
)
def test_no_proxy_matching_is_requests_own(
    url: str, no_proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.parse import urlsplit

    from memoram_auth.transport import no_proxy_matches

    monkeypatch.setenv("NO_PROXY", no_proxy)
    parts = urlsplit(url)
    expected = requests.utils.should_bypass_proxies(url, no_proxy=None)
    assert no_proxy_matches(parts.hostname or "", parts.port, no_proxy) is bool(expected)


def test_no_proxy_matches_whole_labels() -> None:
    from memoram_auth.transport import no_proxy_matches

    # As current requests does; releases before it matched any suffix ("badexample.com").
    assert not no_proxy_matches("badexample.com", None, "example.com")
    assert no_proxy_matches("api.example.com", None, "example.com")


# -- 8. what the tries found: redirects, .netrc, httpx event hooks ------------------------------


def test_requests_after_a_same_origin_redirect_the_replay_still_happens(tmp_path: Path) -> None:
    with Emulator() as emu:
        auth = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)
        requests.get(f"{emu.base_url}/tags", auth=auth, timeout=10)
        emu.redirect("/api/v1/old", f"{emu.base_url}/tags")
        emu.revoke_all()
        emu.reset_counters()
        response = requests.get(f"{emu.base_url}/old", auth=auth, timeout=10)
        assert response.status_code == 200
        assert emu.counters.token_requests == 1
        # requests rebuilds history from the redirect chain: the 401 is not in it (README).
        assert [hop.status_code for hop in response.history] == [302]


def test_requests_netrc_credentials_on_a_redirect_do_not_replace_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with Emulator() as emu:
        auth = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path / "cache")
        emu.redirect("/api/v1/old", f"{emu.base_url}/tags")
        with requests.Session() as session:  # trust_env on: requests reads .netrc on redirects
            response = session.get(f"{emu.base_url}/old", auth=auth, timeout=10)
        assert response.status_code == 200
        assert response.request.headers["Authorization"].startswith("Bearer ")
        assert emu.counters.token_requests == 1


def test_httpx_an_event_hook_that_raises_for_status_the_way_the_readme_shows(
    tmp_path: Path,
) -> None:
    def raise_for_status(response: httpx.Response) -> None:
        # The README's hook: MemoramAuth replays a 401 to the API; the final answer comes next.
        if response.status_code == 401 and response.request.headers.get(
            "Authorization", ""
        ).startswith("Bearer "):
            return
        response.raise_for_status()

    with Emulator() as emu:
        auth = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)
        hooks = {"response": [raise_for_status]}
        with httpx.Client(auth=auth, event_hooks=hooks) as client:
            client.get(f"{emu.base_url}/tags")
            emu.revoke_all()
            assert client.get(f"{emu.base_url}/tags").status_code == 200
            # The plain raise_for_status hook raises on the 401 before the replay can happen.
            plain = {"response": [lambda response: response.raise_for_status()]}
            emu.revoke_all()
        with (
            httpx.Client(auth=auth, event_hooks=plain) as client,
            pytest.raises(httpx.HTTPStatusError),
        ):
            client.get(f"{emu.base_url}/tags")
