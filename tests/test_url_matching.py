"""Which requests get the token: one table of URLs, decided alike by every adapter."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import requests

from memoram_auth import MemoramAuth
from memoram_auth._origin import ApiOrigin
from memoram_auth.emulator import Emulator

#: url (``{port}``: the emulator's, ``{other}``: another one) -> does the request get the token?
CASES = {
    "http://127.0.0.1:{port}/api/v1/tags": True,
    "http://127.0.0.1:{port}/api/v1/tags?user_id=u1#frag": True,
    "http://127.0.0.1:{port}/other/path?q=1": True,  # the whole origin, not only the base path
    "http://127.0.0.1:{port}/api/v1/auth/tokens": True,
    "http://127.0.0.1:{port}/api/v1/a%20b": True,
    "http://127.0.0.1:{port}/api/v1/auth/token": False,  # the token endpoint itself
    "http://127.0.0.1:{port}/api/v1/auth/token/": False,
    "http://127.0.0.1:{port}/api/v1/auth/token?x=1": False,
    "http://127.0.0.1:{port}/api/v1/auth%2Ftoken": False,
    "http://127.0.0.1:{port}/%61pi/v1/auth/token": False,
    "http://LOCALHOST:{port}/x": False,  # another host name is another origin
    "http://127.0.0.1:{port}.evil.example/x": False,
    "https://127.0.0.1:{port}/tags": False,
    "http://127.0.0.1:{other}/tags": False,
    "http://127.0.0.1/tags": False,
    "http://127.0.0.2:{port}/tags": False,
}


# A URL the library refuses to build never leaves, so it gets no token either.


def via_requests(auth: MemoramAuth, url: str) -> bool:
    try:
        prepared = requests.Request("GET", url).prepare()
    except requests.exceptions.InvalidURL:
        return False
    return "Authorization" in auth(prepared).headers


def via_httpx(auth: MemoramAuth, url: str) -> bool:
    try:
        request = httpx.Request("GET", url)
    except httpx.InvalidURL:
        return False
    return "Authorization" in next(auth.sync_auth_flow(request)).headers


def via_httpx_async(auth: MemoramAuth, url: str) -> bool:
    try:
        request = httpx.Request("GET", url)
    except httpx.InvalidURL:
        return False

    async def first() -> httpx.Request:
        return await auth.async_auth_flow(request).__anext__()

    return "Authorization" in asyncio.run(first()).headers


class _Sent(Exception):
    """Raised by the last middleware in place of sending: what the request would carry."""

    def __init__(self, headers: object) -> None:
        super().__init__("not sent")
        self.headers = headers


def via_aiohttp(auth: MemoramAuth, url: str) -> bool:
    """A real ClientSession whose last middleware reports the headers instead of sending."""
    aiohttp = pytest.importorskip("aiohttp")
    from memoram_auth import MemoramMiddleware

    middleware = MemoramMiddleware(
        auth.settings.api_key, base_url=auth.base_url, cache_dir=auth.provider.cache.directory
    )

    async def report(req: aiohttp.ClientRequest, handler: object) -> aiohttp.ClientResponse:
        raise _Sent(req.headers)

    async def first() -> bool:
        async with aiohttp.ClientSession(middlewares=(middleware, report)) as session:
            try:
                await session.get(url)
            except _Sent as sent:
                return "Authorization" in sent.headers  # type: ignore[operator]
            except (aiohttp.InvalidURL, ValueError):
                return False
        raise AssertionError("the request was sent")

    return asyncio.run(first())


def via_httpie(auth: MemoramAuth, url: str) -> bool:
    from memoram_auth.httpie_plugin import HttpieMemoramAuth

    httpie_auth = HttpieMemoramAuth(
        auth.settings.api_key, base_url=auth.base_url, cache_dir=auth.provider.cache.directory
    )
    return via_requests(httpie_auth, url)  # type: ignore[arg-type]


def via_the_rule(auth: MemoramAuth, url: str) -> bool:
    """The rule's owner itself, which every adapter asks."""
    return ApiOrigin(auth.base_url).targets(url)


ADAPTERS: dict[str, Callable[[MemoramAuth, str], bool]] = {
    "rule": via_the_rule,
    "requests": via_requests,
    "httpx": via_httpx,
    "httpx-async": via_httpx_async,
    "httpie": via_httpie,
    "aiohttp": via_aiohttp,
}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_every_adapter_decides_every_url_alike(adapter: str, emu: Emulator, tmp_path: Path) -> None:
    auth = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)
    auth.provider.get_token()  # warm: the flows' first step is then the request itself
    expected = {
        case.format(port=emu.port, other=emu.port + 1): gets for case, gets in CASES.items()
    }
    decided = {url: ADAPTERS[adapter](auth, url) for url in expected}
    assert decided == expected
    # The string rule that the adapters build on decides the same.
    assert {url: auth.targets(url) for url in expected} == expected


def test_an_idna_base_url_matches_the_unicode_spelling(tmp_path: Path) -> None:
    auth = MemoramAuth("mem_idna", base_url="https://xn--fiqs8s.example/api", cache_dir=tmp_path)
    auth.provider.authorization = lambda *_: "Bearer t"  # type: ignore[method-assign]
    auth.provider.fresh_authorization = lambda: "Bearer t"  # type: ignore[method-assign]
    assert via_httpx(auth, "https://\u4e2d\u56fd.example/api/x")
    assert via_httpx(auth, "https://XN--FIQS8S.example:443/api/x")
    assert not via_httpx(auth, "https://xn--fiqs8s.example:8443/api/x")
    assert via_requests(auth, "https://\u4e2d\u56fd.example/api/x")
    if importlib.util.find_spec("aiohttp") is not None:
        assert via_aiohttp(auth, "https://\u4e2d\u56fd.example/api/x")
        assert via_aiohttp(auth, "https://XN--FIQS8S.example:443/api/x")
        assert not via_aiohttp(auth, "https://xn--fiqs8s.example:8443/api/x")
