"""MemoramMiddleware in a real aiohttp.ClientSession against the emulator over loopback.

aioresponses would bypass the middlewares, so every test here sends real requests. The
behaviour every adapter shares is in test_auth.py's TestCompliance (its aiohttp client) and
test_url_matching.py; this module covers what is aiohttp's own: per-hop redirects, the token
request through the same session, single flight on one loop, replayable payloads, TLS and
proxies of the token request.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

aiohttp = pytest.importorskip("aiohttp")

from memoram_auth import (  # noqa: E402 - after the importorskip
    EndpointUnavailableError,
    KeyRejectedError,
    MemoramAuth,
    MemoramAuthError,
    MemoramMiddleware,
    RetryPolicy,
)
from memoram_auth.emulator import Emulator, RecordedRequest  # noqa: E402
from tests._attempts import Attempts  # noqa: E402
from tests._proxy import ConnectProxy  # noqa: E402
from tests._sockets import tls_session  # noqa: E402
from tests.conftest import FAST  # noqa: E402

#: If a failure were retried, its first backoff alone would take >= 2.5 s.
SLOW_RETRY = RetryPolicy(backoff=5.0, max_backoff=5.0)

T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]], loop: str = "asyncio") -> T:
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(main())  # type: ignore[no-any-return]
    return asyncio.run(main())  # type: ignore[arg-type]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def middleware(emu: Emulator, tmp_path: Path) -> MemoramMiddleware:
    return MemoramMiddleware(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)


def api_calls(emu: Emulator) -> list[RecordedRequest]:
    return [r for r in emu.requests if not r.path.endswith("/auth/token")]


def authorization(request: RecordedRequest) -> str | None:
    return next((v for k, v in request.headers.items() if k.lower() == "authorization"), None)


async def status_of(session: Any, method: str, url: str, **kwargs: Any) -> int:
    async with session.request(method, url, **kwargs) as response:
        await response.read()
        return int(response.status)


def ca_context(ca_bundle: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_bundle)


# -- which requests get the token ----------------------------------------------------------------


def test_api_requests_carry_a_token_and_share_it(
    emu: Emulator, middleware: MemoramMiddleware
) -> None:
    async def main() -> list[int]:
        async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
            return [
                await status_of(session, "GET", f"{emu.base_url}/tags"),
                await status_of(session, "GET", f"{emu.base_url}/tags/tag_1"),
            ]

    assert run(main) == [200, 200]
    assert emu.counters.token_requests == 1
    header = authorization(api_calls(emu)[0])
    assert header is not None
    assert header.startswith("Bearer ey")


def test_other_origins_and_the_token_endpoint_get_no_token(
    emu: Emulator, middleware: MemoramMiddleware
) -> None:
    with Emulator(host="127.0.0.2") as other, Emulator(port=0) as third:

        async def main() -> None:
            async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
                await status_of(session, "GET", f"{other.base_url}/tags")
                await status_of(session, "GET", f"{third.base_url}/tags")  # another port
                await status_of(session, "POST", f"{emu.base_url}/auth/token", json={})

        run(main)
        assert [authorization(r) for r in other.requests + third.requests] == [None, None]
    # The user's own call to the token endpoint went out untouched, and needed no token.
    assert emu.counters.token_requests == 1
    assert [authorization(r) for r in emu.requests] == [None]


def test_remembered_urls_keep_the_origin_rule(emu: Emulator, middleware: MemoramMiddleware) -> None:
    # The middleware remembers URL objects that need the token (yarl hands out the same object
    # for the same string): the same and interleaved URLs, URLs rebuilt with params= every
    # time (more than it remembers) and another origin between them must all still be judged
    # right, and the memory stays bounded.
    with Emulator(host="127.0.0.2") as other:

        async def main() -> None:
            async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
                for i in range(300):
                    await status_of(session, "GET", f"{emu.base_url}/tags")
                    await status_of(session, "GET", f"{other.base_url}/tags")
                    await status_of(session, "GET", f"{emu.base_url}/notes", params={"i": i})
                    await status_of(session, "GET", f"{other.base_url}/notes", params={"i": i})

        run(main)
        assert len(other.requests) == 600
        assert {authorization(r) for r in other.requests} == {None}
    calls = api_calls(emu)
    assert len(calls) == 600
    assert {authorization(r) for r in calls} == {f"Bearer {middleware.provider.get_token().value}"}
    assert emu.counters.token_requests == 1
    assert len(middleware._targets_seen) <= 256  # bounded, though every params= URL is new


def test_each_redirect_hop_is_judged_by_its_own_origin(
    emu: Emulator, middleware: MemoramMiddleware
) -> None:
    with Emulator(host="127.0.0.2") as other:
        emu.redirect("/api/v1/away", f"{other.base_url}/tags")
        emu.redirect("/api/v1/here", f"{emu.base_url}/tags")

        async def main() -> list[int]:
            async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
                return [
                    await status_of(session, "GET", f"{emu.base_url}/away"),
                    await status_of(session, "GET", f"{emu.base_url}/here"),
                ]

        assert run(main) == [401, 200]  # the other emulator wants a token of its own
        arrived = other.requests
    assert len(arrived) == 1
    assert authorization(arrived[0]) is None  # a cross-origin hop carries no token
    away, here, tags = api_calls(emu)
    assert (away.path, here.path, tags.path) == ("/api/v1/away", "/api/v1/here", "/api/v1/tags")
    # The same-origin hop gets the token again: the middleware runs for every hop.
    assert authorization(away) == authorization(here) == authorization(tags) is not None


def test_the_token_request_skips_the_sessions_middlewares(
    emu: Emulator, middleware: MemoramMiddleware
) -> None:
    seen: list[str] = []

    async def recorder(req: Any, handler: Any) -> Any:
        seen.append(req.url.path)
        return await handler(req)

    async def main() -> int:
        # The recorder both before and after ours: neither sees the token request.
        middlewares = (recorder, middleware, recorder)
        async with aiohttp.ClientSession(middlewares=middlewares) as session:
            return await status_of(session, "GET", f"{emu.base_url}/tags")

    assert run(main) == 200
    assert seen == ["/api/v1/tags", "/api/v1/tags"]
    assert emu.counters.token_requests == 1


def test_raise_for_status_sessions_still_get_our_errors(emu: Emulator, tmp_path: Path) -> None:
    middleware = MemoramMiddleware("mem_unknown_key", base_url=emu.base_url, cache_dir=tmp_path)

    async def main() -> None:
        async with aiohttp.ClientSession(
            middlewares=(middleware,), raise_for_status=True
        ) as session:
            await status_of(session, "GET", f"{emu.base_url}/tags")

    with pytest.raises(KeyRejectedError, match="from api_key= was rejected"):
        run(main)
    assert api_calls(emu) == []


# -- one token request, the loop never blocked ----------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_concurrent_cold_requests_share_one_token_request_and_the_loop_runs(
    loop: str, tmp_path: Path
) -> None:
    with Emulator(token_delay=0.3) as emu:
        middleware = MemoramMiddleware(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)

        async def main() -> tuple[list[int], int]:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            tick_task = asyncio.ensure_future(ticker())
            try:
                async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
                    statuses = await asyncio.gather(
                        *(status_of(session, "GET", f"{emu.base_url}/tags") for _ in range(30))
                    )
            finally:
                tick_task.cancel()
            return list(statuses), ticks

        statuses, ticks = run(main, loop)
        assert statuses == [200] * 30
        assert emu.counters.token_requests == 1
        # 0.3 s of token delay at one tick per 10 ms: a blocked loop would tick a few times.
        assert ticks >= 15


# -- a 401 to our token: one replay ---------------------------------------------------------------


def _form() -> Any:
    form = aiohttp.FormData()
    form.add_field("user_id", "u1")
    form.add_field("upload", b"from a file", filename="note.txt")
    return form


BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "bytes": lambda: {"data": b'{"user_id": "u1", "content": "bytes"}'},
    "json": lambda: {"json": {"user_id": "u1", "content": "hello"}},
    "form-fields": lambda: {"data": {"user_id": "u1", "content": "hello"}},
    "FormData": lambda: {"data": _form()},
    "no-body": lambda: {},
}


@pytest.mark.parametrize("body", list(BODIES))
def test_a_revoked_token_is_replaced_and_the_request_replayed_once(
    emu: Emulator, middleware: MemoramMiddleware, body: str
) -> None:
    async def main() -> int:
        async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
            await status_of(session, "GET", f"{emu.base_url}/tags")
            emu.revoke_all()
            emu.reset_counters()
            method = "GET" if body == "no-body" else "POST"
            url = f"{emu.base_url}/{'tags' if body == 'no-body' else 'memory-blobs'}"
            return await status_of(session, method, url, **BODIES[body]())

    status = run(main)
    assert status not in (401, 500)  # 201 for JSON; 400 for bodies the emulator cannot store
    assert emu.counters.token_requests == 1
    first, replay = api_calls(emu)
    assert replay.body == first.body
    assert bool(replay.body) == (body != "no-body"), "the body arrived whole"
    assert authorization(first) != authorization(replay)
    assert emu.state.check((authorization(replay) or "").removeprefix("Bearer "))


def test_a_json_body_is_stored_intact_after_the_replay(
    emu: Emulator, middleware: MemoramMiddleware
) -> None:
    async def main() -> Any:
        async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
            await status_of(session, "GET", f"{emu.base_url}/tags")
            emu.revoke_all()
            async with session.post(
                f"{emu.base_url}/memory-blobs", json={"user_id": "u1", "content": "hello"}
            ) as response:
                assert response.status == 201
                return await response.json()

    stored = run(main)
    assert stored["content"] == "hello"
    assert json.loads(list(emu.requests)[-1].body) == {"user_id": "u1", "content": "hello"}


def test_a_streamed_body_gets_its_401_back(emu: Emulator, middleware: MemoramMiddleware) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"user_id": "u1", '
        yield b'"content": "streamed"}'

    async def main() -> tuple[int, int]:
        async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
            await status_of(session, "GET", f"{emu.base_url}/tags")
            emu.revoke_all()
            emu.reset_counters()
            async with session.post(f"{emu.base_url}/memory-blobs", data=chunks()) as response:
                rejected = response.status
                assert (await response.json())["error"]  # the 401 whole, to read
            return rejected, await status_of(session, "GET", f"{emu.base_url}/tags")

    assert run(main) == (401, 200)
    # The rejected token was dropped all the same: the next request needed no replay.
    assert [r.path for r in api_calls(emu)] == ["/api/v1/memory-blobs", "/api/v1/tags"]
    assert emu.counters.token_requests == 1
    assert emu.counters.unauthorized == 1


def test_a_401_that_a_new_token_does_not_cure_comes_back(
    emu: Emulator, middleware: MemoramMiddleware
) -> None:
    emu.reject_all_tokens = True

    async def main() -> int:
        async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
            return await status_of(session, "GET", f"{emu.base_url}/tags")

    assert run(main) == 401
    assert len(api_calls(emu)) == 2
    assert emu.counters.token_requests == 2


# -- TLS and proxies of the token request ---------------------------------------------------------


def test_the_sessions_connector_trusts_a_private_ca_for_the_token_request(
    tls_emulator: Emulator, ca_bundle: str, tmp_path: Path
) -> None:
    emu = tls_emulator
    middleware = MemoramMiddleware(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)

    async def main() -> int:
        async with tls_session(middleware, ssl=ca_context(ca_bundle)) as s:
            return await status_of(s, "GET", f"{emu.base_url}/tags")

    assert run(main) == 200
    assert emu.counters.token_requests == 1


@pytest.mark.parametrize("form", ["path", "context"])
def test_explicit_verify_trusts_a_private_ca(
    tls_emulator: Emulator, ca_bundle: str, tmp_path: Path, form: str
) -> None:
    emu = tls_emulator
    verify: str | ssl.SSLContext = ca_bundle if form == "path" else ca_context(ca_bundle)
    middleware = MemoramMiddleware(
        emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, verify=verify
    )

    async def main() -> int:
        # The session trusts nothing private: only the user's own request brings the CA.
        async with tls_session(middleware) as session:
            return await status_of(
                session, "GET", f"{emu.base_url}/tags", ssl=ca_context(ca_bundle)
            )

    assert run(main) == 200
    assert emu.counters.token_requests == 1


def test_explicit_client_certificate_for_mutual_tls(
    tls_emulator: Emulator,
    tls_ca: Any,
    ca_bundle: str,
    tls_client_cert: tuple[str, str],
    tmp_path: Path,
) -> None:
    emu = tls_emulator
    assert emu.ssl_context is not None
    emu.ssl_context.verify_mode = ssl.CERT_REQUIRED
    tls_ca.configure_trust(emu.ssl_context)
    middleware = MemoramMiddleware(
        emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, verify=ca_bundle,
        cert=tls_client_cert,
    )  # fmt: skip
    context = ca_context(ca_bundle)
    context.load_cert_chain(*tls_client_cert)

    async def main() -> int:
        async with tls_session(middleware) as session:
            return await status_of(session, "GET", f"{emu.base_url}/tags", ssl=context)

    assert run(main) == 200
    assert emu.counters.token_requests == 1


def test_explicit_proxy_carries_the_token_request(
    tls_emulator: Emulator, ca_bundle: str, connect_proxy: ConnectProxy, tmp_path: Path
) -> None:
    emu = tls_emulator
    middleware = MemoramMiddleware(
        emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, verify=ca_bundle,
        proxy=connect_proxy.url,
    )  # fmt: skip

    async def main() -> int:
        async with tls_session(middleware) as session:
            return await status_of(
                session, "GET", f"{emu.base_url}/tags", ssl=ca_context(ca_bundle)
            )

    assert run(main) == 200
    # The user's own request went direct: only the token request used the proxy.
    assert connect_proxy.tunnels == [f"127.0.0.1:{emu.port}"]
    assert emu.counters.token_requests == 1


def test_the_sessions_environment_proxy_carries_the_token_request(
    tls_emulator: Emulator,
    ca_bundle: str,
    connect_proxy: ConnectProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = tls_emulator
    monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url)
    middleware = MemoramMiddleware(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)

    async def main() -> int:
        async with tls_session(middleware, ssl=ca_context(ca_bundle), trust_env=True) as session:
            return await status_of(session, "GET", f"{emu.base_url}/tags")

    assert run(main) == 200
    # Both through the session's proxy: the token request, then the user's request.
    assert connect_proxy.tunnels[0] == f"127.0.0.1:{emu.port}"
    assert emu.counters.token_requests == 1


def test_a_tls_session_leaves_no_socket_open_when_its_block_ends(
    tls_emulator: Emulator, ca_bundle: str, tmp_path: Path
) -> None:
    # What keeps an unclosed TLS socket from failing a later test (tests/_sockets.py).
    emu = tls_emulator
    middleware = MemoramMiddleware(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)
    sockets: list[Any] = []

    async def main() -> int:
        async with tls_session(middleware, ssl=ca_context(ca_bundle)) as session:
            status = await status_of(session, "GET", f"{emu.base_url}/tags")
            recorded = session.connector.sockets  # type: ignore[union-attr]  # tls_session's
            sockets.extend(recorded)
        return status

    assert run(main) == 200
    assert sockets  # the token request's connection and the API request's
    assert [sock.fileno() for sock in sockets] == [-1] * len(sockets)


def test_an_untrusted_certificate_is_not_retried_and_names_the_ca_options(
    tls_emulator: Emulator, tmp_path: Path, attempts: Attempts
) -> None:
    emu = tls_emulator
    middleware = MemoramMiddleware(
        emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, policy=SLOW_RETRY
    )

    async def main() -> int:
        async with tls_session(middleware) as session:
            return await status_of(session, "GET", f"{emu.base_url}/tags")

    with pytest.raises(MemoramAuthError) as caught:
        run(main)
    assert (attempts.begun, attempts.pauses) == (1, [])  # final: not retried
    message = str(caught.value)
    assert "did not verify" in message
    for option in ("verify=", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        assert option in message
    assert emu.counters.token_requests == 0


def test_https_to_a_plain_http_server_says_so(
    emu: Emulator, tmp_path: Path, attempts: Attempts
) -> None:
    base_url = emu.base_url.replace("http:", "https:")
    middleware = MemoramMiddleware(
        emu.api_key, base_url=base_url, cache_dir=tmp_path, policy=SLOW_RETRY
    )

    async def main() -> int:
        async with tls_session(middleware) as session:
            return await status_of(session, "GET", f"{base_url}/tags")

    with pytest.raises(MemoramAuthError, match="plain-http server"):
        run(main)
    assert (attempts.begun, attempts.pauses) == (1, [])  # final: not retried


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"proxy": "socks5://127.0.0.1:9"}, "socks5:// proxy"),
        ({"verify": "/nonexistent/ca.pem"}, "cannot set up TLS"),
    ],
    ids=["socks-proxy", "missing-ca-bundle"],
)
def test_settings_aiohttp_cannot_use_fail_at_once(
    emu: Emulator, tmp_path: Path, settings: dict[str, Any], match: str, attempts: Attempts
) -> None:
    middleware = MemoramMiddleware(
        emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, policy=SLOW_RETRY, **settings
    )

    async def main() -> int:
        async with tls_session(middleware) as session:
            return await status_of(session, "GET", f"{emu.base_url}/tags")

    with pytest.raises(EndpointUnavailableError, match=match):
        run(main)
    assert attempts.begun <= 1  # said before a request, or by the first: never retried
    assert attempts.pauses == []
    assert emu.counters.token_requests == 0


def test_an_unreachable_token_endpoint_is_a_memoram_error(tmp_path: Path) -> None:
    with Emulator() as gone:
        base_url, key = gone.base_url, gone.api_key
    middleware = MemoramMiddleware(key, base_url=base_url, cache_dir=tmp_path, policy=FAST)

    async def main() -> int:
        async with tls_session(middleware) as session:
            return await status_of(session, "GET", f"{base_url}/tags")

    with pytest.raises(EndpointUnavailableError, match="cannot connect"):
        run(main)


@pytest.mark.timeout(60)  # about a deadline: the bound ends a hang (each answer takes 2 s)
def test_a_token_request_timeout_is_a_memoram_error(
    emu: Emulator, tmp_path: Path, attempts: Attempts
) -> None:
    emu.delay_next(10, 2.0)
    policy = RetryPolicy(backoff=0.01, max_backoff=0.02, timeout=0.2, total_timeout=1.0)
    middleware = MemoramMiddleware(
        emu.api_key, base_url=emu.base_url, cache_dir=tmp_path, policy=policy
    )

    async def main() -> int:
        async with tls_session(middleware) as session:
            return await status_of(session, "GET", f"{emu.base_url}/tags")

    with pytest.raises(EndpointUnavailableError, match="no answer within") as caught:
        run(main)
    # Every attempt was cut at its 0.2 s: no answer of the emulator's 2 s was waited for.
    assert f"after {attempts.begun} attempt(s)" in str(caught.value)
    assert 1 <= attempts.begun <= policy.attempts


# -- settings and the package ---------------------------------------------------------------------


def test_shares_the_provider_with_memoram_auth(emu: Emulator, tmp_path: Path) -> None:
    auth = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)
    middleware = MemoramMiddleware(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)
    assert middleware.provider is auth.provider
    text = repr(middleware)
    assert text.startswith("MemoramMiddleware(")
    assert emu.api_key not in text


def test_key_and_base_url_from_the_environment(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMORAM_API_KEY", emu.api_key)
    monkeypatch.setenv("MEMORAM_BASE_URL", emu.base_url)
    monkeypatch.setenv("MEMORAM_AUTH_CACHE_DIR", str(tmp_path))
    middleware = MemoramMiddleware()
    assert middleware.base_url == emu.base_url

    async def main() -> int:
        async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
            return await status_of(session, "GET", f"{emu.base_url}/tags")

    assert run(main) == 200


def test_importing_the_package_does_not_import_aiohttp() -> None:
    code = (
        "import sys, memoram_auth; before = 'aiohttp' in sys.modules;"
        "from memoram_auth import MemoramMiddleware;"
        "print(before, 'aiohttp' in sys.modules, 'requests' in sys.modules)"
    )
    out = subprocess.check_output([sys.executable, "-c", code], text=True)
    assert out.split() == ["False", "True", "False"]
