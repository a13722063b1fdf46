"""``MemoramAuth``: one auth object for requests and httpx, sync and async.

This module imports requests and httpx; ``memoram_auth.MemoramAuth`` loads it on first use, so
``import memoram_auth`` stays light. The library halves are
:class:`memoram_auth.adapters.requests.RequestsAuth` and
:class:`memoram_auth.adapters.httpx.HttpxAuth`; what they share is
:class:`memoram_auth.adapters.base.AuthCore`.
"""

from __future__ import annotations

from .adapters.httpx import HttpxAuth
from .adapters.requests import RequestsAuth

__all__ = ["MemoramAuth"]


class MemoramAuth(RequestsAuth, HttpxAuth):
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
        api_key: the developer API key. Without one: the agent at ``MEMORAM_AUTH_SOCK``
            (``memoram-auth agent``: its own cache and network settings then apply, and
            these arguments' are not used), else ``MEMORAM_API_KEY``, then key plugins.
        base_url: the API's base URL; default ``MEMORAM_BASE_URL``, then
            ``https://api.memoram.app/api/v1``. ``http://`` only for loopback hosts.
        cache_dir: where tokens are shared between processes; ``False`` for memory only;
            default ``MEMORAM_AUTH_CACHE_DIR``, then the user cache directory.
        cache_backend: a cache backend provided by a plugin (default ``file``).
        expires_in: token lifetime to ask for, in seconds (the server may grant less).
        policy: retries and timeouts of the token request.
        verify: the token request's TLS trust, as requests and httpx read it: ``True``, a CA
            bundle path, an ``ssl.SSLContext``, or ``False`` (no verification: tests only).
        cert: a client certificate for the token request: a PEM path or (cert, key) paths.
        proxy: a proxy URL for the token request (``http://``, ``https://``, ``socks5://``).
        trust_env: whether the token request reads ``REQUESTS_CA_BUNDLE``, ``HTTPS_PROXY``
            and the like from the environment (default ``True``).
        background_refresh: refresh the token ahead of expiry in a background thread while
            requests keep the current one, so that no request waits for a token in steady use
            (default ``MEMORAM_AUTH_BACKGROUND_REFRESH``, else on). That refresh goes through
            *session* when given one (requests), else with *verify*, *cert*, *proxy*
            and the environment; if it fails, requests keep the current token
            until it expires, and the next attempt (after a growing, jittered pause) is a
            request's own, through its session or client, as with ``False``.
        session: requests only: a ``requests.Session`` the token request goes through, with
            its verify, cert, proxies, trust_env and mounted adapters (not its auth nor its
            response hooks). Without it, a session of memoram-auth's with the settings above.

    Where the token request goes: with requests (and httpie), through a requests session
    with these settings and the environment; with httpx, through the user's own client (its
    ``verify``, ``cert``, proxies, mounts, transport and mocks), unless *verify*, *cert* or
    *proxy* is given, in which case through an httpx client with those settings.

    Raises:
        ConfigurationError: no key, a malformed key, or a bad or insecure base URL.
        TypeError, ValueError: a network setting of the wrong type or shape, or a
            *session* that is not a ``requests.Session``.
    """
