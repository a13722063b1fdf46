"""The token provider: one token request per key per token lifetime, however many ask at once.

A provider serves one (base URL, API key). Within a process every caller shares it (see
:func:`get_provider`); across processes they share the cache (:mod:`memoram_auth.cache`).

When is a token refreshed? With ``L`` its lifetime:

- **fresh** until the last ``min(10 min, L/4)``: handed out with no lock and no I/O;
- **advisory** window, the last ``min(10 min, L/4)``: one caller refreshes while every other
  keeps using the current token; a failed refresh keeps the current token and is not tried
  again for :data:`ADVISORY_RETRY_INTERVAL` seconds;
- **mandatory** window, the last ``min(60 s, L/10)``: callers wait for the new token.

So a one-hour token is refreshed from 10 minutes before expiry and never used in its last
minute; a 4 s token from 1 s before and never in its last 0.4 s.

Single flight: within the process a thread lock, across processes the cache's file lock; after
taking the file lock the cache is read again, so the process that waited adopts the token the
other one fetched. After a 401 the token is replaced by one obtained after the rejection, or
fetched after one: a token that was already around may have been revoked with it. A
replacement that another thread or process fetched meanwhile survives a late 401 for the old
token (compare-and-invalidate).
"""

from __future__ import annotations

import collections
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

from . import _log, plugins
from ._backends import cache_identity, default_cache
from ._policy import RetryPolicy, check_expires_in, check_policy
from ._urls import validate_base_url
from .cache import FileCache, slot_for
from .exceptions import KeyRejectedError, MemoramAuthError
from .keys import fingerprint, normalize_api_key
from .token import Token, advisory_window, mandatory_window

if TYPE_CHECKING:
    # asyncio and the exchange are imported where they are used: a process that finds its
    # token in the cache needs neither, and the command line starts faster without them.
    import asyncio

    from ._backends import CacheDir
    from .hookspecs import TokenCache
    from .transport import Transport

__all__ = [
    "ADVISORY_RETRY_INTERVAL",
    "BEARER",
    "TokenProvider",
    "advisory_window",
    "get_provider",
    "mandatory_window",
]

ADVISORY_RETRY_INTERVAL = 5.0


#: What comes before the token in the ``Authorization`` header (see ``authorization()``).
BEARER = "Bearer "
_now = time.time  # a module global: one lookup fewer on the per-request path


class _Entry:
    # Deadlines and the header value precomputed once per token, so the per-request path is
    # one clock read and a compare. A slotted class, not a NamedTuple: CPython reads slots
    # faster than tuple fields, and the adapters read two of them for every request.
    __slots__ = ("authorization", "refresh_at", "token", "unusable_at")

    def __init__(self, token: Token) -> None:
        self.token = token
        self.refresh_at = token.fresh_until
        self.unusable_at = token.usable_until
        self.authorization = BEARER + token.value


_live_providers: weakref.WeakSet[TokenProvider] = weakref.WeakSet()


