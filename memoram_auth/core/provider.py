"""The token provider: one token request per key per token lifetime, however many ask at once.

A provider serves one (base URL, API key). Within a process every caller shares it (see
:func:`get_provider`); across processes they share the cache (:mod:`memoram_auth.cache`).

When is a token refreshed? With ``L`` its lifetime:

- **fresh** until the last ``min(10 min, L/4)``: handed out with no lock and no I/O;
- **advisory** window, the last ``min(10 min, L/4)``: one caller refreshes while every other
  keeps using the current token; a failed refresh keeps the current token and is not tried
  again for :data:`ADVISORY_RETRY_INTERVAL` seconds (unless the refresh outlasted the token's
  usable life, or a 401 rejected it meanwhile: then its caller gets the refresh's error);
- **mandatory** window, the last ``min(60 s, L/10)``: callers wait for the new token.

With background refresh (``background=True``), the advisory-window refresh is handed to the
process's refresher thread (:mod:`memoram_auth.core.refresher`) and no caller waits for it; a
failed one is tried again after a growing, jittered pause, every other attempt made inline by
a caller, as without background refresh, through that caller's own client. While a background
refresh is under way or has failed, callers keep the current token past the mandatory window,
until it expires (static stability: a token endpoint that is down or slow costs no call while
the token lives). So a background refresh begins early enough to end before the token
expires if it is as slow as the last token request (only short tokens from a slow endpoint
notice: a one-hour token's advisory window is 10 minutes), never in the first half of the
token's life.

So a one-hour token is refreshed from 10 minutes before expiry and, unless a background
refresh is late, never used in its last minute; a 4 s token from 1 s before and never used in
its last 0.4 s.

Single flight: within the process a thread lock, across processes the cache's file lock; after
taking the file lock the cache is read again, so the process that waited adopts the token the
other one fetched. After a 401 the token is replaced by one obtained after the rejection, or
fetched to replace the rejected token (``Token.replaces`` names it): a token that was already
around may have been revoked with it, and so may a replacement for an earlier rejection. A
replacement of the rejected token that another thread or process fetched meanwhile survives a
late 401 for it (compare-and-invalidate).
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING

from .. import _log
from .._policy import RetryPolicy
from ..exceptions import EndpointUnavailableError, KeyRejectedError, MemoramAuthError
from ..keys import ApiKey, refusal
from ..token import ADVISORY, FRESH, MANDATORY, Token, freshness, token_digest
from .header import BEARER, Entry, HeaderHolder
from .steps import Blocking, drive, drive_async

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from ..hookspecs import TokenCache
    from .steps import Answer, AsyncSend, RawResponse, Step, TokenRequest, Transport

    #: Where the provider's events go: ``events(name, **details)`` (the plugins' hooks).
    Events = Callable[..., None]

__all__ = ["ADVISORY_RETRY_INTERVAL", "BEARER", "Provider"]

ADVISORY_RETRY_INTERVAL = 5.0
#: With background refresh, the refresh ahead begins at least this many times the last token
#: request's duration before the token expires (see Provider._fresh_until).
LEAD_FACTOR = 1.5


_now = time.time  # a module global: one lookup fewer on the refresh checks


_live_providers: weakref.WeakSet[Provider] = weakref.WeakSet()


class Provider:
    """Current tokens for one (base URL, API key); thread-, task- and process-safe.

    The logic of :class:`memoram_auth.provider.TokenProvider`, which gives it the package's
    defaults (the configured cache, the stdlib transport, the plugins' events) and checks its
    arguments. Everything here is given, already validated:

    Args:
        key: the API key.
        base_url: the validated base URL.
        cache: where tokens are shared between processes.
        transport: sends the token request when a caller gives none.
        policy: retries and timeouts of the token request.
        expires_in: the lifetime to ask for, in seconds, or ``None``.
        lock_timeout: longest wait for another refresh before fetching anyway; defaults to
            the policy's total timeout plus 10 s.
        events: called as ``events(name, base_url=..., key_fingerprint=..., **details)`` for
            a token obtained or a refresh that failed, from a step that may block.
        load: reads this provider's slot from the cache (default: ``cache.load``).
        background: refresh in the advisory window from the refresher thread, with
            *transport*, while callers keep the current token (default: inline, by a caller).
    """

    def __init__(
        self,
        key: ApiKey,
        base_url: str,
        *,
        cache: TokenCache,
        transport: Transport,
        policy: RetryPolicy | None = None,
        expires_in: int | None = None,
        lock_timeout: float | None = None,
        events: Events | None = None,
        load: Callable[[str], Token | None] | None = None,
        background: bool = False,
    ) -> None:
        self._key = key
        self.base_url = base_url
        self.fingerprint = key.fingerprint
        self.cache: TokenCache = cache
        self.policy = policy or RetryPolicy()
        self.expires_in = expires_in
        self.lock_timeout = self.policy.total_timeout + 10 if lock_timeout is None else lock_timeout
        self._transport: Transport = transport
        self._events = events
        self._load = load or cache.load
        # The asked lifetime is part of the slot: see slot_for().
        from ..cache import slot_for

        self._slot = slot_for(self.base_url, key.reveal(), self.expires_in)
        # Optional TokenCache methods (see hookspecs.TokenCache), for caches a fleet shares.
        bind_secret = getattr(self.cache, "bind_secret", None)
        self._reject: Callable[[str, str, float], None] | None = getattr(self.cache, "reject", None)
        self._spread = min(max(float(getattr(self.cache, "refresh_spread", 0.0)), 0.0), 0.9)
        if bind_secret is not None:
            from .._derive import cache_secret  # hmac and hashlib only for caches that ask

            bind_secret(self._slot, cache_secret(key.reveal(), self.base_url, self.expires_in))
        #: The token handed out and its header: freshness is decided there (core/header.py).
        self.header = HeaderHolder()
        # The holder's own methods, not wrappers: the per-request path gains no call.
        self.fresh_authorization = self.header.fresh_authorization
        self.authorization_for = self.header.authorization_for
        self._rejected: collections.deque[str] = collections.deque(maxlen=8)
        # (token, rejected_at) for the cache's reject(): sent by the next refresh, off any
        # event loop, since invalidate() runs inside the async auth flow.
        self._unsent_rejections: collections.deque[tuple[str, float]] = collections.deque(maxlen=8)
        # (when, token_digest of the token) of the API's rejection of our current token, until
        # a replacement is adopted (see invalidate); None otherwise. One attribute, so that a
        # reader on another thread never sees the time of one rejection with the digest of
        # another.
        self._rejection: tuple[float, str] | None = None
        self._next_advisory_try = 0.0
        #: Whether advisory-window refreshes go to the refresher thread.
        self.background = background
        self._ahead_failures = 0  # background refreshes failed in a row
        # With background refresh: how long before the mandatory window to begin, from the
        # duration of the last token request (see _fresh_until).
        self._lead = 0.0
        # After a failed background refresh the next attempt is a caller's, through its own
        # client: the settings that reach the endpoint may live only there (an httpx client's
        # verify=, an aiohttp session's connector).
        self._inline_next = False
        self._reset_locks()
        _live_providers.add(self)

    def _reset_locks(self) -> None:
        self._refresh_lock = threading.Lock()  # one refresh at a time in this process
        self._entry_lock = threading.Lock()  # compare-and-set of the header's entry
        # The refresh under way on each event loop (see single_flight); keyed by the loop.
        self._flights: dict[object, _Flight] = {}
        # A background refresh is queued or running: later callers need not hand it over again.
        self._ahead_queued = False
        # The transport of the caller that handed the queued background refresh over.
        self._ahead_transport: Transport | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, key={self.fingerprint}, "
            f"cache={self.cache!r})"
        )

    def __reduce__(self) -> str | tuple[object, ...]:
        # Refused on purpose: a pickle or deep copy would carry the API key.
        raise TypeError(refusal(f"a {type(self).__name__}"))

    @property
    def slot(self) -> str:
        """This provider's slot in the cache."""
        return self._slot

    # -- the per-request path -----------------------------------------------------------------

    #: ``fresh_authorization()``: ``Bearer <token>`` while the token in memory is fresh, else
    #: ``None``: one clock read. What every adapter asks first, for every request.
    fresh_authorization: Callable[[], str | None]
    #: ``authorization_for(token)``: ``Bearer <token>``, built once per token.
    authorization_for: Callable[[Token], str]

    def cached_token(self) -> Token | None:
        """The token the cache holds for this key and base URL, or ``None``. No network."""
        return self._load(self._slot)

    # -- sync ---------------------------------------------------------------------------------

    def authorization(
        self, transport: Transport | None = None, *, within: float | None = None
    ) -> str:
        """``Bearer <token>``, the ``Authorization`` value for :meth:`get_token`'s token.

        While the token is fresh it costs one clock read, and the string is built once per
        token.

        Raises:
            TokenRequestError: as :meth:`get_token`.
        """
        header = self.fresh_authorization()
        if header is not None:
            return header
        return self.authorization_for(self.get_token(transport, within=within))

    def cached_authorization(self) -> str | None:
        """``Bearer <token>`` from memory or the cache while that token is fresh, else
        ``None``; never a token request.

        For a caller that must decide before sending whether it has a token at all: a new
        process (an ``http`` run) whose memory is empty but whose cache holds another run's
        token. A token read here is adopted, as a refresh would adopt it.
        """
        header = self.fresh_authorization()
        if header is not None:
            return header
        cached = self.cached_token()
        if cached is None or freshness(cached, _now()) != FRESH:
            return None
        if cached.value in self._rejected or not self._postdates_rejection(cached):
            return None
        return self.authorization_for(self._adopt(cached, "cache"))

    def get_token(
        self, transport: Transport | None = None, *, within: float | None = None
    ) -> Token:
        """A token that is not in its mandatory refresh window, fetching one if needed.

        Args:
            transport: sends the token request if one is needed (default: the one this
                provider was given). The adapters pass their library's.
            within: the most seconds a token request may take, when less than the policy's
                total timeout: the timeout of the call the token is for (see
                :meth:`refresh_steps`).

        Raises:
            TokenRequestError: no usable token and the exchange failed (see the subclasses).
        """
        token = self.header.fresh_token()
        if token is not None:
            return token
        # A caller's own transport (requests' session=) also carries a refresh it hands over.
        fetched: Token = drive(
            self.refresh_steps(transport, within=within), transport or self._transport
        )
        return fetched

    # -- async --------------------------------------------------------------------------------

    async def authorization_async(self, send: AsyncSend | None = None) -> str:
        """:meth:`authorization` for coroutines: see :meth:`get_token_async`."""
        header = self.fresh_authorization()
        if header is not None:
            return header
        return self.authorization_for(await self.get_token_async(send))

    async def get_token_async(self, send: AsyncSend | None = None) -> Token:
        """:meth:`get_token` for coroutines, on asyncio, uvloop or trio (through anyio).

        Concurrent callers on one event loop share one refresh (and its outcome, failures
        included); lock waits and file I/O run in worker threads, so the loop keeps running
        while a token is fetched. *send* sends a token request without blocking the loop
        (default: this provider's transport in a worker thread).
        """
        fresh = self.header.fresh_token()
        if fresh is not None:
            return fresh
        async with self.single_flight() as flight:
            if flight.done:
                return flight.outcome()
            token: Token = await drive_async(self.refresh_steps(), send or self._send_in_thread)
            flight.succeed(token)
            return token

    def single_flight(self) -> _FlightGuard:
        """``async with provider.single_flight() as flight``: one refresh per event loop.

        The first caller on a loop gets ``flight.done`` false and refreshes, then reports with
        ``flight.succeed(token)`` (a failure is recorded when an exception leaves the block);
        callers arriving meanwhile wait, then get ``flight.done`` and ``flight.outcome()``.
        In the advisory window they do not wait: the current token is still good.
        """
        return _FlightGuard(self)

    async def _send_in_thread(self, request: TokenRequest) -> RawResponse:
        import anyio.to_thread

        response: RawResponse = await anyio.to_thread.run_sync(self._transport, request)
        return response

    # -- refreshing, as steps that any driver runs (see steps.py) -----------------------------

    def refresh_steps(
        self, ahead: Transport | None = None, *, within: float | None = None
    ) -> Generator[Step, Answer, Token]:
        """Everything :meth:`get_token` does past the fresh-token test, as steps.

        A driver runs them: :func:`memoram_auth.core.steps.drive` in a thread,
        ``drive_async`` on an event loop, or an httpx auth flow that yields each token request
        to the user's client. Locks taken here are released when the steps end, however they
        end (an exception from the user's client included: the flow is closed).

        Args:
            ahead: a transport that any thread may call, for the background refresh these
                steps hand over (default: this provider's): the caller's own, where its
                settings live (requests' ``session=``).
            within: seconds from now that the token requests may take in all, retries and
                waits included, when that is less than the policy's ``total_timeout``: the
                adapters pass the timeout of the user's call, so that a slow token endpoint
                fails the call within the time the caller gave it. ``None``: the policy's.
        """
        until = None if within is None else time.monotonic() + within
        entry = self.header.entry
        now = _now()
        state = self._window(entry, now)
        if entry is not None and state == FRESH:
            return entry.token
        held = _Held(self, until)
        try:
            if entry is not None and state == ADVISORY:
                # Advisory window: whoever gets the lock without waiting refreshes; the rest go
                # on with the current token, still good for at least mandatory_window().
                if _now() < self._next_advisory_try or self._hand_over(ahead):
                    return entry.token
                if not held.try_thread_lock():
                    return entry.token
                self._inline_next = False
                current, current_state = self.header.state()
                if current is not None and current is not entry and current_state == FRESH:
                    return current.token  # another thread refreshed while we were getting here
                try:
                    token = yield from self._obtain_steps(held, advisory=True, until=until)
                except MemoramAuthError as exc:
                    now = _now()
                    self._next_advisory_try = now + self._inline_retry_delay()
                    if entry.token.value in self._rejected or self._window(entry, now) == MANDATORY:
                        # The refresh outlasted the token's usable life (the endpoint failing
                        # for its whole retry budget), or a 401 came for it meanwhile: handing
                        # it out would be a 401 caused by us.
                        raise
                    _log.warning(
                        "refreshing the token for key %s ahead of expiry failed (%s); "
                        "using the current one, valid %.0f s more",
                        self.fingerprint,
                        exc,
                        entry.token.remaining(now),
                    )
                    return entry.token
                self._ahead_failures = 0
                return token
            # Mandatory: wait for any other refresher in this process, then look again.
            yield Blocking(held.wait_thread_lock)
            if not held.has_thread_lock() and until is not None and time.monotonic() >= until:
                # Another thread's refresh outlasted this call's timeout: waiting on for the
                # cross-process lock it holds would outlast it more.
                raise EndpointUnavailableError(
                    f"another refresh of the token for key {self.fingerprint} was still under "
                    "way when the call's timeout ended the wait for it",
                    status=None,
                )
            entry = self.header.entry
            now = _now()
            if (
                entry is not None
                and self._window(entry, now) != MANDATORY
                and entry.token.value not in self._rejected
            ):
                return entry.token
            return (yield from self._obtain_steps(held, advisory=False, until=until))
        finally:
            held.release()

    def _inline_retry_delay(self) -> float:
        """The pause after a caller's failed refresh ahead: fixed without background refresh;
        with it, the refresher's growing, jittered one (a caller's attempt and the
        refresher's take turns, and machines that failed together come back spread out)."""
        if not self.background:
            return ADVISORY_RETRY_INTERVAL
        from .refresher import retry_delay

        self._ahead_failures += 1
        return retry_delay(self._ahead_failures)

    def _serves_on(self, token: Token, now: float) -> bool:
        """Whether *token* can still go out at *now*: before its expiry (the mandatory window
        included), not rejected, and not as old as a pending rejection."""
        return (
            now < token.expires_at
            and token.value not in self._rejected
            and self._postdates_rejection(token)
        )

    def _window(self, entry: Entry | None, now: float) -> int:
        """Where *entry* stands at *now* for handing it out: its freshness, except that a
        held-over token (see :meth:`_holds_over`) counts as ``ADVISORY`` in its mandatory
        window, so that callers keep it while the refresh is under way or failed."""
        state = freshness(entry, now)
        if state == MANDATORY and self._holds_over(entry, now):
            return ADVISORY
        return state

    def _holds_over(self, entry: Entry | None, now: float) -> bool:
        """Whether callers keep *entry*'s token past its usable life, until it expires: with
        background refresh, while a refresh is queued or running, or after one failed (until
        a refresh succeeds). Waiting for it instead would hold every request of the
        mandatory window on a slow endpoint, and fail them all on one that is down, while
        the token they have is still good."""
        return (
            entry is not None
            and self.background
            and (self._ahead_queued or self._ahead_failures > 0)
            and self._serves_on(entry.token, now)
        )

    def _hand_over(self, transport: Transport | None) -> bool:
        """Give this advisory-window refresh to the refresher thread, if it takes it, to be
        sent with *transport* (default: this provider's); the caller then goes on with the
        current token."""
        if not self.background or self._inline_next:
            return False
        if self._ahead_queued:
            return True
        self._ahead_transport = transport
        self._ahead_queued = True
        from .refresher import submit

        if submit(self):
            return True
        self._ahead_queued = False
        return False

    def refresh_ahead(self) -> None:
        """Refresh the token ahead of expiry, as the refresher thread does: a caller in the
        advisory window handed it over.

        The same single flight as a caller's refresh (this process's thread lock, taken
        without waiting; the cache's slot lock, then the cache again), through the transport
        the caller handed over with it, else this provider's. A failure is logged and
        counted; the current token serves on.
        """
        # Taken, not kept: a refresh handed over later brings its own (and a session is not
        # kept alive by the provider).
        transport, self._ahead_transport = self._ahead_transport, None
        try:
            entry, state = self.header.state()
            if entry is None or state == FRESH:
                return  # refreshed meanwhile, or dropped after a 401: a caller's business now
            held = _Held(self)
            held.background = True
            if not held.try_thread_lock():
                return  # a caller is refreshing
            try:
                if self.header.fresh_token() is not None:
                    return
                drive(self._obtain_steps(held, advisory=True), transport or self._transport)
            except Exception as exc:  # noqa: BLE001 - the requests still have their token
                # The endpoint failing, or anything else (a cache plugin that raises): back off
                # all the same, and let a caller's inline refresh try (and show its error).
                self._ahead_failures += 1
                from .refresher import retry_delay

                delay = retry_delay(self._ahead_failures)
                self._next_advisory_try = _now() + delay
                self._inline_next = True
                _log.warning(
                    "refreshing the token for key %s in the background failed (%s); using the "
                    "current one, valid %.0f s more; next attempt in %.0f s",
                    self.fingerprint,
                    # Only our own errors' messages: another's could hold anything.
                    exc if isinstance(exc, MemoramAuthError) else type(exc).__name__,
                    entry.token.remaining(),
                    delay,
                )
            else:
                self._ahead_failures = 0
            finally:
                held.release()
        finally:
            self._ahead_queued = False

    def _usable(self, token: Token | None, *, advisory: bool) -> bool:
        if token is None or token.value in self._rejected or not self._postdates_rejection(token):
            return False
        if advisory:
            return _now() < self._fresh_until(token)
        return freshness(token, _now()) != MANDATORY

    def _fresh_until(self, token: Token) -> float:
        """When this provider begins to refresh ahead of *token*'s expiry: at its advisory
        window, or, with background refresh, early enough that a token request as slow as
        the last one ends before the token expires (tokens of a few seconds from a slow
        endpoint), but never in the first half of its life.

        Before its expiry, not before its mandatory window: callers keep the token until it
        expires while the background refresh runs (see _holds_over). Aiming at the mandatory
        window began the refresh of a 4 s token from a 1 s endpoint at half its life: a token
        request every 2 s instead of every 3 s without background refresh."""
        lead = self._lead
        if not lead:
            return token.fresh_until
        earliest = token.obtained_at + token.lifetime / 2
        return max(earliest, min(token.fresh_until, token.expires_at - lead))

    def _latest_start(self, token: Token) -> float | None:
        """With background refresh, the latest moment a refresh ahead of *token* can begin
        and still end, as slow as the last one, before the token expires: where a fleet's
        spread of the refresh's start ends (see Entry). ``None``: the usable life's end."""
        return token.expires_at - self._lead if self._lead else None

    def _postdates_rejection(self, token: Token) -> bool:
        """Whether *token* cannot have died with the pending rejection: none is pending, or it
        was obtained after the rejection was seen, or it was fetched to replace that very
        token. A replacement for another (earlier) rejection is not enough: a second
        revocation may have hit it."""
        pending = self._rejection
        return pending is None or token.obtained_at > pending[0] or token.replaces == pending[1]

    def _send_rejections(self) -> None:
        # Queued by invalidate(), which may run on an event loop; sent from here, a step
        # that may block (a shared cache is a network round trip).
        while self._unsent_rejections and self._reject is not None:
            token_value, rejected_at = self._unsent_rejections.popleft()
            self._reject(self._slot, token_value, rejected_at)

    def _lock_and_load(self, held: _Held) -> Token | None:
        """Take the slot's cross-process lock, then read the cache again: a process that
        waited adopts the token the lock's holder fetched."""
        held.take_slot_lock()
        return self.cached_token()

    def _obtain_steps(
        self, held: _Held, *, advisory: bool, until: float | None = None
    ) -> Generator[Step, Answer, Token]:
        if self._unsent_rejections:
            yield Blocking(self._send_rejections)
        # A token another process cached is as good as one we fetch; the lock-free read first
        # makes the warm-cache path cost no lock at all (writes are atomic).
        cached = yield Blocking(self.cached_token)
        if self._usable(cached, advisory=advisory):
            assert cached is not None  # noqa: S101 - for mypy; _usable() checked it
            return self._adopt(cached, "cache")
        cached = yield Blocking(self._lock_and_load, held)
        if self._usable(cached, advisory=advisory):
            assert cached is not None  # noqa: S101 - for mypy; _usable() checked it
            return self._adopt(cached, "cache")
        from .exchange import exchange_steps

        # Read before the request leaves: a rejection seen while it is in flight may have come
        # from a revocation that hit the token it brings back too (see invalidate).
        pending_rejection = self._rejection
        if held.background:
            yield Blocking(self._notify, "memoram_auth_background_refresh_started")
        started = _now()
        try:
            token = yield from exchange_steps(
                self.base_url,
                self._key,
                expires_in=self.expires_in,
                policy=self.policy,
                until=until,
            )
        except MemoramAuthError as exc:
            forget = isinstance(exc, KeyRejectedError) and exc.status != 400
            yield Blocking(self._failed, str(exc), held, forget_key=forget)
            raise
        if self.background:
            self._lead = LEAD_FACTOR * (_now() - started)
        # Tells other processes which rejected token this one replaces: only a rejection seen
        # before it was requested. Set from the state at the end of the request instead, a
        # token issued just before a revocation, whose answer was read after another thread's
        # 401, would be taken for a replacement by every process that saw the revocation.
        token.replaces = pending_rejection[1] if pending_rejection is not None else None
        yield Blocking(self._keep, token, held)
        if not self._postdates_rejection(token):
            # A 401 came while the request was in flight: this token may be dead too. It serves
            # the request it was fetched for (a 401 there is replayed), but is not adopted, so
            # a replay after that 401 gets a token requested after it.
            _log.debug(
                "a token for key %s was requested before a rejection; not adopted",
                self.fingerprint,
            )
            return token
        # The fetched token is returned even if its lifetime is shorter than our windows:
        # a server that grants 1 s tokens gets a request per use, not an endless loop.
        return self._adopt(token, "token endpoint")

    def _keep(self, token: Token, held: _Held) -> None:
        """Store a fetched token, release the slot's lock, and say so to the events."""
        self.cache.store(
            self._slot, token, base_url=self.base_url, key_fingerprint=self.fingerprint
        )
        held.release_slot_lock()
        self._ahead_failures = 0  # the endpoint answers: no token is held over for a failure
        self._notify(
            "memoram_auth_token_acquired", expires_at=token.expires_at, background=held.background
        )

    def _failed(self, error: str, held: _Held, *, forget_key: bool) -> None:
        """A refresh failed: forget a rejected key's token (with the slot's lock held), and
        say so to the events."""
        if forget_key:
            self._forget_rejected_key()
        self._notify("memoram_auth_refresh_failed", error=error, background=held.background)

    def _notify(self, event: str, **details: object) -> None:
        if self._events is not None:
            self._events(event, base_url=self.base_url, key_fingerprint=self.fingerprint, **details)

    def _forget_rejected_key(self) -> None:
        # Called with the slot's lock held. A token left in the cache after the API rejected
        # the key looks live: `memoram-auth token` would print it with exit 0 and `status`
        # say "valid". A 400 is left alone: it refuses the request (expires_in), not the key,
        # and other processes' tokens for the key may be fine.
        self.cache.delete(self._slot)
        with self._entry_lock:
            self.header.drop()

    def _adopt(self, token: Token, source: str) -> Token:
        with self._entry_lock:
            self.header.hold(
                token, self._fresh_until(token), self._spread, self._latest_start(token)
            )
            if self._postdates_rejection(token):
                self._rejection = None
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
        another thread or process refreshed to while the request was in flight, or one fetched
        to replace a token rejected earlier. So the current token is dropped too unless it was
        itself fetched to replace *token* (compare-and-invalidate: a replacement that another
        thread or process already fetched stays), and until a replacement is in, only a token
        obtained after this moment, or fetched to replace *token*, is adopted. Otherwise the
        one replay after a 401 could go out with a dead token as well. The rejected value is
        never adopted again. A cache with a ``reject`` method is told by the next refresh, so
        the rule holds fleet-wide.
        """
        self._rejected.append(token)
        digest = token_digest(token)
        with self._entry_lock:
            held = self.header.entry
            current = held.token if held is not None else None
            if current is not None:
                if current.value != token and current.replaces == digest:
                    return  # its replacement: a late 401 for a request that went out before
            elif self._rejection is not None and self._rejection[1] == digest:
                return  # another thread's 401 for the same token already did all this
            self.header.drop()
            seen_at = _now()
            self._rejection = (seen_at, digest)
            if self._reject is not None:
                self._unsent_rejections.append((token, seen_at))
        _log.debug("the API rejected a token for key %s; it will be replaced", self.fingerprint)


def _loop_key() -> object:
    """The running event loop, whichever library runs it (trio, else asyncio or uvloop)."""
    trio = sys.modules.get("trio")  # only a program that imported trio can be running it
    if trio is not None:
        try:
            return trio.lowlevel.current_trio_token()
        except RuntimeError:  # trio is imported, but this is not a trio run
            pass
    import asyncio

    return asyncio.get_running_loop()


class _Flight:
    """One refresh on one event loop, and its outcome for the callers that waited for it."""

    __slots__ = ("done", "error", "event", "token")

    def __init__(self) -> None:
        import anyio

        self.event = anyio.Event()
        self.done = False
        self.token: Token | None = None
        self.error: BaseException | None = None

    def succeed(self, token: Token) -> None:
        self.token = token

    def outcome(self) -> Token:
        """The token the leader got, or the MemoramAuthError it raised."""
        if self.token is None:
            assert self.error is not None  # noqa: S101 - _FlightGuard shares only outcomes
            raise self.error
        return self.token


class _FlightGuard:
    __slots__ = ("_flight", "_key", "_leader", "_provider")

    def __init__(self, provider: Provider) -> None:
        self._provider = provider
        self._flight: _Flight | None = None
        self._leader = False

    async def __aenter__(self) -> _Flight:
        flights = self._provider._flights
        self._key = key = _loop_key()
        while True:
            current = flights.get(key)
            if current is None:
                flight = flights[key] = _Flight()
                self._flight, self._leader = flight, True
                return flight
            entry = self._provider.header.entry
            now = _now()
            if entry is not None and self._provider._window(entry, now) != MANDATORY:
                # Advisory window (or a held-over token), and a refresh is already under way:
                # the current token.
                done = _Flight()
                done.done, done.token = True, entry.token
                return done
            await current.event.wait()
            token = current.token
            if token is not None and not self._provider._postdates_rejection(token):
                # Requested before a 401 this caller may be replaying for: try again.
                continue
            if token is not None or isinstance(current.error, MemoramAuthError):
                shared = _Flight()
                shared.done, shared.token, shared.error = True, current.token, current.error
                return shared
            # The leader left without an outcome (cancelled, or its client raised): try again.

    async def __aexit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        flight = self._flight
        if flight is None or not self._leader:
            return
        flight.error = error
        flight.done = True
        if self._provider._flights.get(self._key) is flight:
            del self._provider._flights[self._key]
        flight.event.set()


class _Held:
    """The locks one refresh holds, so that they are released however the steps end.

    The blocking waits run where the driver allows blocking (a worker thread under an event
    loop); ownership is recorded the moment a lock is had, so a flow closed right after a
    wait still releases it. The thread lock is a plain ``threading.Lock``, which any thread
    may release; the cache's slot lock is created without thread affinity for the same reason.
    """

    __slots__ = ("_provider", "_slot_lock", "_thread", "_until", "background")

    def __init__(self, provider: Provider, until: float | None = None) -> None:
        self._provider = provider
        self._until = until  # the caller's deadline (time.monotonic()), if it gave one
        self.background = False  # the refresher thread's refresh, not a caller's
        self._thread = False
        self._slot_lock: contextlib.AbstractContextManager[bool] | None = None

    def try_thread_lock(self) -> bool:
        self._thread = self._provider._refresh_lock.acquire(blocking=False)
        return self._thread

    def wait_thread_lock(self) -> None:
        # Bounded like the cross-process lock: a holder stuck past its own deadline does not
        # hold everyone else forever; this caller then fetches without the lock.
        timeout = self._provider.lock_timeout
        if self._until is not None:
            timeout = max(0.0, min(timeout, self._until - time.monotonic()))
        self._thread = self._provider._refresh_lock.acquire(timeout=timeout)

    def has_thread_lock(self) -> bool:
        return self._thread

    def take_slot_lock(self) -> None:
        lock = self._provider.cache.lock(self._provider.slot, self._provider.lock_timeout)
        lock.__enter__()
        self._slot_lock = lock

    def release_slot_lock(self) -> None:
        lock, self._slot_lock = self._slot_lock, None
        if lock is not None:
            lock.__exit__(None, None, None)

    def release(self) -> None:
        self.release_slot_lock()
        if self._thread:
            self._thread = False
            self._provider._refresh_lock.release()


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time stays held forever in the child: give every
    # provider fresh locks. The token itself is still good and is kept.
    for provider in list(_live_providers):
        provider._reset_locks()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
