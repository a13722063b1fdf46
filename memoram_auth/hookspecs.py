"""The hooks other packages implement to extend memoram-auth (pluggy, project ``memoram_auth``).

A plugin is a module or object with functions marked ``@hookimpl`` and named like the specs
below, published under the entry-point group ``memoram_auth``::

    [project.entry-points.memoram_auth]
    my_plugin = "my_package.memoram_plugin"

Hook names are stable. Events carry metadata only: never an API key or a token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Protocol

import pluggy

from .token import Token

__all__ = ["PROJECT", "CacheFactory", "TokenCache", "hookimpl", "hookspec"]

PROJECT = "memoram_auth"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class TokenCache(Protocol):
    """What a cache backend provides (see :class:`memoram_auth.cache.FileCache`).

    Three optional methods and an attribute, which the provider uses only when a backend has
    them (the file cache has none, and works as before), serve caches that a fleet shares:

    ``bind_secret(slot: str, secret: bytes) -> None``
        Called once per provider, before any other call for *slot*, with 32 bytes derived
        from the API key and base URL by HKDF-SHA256 (:func:`memoram_auth._derive.
        cache_secret`). A shared cache names and seals the slot's entries with it, so what
        it stores is useless without the key. The raw key is never handed to a cache.
    ``reject(slot: str, token: str, rejected_at: float) -> None``
        The API rejected *token* (401) at *rejected_at* (local ``time.time()``). Called
        from the thread that next refreshes (never on an event loop), before it reads the
        cache. The backend forgets the entry unless it holds a replacement of *token*
        (another token whose ``replaces`` is ``token_digest(token)``; compare-and-invalidate,
        as :meth:`TokenProvider.invalidate` does in memory), and refuses later writes of
        tokens fetched before the call. Failures degrade, they never raise.
    ``refresh_spread: float``
        A fraction in [0, 1). Machines that share a token share its expiry, so they would
        all start refreshing ahead of it at the same moment; should the cache be unavailable
        then, each would fetch a token of its own in the same second. The provider starts its
        refreshes ahead of expiry at a random point in this first fraction of the window
        between the advisory and the mandatory one, drawn per token (the file cache: 0).
    ``health() -> dict``
        For ``memoram-auth status``: asks the service behind the cache now and answers at
        least ``backend``, ``where``, ``ok`` and, if not ok, ``kind`` (``"outage"`` for one
        that may pass; anything else is a setting or right to fix) and ``problem``. The
        command exits 4 for an outage, 2 otherwise.
    """

    def load(self, slot: str) -> Token | None:
        """The stored token, or ``None`` (missing, damaged or unreadable: all misses)."""

    def store(self, slot: str, token: Token, *, base_url: str, key_fingerprint: str) -> None:
        """Keep *token*; failures degrade the cache, they never raise.

        :meth:`load` should give back ``value``, ``obtained_at``, ``expires_at`` and
        ``replaces`` (the :func:`~memoram_auth.token.token_digest` of the rejected token this
        one was fetched to replace, or ``None``). A backend that drops ``replaces``, or keeps
        only the yes/no of versions before (``after_rejection``; ``Token(...,
        after_rejection=True)`` still builds a token marked as replacing an unknown one), costs
        other processes at most one token request each after a 401: their provider takes such
        a token only if it was obtained after the 401, never for a replacement. It never
        costs a 401.
        """

    def delete(self, slot: str) -> None:
        """Forget the token in *slot*, if any."""

    def lock(self, slot: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        """Hold the slot's cross-process lock; the value is ``False`` if it could not be had."""


#: Builds a token cache; gets the ``cache_dir`` asked for (``None`` for the default).
CacheFactory = Callable[["str | None"], TokenCache]


@hookspec(firstresult=True)
def memoram_auth_get_api_key(base_url: str) -> str | None:
    """Return the API key for *base_url*, or ``None`` to let the next plugin answer.

    Asked only when no key was passed and ``MEMORAM_API_KEY`` is unset or empty: the
    environment always wins, as environment credentials do for AWS and gcloud, so a process
    with its key there never loads a plugin. The first non-``None`` answer wins; order among
    plugins is pluggy's (``tryfirst``/``trylast``, then the last registered first).
    """


@hookspec
def memoram_auth_no_key_hint(base_url: str) -> str | None:
    """Say how to give this plugin a key for *base_url*, or ``None``.

    Asked when no key was found anywhere (no argument, ``MEMORAM_API_KEY`` unset, and no
    plugin answered :func:`memoram_auth_get_api_key`); every answer is added to the "no API
    key" error, after the plugin's name: ``run: memoram-auth-keyring set``. It must not
    contain a key.
    """


@hookspec
def memoram_auth_cache_backends() -> Mapping[str, CacheFactory]:  # type: ignore[empty-body]  # a spec: no body
    """Return token cache backends by name, e.g. ``{"redis": make_redis_cache}``.

    ``MEMORAM_AUTH_CACHE_BACKEND=NAME`` (or ``cache_backend="NAME"``) selects one; the built-in
    ones are ``file`` (the default) and ``memory``. A factory gets the ``cache_dir`` asked for
    and returns a :class:`TokenCache`.
    """


@hookspec
def memoram_auth_token_acquired(
    base_url: str, key_fingerprint: str, expires_at: float, background: bool
) -> None:
    """A new token was obtained from the token endpoint (``expires_at``: local ``time.time()``);
    *background*: by the refresher thread, ahead of expiry, rather than by a caller."""


@hookspec
def memoram_auth_background_refresh_started(base_url: str, key_fingerprint: str) -> None:
    """The refresher thread is asking the token endpoint for a token ahead of expiry; callers
    keep the current one meanwhile. ``memoram_auth_token_acquired`` or
    ``memoram_auth_refresh_failed``, with ``background=True``, says how it ended."""


@hookspec
def memoram_auth_cache_unavailable(backend: str, error: str, retry_in: float) -> None:
    """A shared cache stopped answering; tokens stay local for *retry_in* seconds."""


@hookspec
def memoram_auth_cache_recovered(backend: str) -> None:
    """A shared cache that was unavailable answers again."""


@hookspec
def memoram_auth_refresh_failed(
    base_url: str, key_fingerprint: str, error: str, background: bool
) -> None:
    """Getting a new token failed; *error* is the message of the ``MemoramAuthError``;
    *background*: the refresher thread's attempt (the current token still serves)."""