class TokenProvider:
    """Current tokens for one (base URL, API key); thread-, task- and process-safe.

    Prefer :func:`get_provider`, which shares one provider per key within the process.

    Args:
        api_key: the developer API key (surrounding whitespace is dropped).
        base_url: the API's base URL (https, or http to a loopback host).
        cache: where tokens are shared between processes (default:
            `memoram_auth._backends.default_cache`).
        policy: retries and timeouts of the token request.
        expires_in: the lifetime to ask for, in seconds (the server may grant less).
        lock_timeout: longest wait for another process's refresh before fetching anyway;
            defaults to the policy's total timeout plus 10 s.
        transport: how the token request is sent (tests); the stdlib one by default.

    Raises:
        ConfigurationError: a malformed key, a bad or insecure base URL, an ``expires_in``
            that is not a positive int, or a ``policy`` that is not a RetryPolicy.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        cache: TokenCache | None = None,
        policy: RetryPolicy | None = None,
        expires_in: int | None = None,
        lock_timeout: float | None = None,
        transport: Transport | None = None,
    ) -> None:
        self._api_key = normalize_api_key(api_key)
        self.base_url = validate_base_url(base_url)
        self.fingerprint = fingerprint(self._api_key)
        self.cache: TokenCache = cache if cache is not None else default_cache()
        self.policy = check_policy(policy) or RetryPolicy()
        self.expires_in = check_expires_in(expires_in)
        self.lock_timeout = self.policy.total_timeout + 10 if lock_timeout is None else lock_timeout
        self._transport = transport
        self._slot = slot_for(self.base_url, self._api_key)
        self._entry: _Entry | None = None
        self._rejected: collections.deque[str] = collections.deque(maxlen=8)
        # When the API rejected our current token, until a replacement is adopted (see
        # invalidate); None otherwise.
        self._rejection_seen_at: float | None = None
        self._next_advisory_try = 0.0
        self._reset_locks()
        _live_providers.add(self)

    def _reset_locks(self) -> None:
        self._refresh_lock = threading.Lock()  # one refresh at a time in this process
        self._entry_lock = threading.Lock()  # compare-and-set of _entry
        self._inflight: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Future[Token]
        ] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return (
            f"TokenProvider(base_url={self.base_url!r}, key={self.fingerprint}, "
            f"cache={self.cache!r})"
        )

    @property
    def slot(self) -> str:
        """This provider's slot in the cache."""
        return self._slot

    def cached_token(self) -> Token | None:
        """The token the cache holds for this key and base URL, or ``None``. No network."""
        cache = self.cache
        if isinstance(cache, FileCache):
            # The file must say it was written for this base URL and key: a file copied or
            # planted under this slot's name is a miss (issue 12). Plugin backends keep the
            # one-argument load() of the TokenCache protocol.
            return cache.load(self._slot, base_url=self.base_url, key_fingerprint=self.fingerprint)
        return cache.load(self._slot)

    # -- sync ---------------------------------------------------------------------------------

    def authorization(self) -> str:
        """``Bearer <token>``, the ``Authorization`` value for :meth:`get_token`'s token.

        What the auth adapters call for every request: while the token is fresh it costs one
        clock read, and the string is built once per token.

        Raises:
            TokenRequestError: as :meth:`get_token`.
        """
        entry = self._entry
        if entry is not None and _now() < entry.refresh_at:
            return entry.authorization
        return self._authorization_of(self.get_token())

    def _authorization_of(self, token: Token) -> str:
        entry = self._entry
        if entry is not None and entry.token is token:
            return entry.authorization
        return BEARER + token.value

    def get_token(self) -> Token:
        """A token that is not in its mandatory refresh window, fetching one if needed.

        Raises:
            TokenRequestError: no usable token and the exchange failed (see the subclasses).
        """
        entry = self._entry
        if entry is not None:
            now = time.time()
            if now < entry.refresh_at:
                return entry.token
            if now < entry.unusable_at:
                return self._refresh_ahead(entry, now)
        with self._refresh_lock:
            return self._refresh_now()

    def _refresh_ahead(self, entry: _Entry, now: float) -> Token:
        # Advisory window: whoever gets the lock without waiting refreshes; the rest go on
        # with the current token, which is still good for at least mandatory_window().
        if now < self._next_advisory_try or not self._refresh_lock.acquire(blocking=False):
            return entry.token
        try:
            current = self._entry
            if current is not None and current is not entry and time.time() < current.refresh_at:
                return current.token  # another thread refreshed while we were getting here
            try:
                return self._obtain(advisory=True)
            except MemoramAuthError as exc:
                self._next_advisory_try = time.time() + ADVISORY_RETRY_INTERVAL
                _log.warning(
                    "refreshing the token for key %s ahead of expiry failed (%s); "
                    "using the current one, valid %.0f s more",
                    self.fingerprint,
                    exc,
                    entry.token.remaining(),
                )
                return entry.token
        finally:
            self._refresh_lock.release()

    def _refresh_now(self) -> Token:
        # Mandatory: called with _refresh_lock held, after waiting for any other refresher.
        entry = self._entry
        if (
            entry is not None
            and time.time() < entry.unusable_at
            and entry.token.value not in self._rejected
        ):
            return entry.token
        return self._obtain(advisory=False)

    def _usable(self, token: Token | None, *, advisory: bool) -> bool:
        if token is None or token.value in self._rejected or not self._postdates_rejection(token):
            return False
        entry = _Entry(token)
        return time.time() < (entry.refresh_at if advisory else entry.unusable_at)

    def _postdates_rejection(self, token: Token) -> bool:
        seen_at = self._rejection_seen_at
        return seen_at is None or token.after_rejection or token.obtained_at > seen_at

    def _obtain(self, *, advisory: bool) -> Token:
        # A token another process cached is as good as one we fetch; the lock-free read first
        # makes the warm-cache path cost no lock at all (writes are atomic).
        cached = self.cached_token()
        if self._usable(cached, advisory=advisory):
            assert cached is not None  # noqa: S101 - for mypy; _usable() checked it
            return self._adopt(cached, "cache")
        with self.cache.lock(self._slot, self.lock_timeout):
            cached = self.cached_token()
            if self._usable(cached, advisory=advisory):
                assert cached is not None  # noqa: S101 - for mypy; _usable() checked it
                return self._adopt(cached, "cache")
            from .exchange import request_token

            try:
                token = request_token(
                    self.base_url,
                    self._api_key,
                    expires_in=self.expires_in,
                    policy=self.policy,
                    transport=self._transport,
                )
                # Tells other processes that this one is newer than the rejection.
                token.after_rejection = self._rejection_seen_at is not None
            except MemoramAuthError as exc:
                if isinstance(exc, KeyRejectedError) and exc.status != 400:
                    self._forget_rejected_key()
                plugins.notify(
                    "memoram_auth_refresh_failed",
                    base_url=self.base_url,
                    key_fingerprint=self.fingerprint,
                    error=str(exc),
                )
                raise
            self.cache.store(
                self._slot, token, base_url=self.base_url, key_fingerprint=self.fingerprint
            )
        plugins.notify(
            "memoram_auth_token_acquired",
            base_url=self.base_url,
            key_fingerprint=self.fingerprint,
            expires_at=token.expires_at,
        )
        # The fetched token is returned even if its lifetime is shorter than our windows:
        # a server that grants 1 s tokens gets a request per use, not an endless loop.
        return self._adopt(token, "token endpoint")

    def _forget_rejected_key(self) -> None:
        # Called with the slot's lock held. A token left in the cache after the API rejected
        # the key looks live: `memoram-auth token` kept printing it with exit 0 and `status`
        # said "valid" (issue 12). A 400 is left alone: it refuses the request (expires_in),
        # not the key, and other processes' tokens for the key may be fine.
        self.cache.delete(self._slot)
        with self._entry_lock:
            self._entry = None

    def _adopt(self, token: Token, source: str) -> Token:
        with self._entry_lock:
            self._entry = _Entry(token)
            if self._postdates_rejection(token):
                self._rejection_seen_at = None
        _log.debug(
            "using a token for key %s from the %s, valid %.0f s",
            self.fingerprint,
            source,
            token.remaining(),
        )
        return token

    def invalidate(self, token: str) -> None:
        """Forget *token* because the API rejected it (401), and any token as old as it.

        Whatever made the API reject it (a revocation of every token, a rotated signing key)
        may have hit the tokens that were already around when the 401 came, such as the one
        another thread or process refreshed to while the request was in flight. So the current
        token is dropped too unless it was itself fetched after a rejection (compare-and-
        invalidate: a replacement that another thread or process already fetched stays), and
        until a replacement is in, only a token obtained after this moment, or fetched after a
        rejection, is adopted. Otherwise the one replay after a 401 could go out with a dead
        token as well (seen in the soak). The rejected value is never adopted again.
        """
        self._rejected.append(token)
        with self._entry_lock:
            current = self._entry.token if self._entry is not None else None
            if current is not None and (current.value == token or not current.after_rejection):
                self._entry = None
                self._rejection_seen_at = time.time()
        _log.debug("the API rejected a token for key %s; it will be replaced", self.fingerprint)

    # -- async --------------------------------------------------------------------------------

    async def authorization_async(self) -> str:
        """:meth:`authorization` for coroutines: see :meth:`get_token_async`."""
        entry = self._entry
        if entry is not None and _now() < entry.refresh_at:
            return entry.authorization
        return self._authorization_of(await self.get_token_async())

    async def get_token_async(self) -> Token:
        """:meth:`get_token` for coroutines: concurrent callers on a loop share one refresh.

        Lock waits, file I/O and the token request run in the loop's default executor, so the
        event loop keeps running while a token is fetched.
        """
        entry = self._entry
        now = time.time()
        if entry is not None and now < entry.refresh_at:
            return entry.token
        import asyncio

        loop = asyncio.get_running_loop()
        future = self._inflight.get(loop)
        if future is None:
            future = loop.run_in_executor(None, self.get_token)
            self._inflight[loop] = future
            future.add_done_callback(lambda done: self._forget_inflight(loop, done))
        elif entry is not None and now < entry.unusable_at:
            return entry.token  # advisory window, and a refresh is already under way
        # shield: one caller being cancelled must not cancel the refresh the others wait for.
        return await asyncio.shield(future)

    def _forget_inflight(
        self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[Token]
    ) -> None:
        if self._inflight.get(loop) is done:
            del self._inflight[loop]
        if not done.cancelled():
            done.exception()  # retrieved here so an unawaited failure is not reported as lost


