"""``MemoramAuth``: one auth object for requests and httpx, sync and async.

This is the only module that imports requests and httpx; ``memoram_auth.MemoramAuth`` loads it
on first use, so ``import memoram_auth`` stays light. The library-specific halves live in
:mod:`memoram_auth._requests` and :mod:`memoram_auth._httpx`; this module decides which requests
get a token and owns the provider.
"""

from __future__ import annotations

import os

import httpx
import requests
import requests.auth

from . import _httpx, _requests
from .exchange import RetryPolicy, token_url
from .provider import TokenProvider, get_provider
from .settings import resolve_api_key, resolve_base_url
from .urls import origin_of

__all__ = ["MemoramAuth"]


class MemoramAuth(requests.auth.AuthBase, httpx.Auth):
    """Bearer tokens for the Memoram API, for requests and httpx (sync and async).

    ::

        requests.get(url, auth=MemoramAuth())
        httpx.Client(auth=MemoramAuth("mem_…"))
        httpx.AsyncClient(auth=MemoramAuth(base_url="https://api.memoram.app/api/v1"))

    Only requests to the base URL's origin (scheme, host, port) get the token; anything else,
    and the token endpoint itself, passes through untouched. After a 401 from the API the token
    is invalidated, a new one fetched and the request replayed once, if its body can be
    replayed. Every object with the same key, base URL and cache shares one token provider,
    so creating one per request is cheap. Thread-safe and task-safe.

    Args:
        api_key: the developer API key; default ``MEMORAM_API_KEY``, then key plugins.
        base_url: the API's base URL; default ``MEMORAM_BASE_URL``, then
            ``https://api.memoram.app/api/v1``. ``http://`` only for loopback hosts.
        cache_dir: where tokens are shared between processes; ``False`` for memory only;
            default ``MEMORAM_AUTH_CACHE_DIR``, then the user cache directory.
        expires_in: token lifetime to ask for, in seconds (the server may grant less).
        policy: retries and timeouts of the token request.

    Raises:
        ConfigurationError: no key, a malformed key, or a bad or insecure base URL.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        cache_dir: str | os.PathLike[str] | bool | None = None,
        expires_in: int | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        url = resolve_base_url(base_url)
        key = resolve_api_key(api_key, url)
        self.provider: TokenProvider = get_provider(
            key, url, cache_dir=cache_dir, policy=policy, expires_in=expires_in
        )
        origin = origin_of(url)
        assert origin is not None  # noqa: S101 - validate_base_url() accepted it
        self._origin = origin
        # Most URLs start with the base URL's own spelling of the origin: a prefix test decides
        # them without parsing. The trailing "/" keeps "api.memoram.app.evil" out.
        self._origin_prefix = "/".join(url.split("/", 3)[:3]) + "/"
        self._token_url = token_url(url)

    @property
    def base_url(self) -> str:
        return self.provider.base_url

    @property
    def fingerprint(self) -> str:
        """A one-way name of the key, safe to show."""
        return self.provider.fingerprint

    def __repr__(self) -> str:
        return f"MemoramAuth(base_url={self.base_url!r}, key={self.fingerprint})"

    def targets(self, url: str) -> bool:
        """True if a request to *url* gets the token: same origin, not the token endpoint."""
        if not url.startswith(self._origin_prefix) and origin_of(url) != self._origin:
            return False
        if url.startswith(self._token_url):
            rest = url[len(self._token_url) :]
            return bool(rest) and rest[0] not in "/?#"
        return True

    # The library halves are plain functions taking this object.

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        """requests: set the header and hook the 401 replay."""
        return _requests.apply(self, r)

    #: httpx: the flows do I/O and take locks, so both are overridden (httpx's own advice).
    sync_auth_flow = _httpx.sync_auth_flow
    async_auth_flow = _httpx.async_auth_flow
