"""The token request at the seams with each HTTP library, against hostile endpoints on loopback:
no redirect is followed, no answer is read past its bound, and a loopback base URL never goes
through a proxy. The same check runs through every route a token request can take."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import requests.adapters

from memoram_auth import (
    EndpointUnavailableError,
    KeyRejectedError,
    MemoramAuth,
    MemoramAuthError,
    RetryPolicy,
)
from memoram_auth.emulator import Emulator
from memoram_auth.provider import TokenProvider, get_provider
from tests._hostile import FLOOD_BOUND, Flood, Recorder, Redirector
from tests._proxy import ConnectProxy

KEY = "mem_seams_test_key"
#: One attempt: each hostile answer is judged once.
ONCE = RetryPolicy(attempts=1, timeout=10.0, total_timeout=20.0)


def _stdlib(base_url: str, tmp_path: Path, **kwargs: Any) -> object:
    return TokenProvider(KEY, base_url, cache=None, policy=ONCE).get_token()


def _requests(base_url: str, tmp_path: Path, **kwargs: Any) -> object:
    auth = MemoramAuth(KEY, base_url=base_url, cache_dir=tmp_path, policy=ONCE, **kwargs)
    return requests.get(f"{base_url}/memories", auth=auth, timeout=10)


def _httpx(base_url: str, tmp_path: Path, **kwargs: Any) -> object:
    auth = MemoramAuth(KEY, base_url=base_url, cache_dir=tmp_path, policy=ONCE, **kwargs)
    with httpx.Client(follow_redirects=True, auth=auth) as client:
        return client.get(f"{base_url}/memories")


def _httpx_own(base_url: str, tmp_path: Path, **kwargs: Any) -> object:
    # Explicit network settings: the token request goes through the library's own client.
    return _httpx(base_url, tmp_path, trust_env=False, verify=True, **kwargs)


def _httpx_async(base_url: str, tmp_path: Path, **kwargs: Any) -> object:
    auth = MemoramAuth(KEY, base_url=base_url, cache_dir=tmp_path, policy=ONCE, **kwargs)

    async def main() -> object:
        async with httpx.AsyncClient(follow_redirects=True, auth=auth) as client:
            return await client.get(f"{base_url}/memories")

    return asyncio.run(main())


def _aiohttp(base_url: str, tmp_path: Path, **kwargs: Any) -> object:
    aiohttp = pytest.importorskip("aiohttp")
    from memoram_auth import MemoramMiddleware

    middleware = MemoramMiddleware(
        KEY, base_url=base_url, cache_dir=tmp_path, policy=ONCE, **kwargs
    )

    async def main() -> object:
        async with (
            aiohttp.ClientSession(middlewares=(middleware,)) as session,
            session.get(f"{base_url}/memories") as response,
        ):
            await response.read()  # a body left unread leaves its transport open
            return response.status

    return asyncio.run(main())


Fetch = Callable[..., object]
ROUTES: dict[str, Fetch] = {
    "stdlib": _stdlib,
    "requests": _requests,
    "httpx": _httpx,
    "httpx-own-client": _httpx_own,
    "httpx-async": _httpx_async,
    "aiohttp": _aiohttp,
}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("route", ROUTES)
def test_a_redirected_token_request_is_an_error_and_nothing_reaches_the_target(
    route: str, status: int, tmp_path: Path
) -> None:
    with Recorder() as attacker, Redirector(status, attacker.origin) as endpoint:
        with pytest.raises(MemoramAuthError) as caught:
            ROUTES[route](f"{endpoint.origin}/api/v1", tmp_path)
        assert endpoint.requests == 1
        # Nothing at all was sent to the redirect's target: no key, no request.
        assert attacker.received == []
    message = str(caught.value)
    assert f"answered {status}, a redirect to {attacker.origin}" in message
    assert Recorder.TOKEN not in message


@pytest.mark.parametrize("route", ROUTES)
def test_an_endless_token_answer_is_read_no_further_than_its_bound(
    route: str, tmp_path: Path
) -> None:
    with Flood() as flood, pytest.raises(MemoramAuthError, match=r"not JSON|answer"):
        ROUTES[route](f"{flood.origin}/api/v1", tmp_path)
    # The client stopped reading at 64 KiB; the kernel's socket buffers take a few MB more.
    assert 0 < flood.sent < FLOOD_BOUND


def test_a_redirect_a_mock_transport_follows_is_refused_too(tmp_path: Path) -> None:
    # A mock reports no httpcore trace, so the client does follow the redirect; the answer
    # from there is still never adopted as the token.
    base_url = "http://127.0.0.1:9/api/v1"
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.endswith("/auth/token"):
            return httpx.Response(307, headers={"Location": "http://attacker.test/steal"})
        return httpx.Response(200, json={"token": Recorder.TOKEN})

    auth = MemoramAuth(KEY, base_url=base_url, cache_dir=tmp_path, policy=ONCE)
    transport = httpx.MockTransport(handler)
    expected = re.escape("307, a redirect to http://attacker.test:80")
    with (
        httpx.Client(transport=transport, follow_redirects=True, auth=auth) as client,
        pytest.raises(MemoramAuthError, match=expected),
    ):
        client.get(f"{base_url}/memories")
    assert seen == [f"{base_url}/auth/token", "http://attacker.test/steal"]


def _token_posts(proxy: ConnectProxy) -> list[str]:
    return [url for method, url in proxy.requests if url.endswith("/auth/token")]


@pytest.mark.parametrize("setting", ["HTTP_PROXY", "proxy="])
@pytest.mark.parametrize("route", ["stdlib", "cli", "requests", "httpx-own-client", "aiohttp"])
def test_a_plain_http_loopback_token_request_never_goes_through_a_proxy(
    route: str,
    setting: str,
    connect_proxy: ConnectProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Emulator() as emu:
        explicit: dict[str, Any] = {}
        if setting == "HTTP_PROXY":
            monkeypatch.setenv("HTTP_PROXY", connect_proxy.url)
            monkeypatch.setenv("http_proxy", connect_proxy.url)
        else:
            explicit = {"proxy": connect_proxy.url}
        if route == "stdlib":
            get_provider(emu.api_key, emu.base_url, cache_dir=tmp_path, **explicit).get_token()
        elif route == "cli":
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")},
                "MEMORAM_BASE_URL": emu.base_url,
                "MEMORAM_API_KEY": emu.api_key,
                "MEMORAM_AUTH_CACHE_DIR": str(tmp_path),
            }
            if explicit:
                env["MEMORAM_AUTH_PROXY"] = connect_proxy.url
            done = subprocess.run(
                [sys.executable, "-m", "memoram_auth", "token"],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
        else:
            key = emu.api_key
            auth: Any
            if route == "aiohttp":
                pytest.importorskip("aiohttp")
                from memoram_auth import MemoramMiddleware

                auth = MemoramMiddleware(key, base_url=emu.base_url, cache_dir=tmp_path, **explicit)
            else:
                own = {"verify": True} if route == "httpx-own-client" else {}
                auth = MemoramAuth(
                    key, base_url=emu.base_url, cache_dir=tmp_path, **own, **explicit
                )
            fetch_header(route, auth, emu.base_url)
        assert emu.counters.token_requests == 1
    assert _token_posts(connect_proxy) == []


def fetch_header(route: str, auth: Any, base_url: str) -> None:
    """Get a token through *route*'s token request (the user's own request is not sent)."""
    if route == "requests":
        auth(requests.Request("GET", f"{base_url}/tags").prepare())
    elif route == "httpx-own-client":
        flow = auth.sync_auth_flow(httpx.Request("GET", f"{base_url}/tags"))
        assert next(flow).headers["Authorization"].startswith("Bearer ")
    else:
        aiohttp = pytest.importorskip("aiohttp")

        async def main() -> None:
            async with (
                aiohttp.ClientSession(middlewares=(auth,), trust_env=True) as session,
                session.get(f"{base_url}/tags") as response,
            ):
                await response.read()  # a body left unread leaves its transport open
                assert response.status == 200

        asyncio.run(main())


def test_an_httpx_client_that_would_proxy_a_plain_http_token_request_is_refused(
    connect_proxy: ConnectProxy, tmp_path: Path
) -> None:
    # The user's own client decides its proxies; the token request refuses to follow it there.
    with Emulator() as emu:
        auth = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)
        with (
            httpx.Client(auth=auth, proxy=connect_proxy.url) as client,
            pytest.raises(MemoramAuthError, match="NO_PROXY"),
        ):
            client.get(f"{emu.base_url}/tags")
        assert emu.counters.token_requests == 0
    assert _token_posts(connect_proxy) == []


# aiohttp 3.14 deprecates a session's auth= (for headers=): sessions that use either must not
# send it to the token endpoint.
@pytest.mark.filterwarnings("ignore:.*deprecated.*:DeprecationWarning")
@pytest.mark.parametrize("source", ["auth=", "headers=", ".netrc"])
def test_aiohttp_session_credentials_never_reach_the_token_endpoint(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aiohttp = pytest.importorskip("aiohttp")
    from memoram_auth import MemoramMiddleware

    with Emulator() as emu:
        options: dict[str, Any] = {}
        if source == "auth=":
            options["auth"] = aiohttp.BasicAuth("user", "session-password")
        elif source == "headers=":
            options["headers"] = {"Authorization": "Basic dXNlcjpzZXNzaW9uLXBhc3N3b3Jk"}
        else:
            netrc = tmp_path / "netrc"
            netrc.write_text("machine 127.0.0.1 login user password netrc-password\n")
            netrc.chmod(0o600)
            monkeypatch.setenv("NETRC", str(netrc))
            options["trust_env"] = True
        middleware = MemoramMiddleware(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)

        async def main() -> None:
            async with (
                aiohttp.ClientSession(middlewares=(middleware,), **options) as session,
                session.get(f"{emu.base_url}/tags") as response,
            ):
                await response.read()  # a body left unread leaves its transport open
                assert response.status == 200

        asyncio.run(main())
        token_requests = [r for r in emu.requests if r.path.endswith("/auth/token")]
    assert len(token_requests) == 1
    assert "authorization" not in {name.lower() for name in token_requests[0].headers}


@pytest.mark.parametrize("library", ["requests", "aiohttp"])
@pytest.mark.parametrize("failure", ["rejected", "unreachable"])
def test_a_failed_token_request_is_also_the_librarys_own_error(
    library: str, failure: str, tmp_path: Path
) -> None:
    with Emulator() as emu:
        base_url = emu.base_url
        key = emu.api_key if failure == "unreachable" else "mem_not_a_key_it_knows"
        if failure == "unreachable":
            emu.stop()
        if library == "requests":
            base: type[Exception] = requests.RequestException
            auth = MemoramAuth(key, base_url=base_url, cache_dir=tmp_path, policy=ONCE)
            with pytest.raises(base) as caught:
                requests.get(f"{base_url}/tags", auth=auth, timeout=10)
        else:
            aiohttp = pytest.importorskip("aiohttp")
            from memoram_auth import MemoramMiddleware

            base = aiohttp.ClientError
            middleware = MemoramMiddleware(key, base_url=base_url, cache_dir=tmp_path, policy=ONCE)

            async def main() -> None:
                async with (
                    aiohttp.ClientSession(middlewares=(middleware,)) as session,
                    session.get(f"{base_url}/tags"),
                ):
                    pass

            with pytest.raises(base) as caught:
                asyncio.run(main())
    expected = KeyRejectedError if failure == "rejected" else EndpointUnavailableError
    assert isinstance(caught.value, expected)
    assert isinstance(caught.value, MemoramAuthError)


@pytest.mark.parametrize("flow", ["sync", "async"])
def test_the_httpx_clients_timeout_caps_the_token_requests(flow: str, tmp_path: Path) -> None:
    base_url = "https://api.memoram.example/api/v1"
    timeouts: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/token"):
            timeouts.append(request.extensions["timeout"])
            return httpx.Response(200, json={"token": "test.token"})
        return httpx.Response(200, json={})

    # The policy allows 10 s an attempt; the caller's client allows 2 s a read.
    auth = MemoramAuth(KEY, base_url=base_url, cache_dir=tmp_path, policy=ONCE)
    if flow == "sync":
        with httpx.Client(transport=httpx.MockTransport(handler), timeout=2, auth=auth) as client:
            client.get(f"{base_url}/tags")
    else:

        async def main() -> None:
            async with httpx.AsyncClient(
                transport=httpx.MockTransport(handler), timeout=2, auth=auth
            ) as client:
                await client.get(f"{base_url}/tags")

        asyncio.run(main())
    assert len(timeouts) == 1
    assert set(timeouts[0]) == {"connect", "read", "write", "pool"}
    assert all(value is not None and value <= 2 for value in timeouts[0].values())


class _Recording(requests.adapters.HTTPAdapter):
    """An adapter a user mounts (a source address, retries): records what it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.sent.append(f"{request.method} {request.url}")
        return super().send(request, *args, **kwargs)


