"""The current ``Authorization`` header and its token's windows, for a provider of any kind.

:class:`HeaderHolder` is what the core's :class:`~memoram_auth.core.provider.Provider` and the
agent's client (:class:`~memoram_auth.agent.client.AgentProvider`) keep between requests: the
token, when it stops being fresh and usable, and the header string, built once per token.
Whether the held token may be handed out is decided here, with one clock read per decision,
by :func:`memoram_auth.token.freshness`; :meth:`HeaderHolder.fresh_authorization`, which every
adapter asks first on every request, writes out its ``FRESH`` case (a function call there
would cost every request a tenth more: BENCHMARKS.md, section 1).

A leaf of the core: no I/O, no lock (callers that compare-and-set take their own).
"""

from __future__ import annotations

import time

from ..token import FRESH, MANDATORY, Token, freshness

__all__ = ["BEARER", "Entry", "HeaderHolder"]

#: What comes before the token in the ``Authorization`` header.
BEARER = "Bearer "
_now = time.time  # a module global: one lookup fewer on the per-request path


class Entry:
    """A held token with its deadlines and header precomputed, so that the per-request path
    is one clock read and a compare.

    Args:
        token: the token.
        fresh_until: when to begin refreshing it (default: its advisory window).
        spread: with a value in (0, 1), *fresh_until* is drawn later, at random, within that
            share of the time between it and the mandatory window, so that machines sharing
            a token do not all refresh it in the same second. Never earlier.
        latest: the latest time the spread may reach (default: the mandatory window).
    """

    # A slotted class, not a NamedTuple: CPython reads slots faster than tuple fields, and
    # the adapters read two of them for every request.
    __slots__ = ("authorization", "fresh_until", "token", "usable_until")

    def __init__(
        self,
        token: Token,
        fresh_until: float | None = None,
        spread: float = 0.0,
        latest: float | None = None,
    ) -> None:
        self.token = token
        self.fresh_until = token.fresh_until if fresh_until is None else fresh_until
        self.usable_until = token.usable_until
        # The spread's range ends at *latest* (the last start that leaves a refresh time to
        # end: see Provider._latest_start), at most the usable life's end.
        end = self.usable_until if latest is None else min(latest, self.usable_until)
        if spread > 0 and end > self.fresh_until:
            import random  # only for a cache that asks (a fleet's: see TokenCache)

            share = random.uniform(0, spread)  # noqa: S311 - jitter, not secrecy
            self.fresh_until += share * (end - self.fresh_until)
        self.authorization = BEARER + token.value


class HeaderHolder:
    """The token a provider hands out, and whether it may: one ``entry`` or none.

    Reading ``entry`` once and asking about that value is safe from any thread: it is replaced
    whole, never changed in place.
    """

    __slots__ = ("entry",)

    def __init__(self) -> None:
        #: The held token's :class:`Entry`, or ``None``: nothing held, or dropped after a 401.
        self.entry: Entry | None = None

    def fresh_authorization(self) -> str | None:
        """``Bearer <token>`` while the held token is fresh, else ``None``: one clock read."""
        entry = self.entry
        if entry is not None and _now() < entry.fresh_until:
            return entry.authorization
        return None

    def authorization_for(self, token: Token) -> str:
        """``Bearer <token>``: the held entry's string when *token* is the held one."""
        entry = self.entry
        if entry is not None and entry.token is token:
            return entry.authorization
        return BEARER + token.value

    def state(self) -> tuple[Entry | None, int]:
        """The entry and where it stands now (``FRESH``, ``ADVISORY``, ``MANDATORY``)."""
        entry = self.entry
        return entry, freshness(entry, _now())

    def fresh_token(self) -> Token | None:
        """The held token while it is fresh, else ``None``."""
        entry = self.entry
        return entry.token if entry is not None and freshness(entry, _now()) == FRESH else None

    def usable_token(self) -> Token | None:
        """The held token until its mandatory window, else ``None``."""
        entry = self.entry
        return entry.token if entry is not None and freshness(entry, _now()) != MANDATORY else None

    def hold(
        self,
        token: Token,
        fresh_until: float | None = None,
        spread: float = 0.0,
        latest: float | None = None,
    ) -> Entry:
        """Hold *token* from now on (see :class:`Entry` for the arguments)."""
        entry = self.entry = Entry(token, fresh_until, spread, latest)
        return entry

    def drop(self) -> None:
        """Hold nothing: the next request asks for a token."""
        self.entry = None