_registry: dict[tuple[object, ...], TokenProvider] = {}
_registry_lock = threading.Lock()


def get_provider(
    api_key: str,
    base_url: str,
    *,
    cache_dir: CacheDir = None,
    cache_backend: str | None = None,
    policy: RetryPolicy | None = None,
    expires_in: int | None = None,
) -> TokenProvider:
    """The process-wide provider for this key, base URL and cache, created on first use.

    Every auth object built with the same settings shares it, so building one per request
    costs a dictionary lookup, and the whole process makes one token request per lifetime.
    Arguments are as for :class:`TokenProvider`; ``cache_dir`` and ``cache_backend`` as for
    `memoram_auth._backends.default_cache`.
    """
    key = normalize_api_key(api_key)
    url = validate_base_url(base_url)
    # Checked before they go into the registry key: a list there was an "unhashable" error.
    policy, expires_in = check_policy(policy), check_expires_in(expires_in)
    registry_key = (url, key, cache_identity(cache_dir, cache_backend), policy, expires_in)
    provider = _registry.get(registry_key)
    if provider is None:
        with _registry_lock:
            provider = _registry.get(registry_key)
            if provider is None:
                cache = default_cache(cache_dir, cache_backend)
                provider = TokenProvider(
                    key, url, cache=cache, policy=policy, expires_in=expires_in
                )
                _registry[registry_key] = provider
    return provider


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time stays held forever in the child: give every
    # provider fresh locks. The token itself is still good and is kept.
    global _registry_lock
    _registry_lock = threading.Lock()
    for provider in list(_live_providers):
        provider._reset_locks()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