def test_the_sessions_adapters_auth_and_hooks_with_session_given(tmp_path: Path) -> None:
    hooked: list[str] = []
    with Emulator() as emu:
        session = requests.Session()
        adapter = _Recording()
        session.mount("http://", adapter)
        session.hooks["response"].append(lambda r, **kwargs: hooked.append(r.request.method))
        # The one extra word: the token request goes through this session too.
        session.auth = MemoramAuth(
            emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, session=session
        )
        assert session.get(f"{emu.base_url}/tags", timeout=10).status_code == 200
        token_requests = [r for r in emu.requests if r.path.endswith("/auth/token")]
        base_url = emu.base_url
    assert adapter.sent == [f"POST {base_url}/auth/token", f"GET {base_url}/tags"]
    # Not the session's auth (MemoramAuth itself) nor its hooks, which are for the API.
    assert "authorization" not in {name.lower() for name in token_requests[0].headers}
    assert hooked == ["GET"]


def test_a_requests_mock_adapter_on_the_session_sees_the_token_request(tmp_path: Path) -> None:
    requests_mock = pytest.importorskip("requests_mock")
    api = "https://api.memoram.example/api/v1"
    session = requests.Session()
    mock = requests_mock.Adapter()
    session.mount("https://", mock)
    mock.register_uri("POST", f"{api}/auth/token", json={"token": "mocked.token"})
    mock.register_uri("GET", f"{api}/tags", json={"tags": []})
    auth = MemoramAuth(KEY, base_url=api, cache_dir=tmp_path, session=session)
    assert session.get(f"{api}/tags", auth=auth).json() == {"tags": []}
    assert mock.last_request.headers["Authorization"] == "Bearer mocked.token"


@pytest.mark.parametrize("setting", ["proxies", "trust_env=False"])
def test_the_sessions_network_settings_reach_the_token_request(
    setting: str,
    tls_emulator: Emulator,
    ca_bundle: str,
    connect_proxy: ConnectProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = tls_emulator
    session = requests.Session()
    session.verify = ca_bundle  # Session.verify: the token request trusts the private CA
    if setting == "proxies":
        session.proxies = {"https": connect_proxy.url}
    else:
        # The environment names a proxy that is not there; the session ignores it.
        monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
        session.trust_env = False
    auth = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, session=session)
    assert session.get(f"{emu.base_url}/tags", auth=auth, timeout=10).status_code == 200
    assert emu.counters.token_requests == 1
    if setting == "proxies":
        # The token request, first, opened the tunnel (the API call reused it).
        assert connect_proxy.tunnels == [f"127.0.0.1:{emu.port}"]
