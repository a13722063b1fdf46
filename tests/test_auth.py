"""MemoramAuth against the emulator over loopback: one compliance suite for every adapter."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import requests.auth

from memoram_auth import (
    ConfigurationError,
    KeyRejectedError,
    MemoramAuth,
    MemoramAuthError,
)
from memoram_auth.emulator import Emulator, RecordedRequest


class Result:
    def __init__(self, status: int, history: list[int]) -> None:
        self.status = status
        self.history = history


class Client:
    """One way of sending a request with MemoramAuth; the suite below runs against each."""

    name = ""
    #: Whether the 401 before a replay shows in the response's history. aiohttp's middleware
    #: replays below the session, whose history lists redirects only.
    replay_in_history = True

    def __init__(self, auth: MemoramAuth) -> None:
        self.auth = auth

    def send(self, method: str, url: str, body: str = "none") -> Result:
        raise NotImplementedError

    def close(self) -> None:
        pass


def body_of(kind: str) -> Any:
    """Request arguments for a body kind, the same for every library where they can be."""
    if kind == "json":
        return {"json": {"user_id": "u1", "content": "hello"}}
    if kind == "form":
        return {"data": {"user_id": "u1", "content": "hello"}}
    if kind == "stream":

        def chunks() -> Iterator[bytes]:
            yield b'{"user_id": "u1", '
            yield b'"content": "streamed"}'

        return {"stream": chunks()}
    return {}


class RequestsClient(Client):
    name = "requests"

    def __init__(self, auth: MemoramAuth) -> None:
        super().__init__(auth)
        self.session = requests.Session()
        self.session.auth = auth

    def send(self, method: str, url: str, body: str = "none") -> Result:
        kwargs = body_of(body)
        if body == "file":
            kwargs = {"data": io.BytesIO(b'{"user_id": "u1", "content": "from a file"}')}
        if "stream" in kwargs:
            kwargs = {"data": kwargs["stream"]}
        response = self.session.request(method, url, timeout=10, **kwargs)
        return Result(response.status_code, [r.status_code for r in response.history])

    def close(self) -> None:
        self.session.close()


class HttpxClient(Client):
    name = "httpx"

    def __init__(self, auth: MemoramAuth) -> None:
        super().__init__(auth)
        self.client = httpx.Client(auth=auth, timeout=10)

    def send(self, method: str, url: str, body: str = "none") -> Result:
        kwargs = body_of(body)
        if body == "file":
            kwargs = {"files": {"upload": ("note.txt", io.BytesIO(b"from a file"))}}
        if "stream" in kwargs:
            kwargs = {"content": kwargs["stream"]}
        response = self.client.request(method, url, **kwargs)
        return Result(response.status_code, [r.status_code for r in response.history])

    def close(self) -> None:
        self.client.close()


class AsyncHttpxClient(Client):
    name = "httpx-async"

    def __init__(self, auth: MemoramAuth) -> None:
        super().__init__(auth)
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(auth=auth, timeout=10)

    def send(self, method: str, url: str, body: str = "none") -> Result:
        kwargs = body_of(body)
        if body == "file":
            kwargs = {"files": {"upload": ("note.txt", io.BytesIO(b"from a file"))}}
        if "stream" in kwargs:
            chunks = kwargs.pop("stream")

            async def agen() -> Any:
                for chunk in chunks:
                    yield chunk

            kwargs = {"content": agen()}
        response = self.loop.run_until_complete(self.client.request(method, url, **kwargs))
        return Result(response.status_code, [r.status_code for r in response.history])

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


class AiohttpClient(Client):
    """MemoramMiddleware (the same key, base URL and cache, so the same provider)."""

    name = "aiohttp"
    replay_in_history = False

    def __init__(self, auth: MemoramAuth) -> None:
        super().__init__(auth)
        import aiohttp

        from memoram_auth import MemoramMiddleware

        self.aiohttp = aiohttp
        middleware = MemoramMiddleware(
            auth.provider._key, base_url=auth.base_url, cache_dir=auth.provider.cache.directory
        )
        self.loop = asyncio.new_event_loop()

        async def make() -> aiohttp.ClientSession:
            timeout = aiohttp.ClientTimeout(total=10)
            return aiohttp.ClientSession(middlewares=(middleware,), timeout=timeout)

        self.session = self.loop.run_until_complete(make())

    def send(self, method: str, url: str, body: str = "none") -> Result:
        kwargs = body_of(body)
        if body == "file":
            form = self.aiohttp.FormData()
            form.add_field("upload", b"from a file", filename="note.txt")
            kwargs = {"data": form}
        if "stream" in kwargs:
            chunks = kwargs.pop("stream")

            async def agen() -> Any:
                for chunk in chunks:
                    yield chunk

            kwargs = {"data": agen()}

        async def go() -> Result:
            async with self.session.request(method, url, **kwargs) as response:
                await response.read()
                return Result(response.status, [r.status for r in response.history])

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())
        self.loop.close()


CLIENTS: list[type[Client]] = [RequestsClient, HttpxClient, AsyncHttpxClient]
if importlib.util.find_spec("aiohttp") is not None:  # the aiohttp extra
    CLIENTS.append(AiohttpClient)


def replays(client: Client) -> list[int]:
    """The history a response shows after one replay."""
    return [401] if client.replay_in_history else []


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def auth(emu: Emulator, tmp_path: Path) -> MemoramAuth:
    return MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)


@pytest.fixture(params=CLIENTS, ids=[c.name for c in CLIENTS])
def client(request: pytest.FixtureRequest, auth: MemoramAuth) -> Iterator[Client]:
    made: Client = request.param(auth)
    yield made
    made.close()


def api_calls(emu: Emulator) -> list[RecordedRequest]:
    return [r for r in emu.requests if not r.path.endswith("/auth/token")]


def authorization(request: RecordedRequest) -> str | None:
    return next((v for k, v in request.headers.items() if k.lower() == "authorization"), None)


class TestCompliance:
    """What every adapter promises, run against requests, httpx, httpx async and aiohttp."""

    def test_get_carries_a_fresh_token(self, emu: Emulator, client: Client) -> None:
        assert client.send("GET", f"{emu.base_url}/tags").status == 200
        assert client.send("GET", f"{emu.base_url}/tags/tag_1").status == 200
        assert emu.counters.token_requests == 1
        header = authorization(api_calls(emu)[0])
        assert header is not None
        assert header.startswith("Bearer ey")

    @pytest.mark.parametrize("body", ["json", "form", "file"])
    def test_revoked_token_is_replaced_and_the_request_replayed_once(
        self, emu: Emulator, client: Client, body: str
    ) -> None:
        client.send("GET", f"{emu.base_url}/tags")
        emu.revoke_all()
        emu.reset_counters()
        result = client.send("POST", f"{emu.base_url}/memory-blobs", body)
        assert result.history == replays(client)
        assert result.status != 401  # 201 for JSON; 400 for bodies the emulator cannot store
        assert emu.counters.token_requests == 1
        first, replay = api_calls(emu)
        assert replay.body == first.body
        assert replay.body, "the body arrived"
        assert authorization(replay) != authorization(first)

    def test_json_body_arrives_intact_after_replay(self, emu: Emulator, client: Client) -> None:
        client.send("GET", f"{emu.base_url}/tags")
        emu.revoke_all()
        assert client.send("POST", f"{emu.base_url}/memory-blobs", "json").status == 201
        stored = list(emu.requests)[-1]
        assert json.loads(stored.body) == {"user_id": "u1", "content": "hello"}

    def test_streamed_body_is_not_replayed(self, emu: Emulator, client: Client) -> None:
        client.send("GET", f"{emu.base_url}/tags")
        emu.revoke_all()
        emu.reset_counters()
        result = client.send("POST", f"{emu.base_url}/memory-blobs", "stream")
        assert (result.status, result.history) == (401, [])
        assert len(api_calls(emu)) == 1
        # The rejected token was dropped all the same: the next request needs no replay.
        assert client.send("GET", f"{emu.base_url}/tags").status == 200
        assert emu.counters.token_requests == 1
        assert emu.counters.unauthorized == 1

    def test_a_401_that_a_new_token_does_not_cure_comes_back(
        self, emu: Emulator, client: Client
    ) -> None:
        emu.reject_all_tokens = True
        result = client.send("GET", f"{emu.base_url}/tags")
        assert (result.status, result.history) == (401, replays(client))
        assert len(api_calls(emu)) == 2
        assert emu.counters.token_requests == 2

    def test_other_origins_never_see_the_token(self, emu: Emulator, client: Client) -> None:
        with Emulator(host="127.0.0.2") as other, Emulator(port=0) as third:
            client.send("GET", f"{other.base_url}/tags")
            client.send("GET", f"{third.base_url}/tags")  # same host, another port
            assert [authorization(r) for r in other.requests + third.requests] == [None, None]
        assert emu.counters.token_requests == 0

    def test_redirects_to_another_origin_drop_the_token(
        self, emu: Emulator, client: Client
    ) -> None:
        with Emulator(host="127.0.0.2") as other:
            emu.redirect("/api/v1/moved", f"{other.base_url}/tags")
            if isinstance(client, (HttpxClient, AsyncHttpxClient)):
                client.client.follow_redirects = True
            client.send("GET", f"{emu.base_url}/moved")
            arrived = other.requests
        assert len(arrived) == 1
        assert authorization(arrived[0]) is None
        assert authorization(api_calls(emu)[0]) is not None

    def test_the_token_endpoint_gets_no_authorization(self, emu: Emulator, client: Client) -> None:
        client.send("GET", f"{emu.base_url}/tags")
        client.send("POST", f"{emu.base_url}/auth/token", "json")
        token_calls = [r for r in emu.requests if r.path.endswith("/auth/token")]
        assert len(token_calls) == 2
        assert [authorization(r) for r in token_calls] == [None, None]

    def test_exchange_errors_surface_as_memoram_errors(self, emu: Emulator, client: Client) -> None:
        emu.remove_key(emu.api_key)
        with pytest.raises(KeyRejectedError, match="from api_key= was rejected") as caught:
            client.send("GET", f"{emu.base_url}/tags")
        assert emu.api_key not in str(caught.value)
        assert api_calls(emu) == []

    def test_library_errors_stay_the_librarys(self, client: Client) -> None:
        with Emulator() as gone:
            url = f"{gone.base_url}/tags"
        # Another origin: no token needed, and the connection error is the library's own.
        errors: tuple[type[Exception], ...] = (requests.ConnectionError, httpx.ConnectError)
        if isinstance(client, AiohttpClient):
            errors = (client.aiohttp.ClientConnectionError,)
        with pytest.raises(errors) as caught:
            client.send("GET", url)
        assert not isinstance(caught.value, MemoramAuthError)


def test_one_object_is_both_kinds_of_auth(auth: MemoramAuth) -> None:
    assert isinstance(auth, requests.auth.AuthBase)
    assert isinstance(auth, httpx.Auth)


def test_plain_requests_get_works(emu: Emulator, auth: MemoramAuth) -> None:
    response = requests.get(f"{emu.base_url}/tags", auth=auth, timeout=10)
    assert response.status_code == 200
    assert response.json()["items"]


def test_threads_share_one_object_and_one_token_request(emu: Emulator, auth: MemoramAuth) -> None:
    barrier = threading.Barrier(32)
    statuses: list[int] = []

    def work() -> None:
        with requests.Session() as session:
            barrier.wait()
            statuses.append(session.get(f"{emu.base_url}/tags", auth=auth, timeout=10).status_code)

    threads = [threading.Thread(target=work) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 32
    assert emu.counters.token_requests == 1


def test_auth_objects_per_request_share_a_provider(emu: Emulator, tmp_path: Path) -> None:
    first = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)
    second = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)
    assert first.provider is second.provider


def test_repr_names_base_url_and_fingerprint_only(emu: Emulator, auth: MemoramAuth) -> None:
    text = repr(auth)
    assert emu.base_url in text
    assert auth.fingerprint in text
    assert emu.api_key not in text
    assert emu.api_key[4:] not in text


def test_key_and_base_url_from_the_environment(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMORAM_API_KEY", emu.api_key + "\n")  # a pasted newline is fine
    monkeypatch.setenv("MEMORAM_BASE_URL", emu.base_url)
    auth = MemoramAuth(cache_dir=tmp_path)
    assert auth.base_url == emu.base_url
    assert requests.get(f"{emu.base_url}/tags", auth=auth, timeout=10).status_code == 200


def test_default_base_url_is_production() -> None:
    assert MemoramAuth("mem_x", cache_dir=False).base_url == "https://api.memoram.app/api/v1"


def test_missing_key_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="MEMORAM_API_KEY"):
        MemoramAuth(base_url="https://api.memoram.app/api/v1")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api_key": "mem_a b"}, "whitespace or control"),
        ({"api_key": "   "}, "no Memoram API key"),
        ({"api_key": "mem_x", "base_url": "api.memoram.app"}, "not an absolute http"),
        ({"api_key": "mem_x", "base_url": "http://api.memoram.app/api/v1"}, "refusing plain http"),
    ],
    ids=["inner-space", "blank", "no-scheme", "plain-http-remote"],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        MemoramAuth(**kwargs)
    assert "mem_a" not in str(caught.value)


def test_unreachable_token_endpoint_is_a_memoram_error(tmp_path: Path) -> None:
    with Emulator() as gone:
        base_url, key = gone.base_url, gone.api_key
    from memoram_auth import RetryPolicy

    auth = MemoramAuth(key, base_url=base_url, cache_dir=tmp_path, policy=RetryPolicy(backoff=0.01))
    with pytest.raises(MemoramAuthError, match="unavailable"):
        requests.get(f"{base_url}/tags", auth=auth, timeout=5)
    # httpx sends the token request itself, through the user's client: a connection failure
    # is the client's own exception, as the user's request would raise it.
    with pytest.raises(httpx.ConnectError), httpx.Client(auth=auth) as client:
        client.get(f"{base_url}/tags")


def test_httpx_idna_base_url_matches_the_unicode_spelling(tmp_path: Path) -> None:
    auth = MemoramAuth("mem_idna", base_url="https://xn--fiqs8s.example/api", cache_dir=tmp_path)
    assert auth._targets(httpx.URL("https://\u4e2d\u56fd.example/api/x"))
    assert auth._targets(httpx.URL("https://XN--FIQS8S.example:443/api/x"))
    assert not auth._targets(httpx.URL("https://xn--fiqs8s.example:8443/api/x"))
