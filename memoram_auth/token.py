"""A token and its expiry maths, on the local clock, whatever the server's clock says."""

from __future__ import annotations

import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any, Protocol

    class Windows(Protocol):
        """A token, or anything that knows its windows (the provider's precomputed entry)."""

        @property
        def fresh_until(self) -> float: ...
        @property
        def usable_until(self) -> float: ...

# datetime, email.utils and base64 are imported inside the functions that parse server
# answers: a cached token is used without them, and the command line starts faster.

__all__ = [
    "ADVISORY",
    "DEFAULT_LIFETIME",
    "FRESH",
    "MANDATORY",
    "MAX_LIFETIME",
    "Token",
    "advisory_window",
    "freshness",
    "is_header_safe",
    "jwt_claims",
    "mandatory_window",
    "parse_http_date",
    "parse_iso8601",
    "token_digest",
    "token_lifetime",
]

#: Used when an answer says nothing usable about expiry: short enough that a token the server
#: meant for minutes is refreshed before it dies, long enough not to hammer the endpoint.
DEFAULT_LIFETIME = 300.0

#: No token is believed to live longer than a day, whatever a broken ``Date`` header implies.
MAX_LIFETIME = 86_400.0

#: ``Date`` has one-second resolution, so the server's real "now" may be up to a second later.
_DATE_RESOLUTION = 1.0


def advisory_window(lifetime: float) -> float:
    """Seconds before expiry from which one caller refreshes ahead of time."""
    return min(600.0, lifetime / 4)


def mandatory_window(lifetime: float) -> float:
    """Seconds before expiry from which the token is no longer handed out."""
    return min(60.0, lifetime / 10)


#: Where a token stands (see :func:`freshness`).
FRESH, ADVISORY, MANDATORY = 0, 1, 2


def freshness(token: Windows | None, now: float) -> int:
    """Where *token* stands at *now* (a ``time.time()`` read once by the caller): :data:`FRESH`
    (hand it out), :data:`ADVISORY` (hand it out; one caller refreshes ahead of expiry) or
    :data:`MANDATORY` (no token, or in its last :func:`mandatory_window`: not to be handed out).

    The one freshness rule: the provider, every adapter and the command line ask it.
    """
    if token is None:
        return MANDATORY
    if now < token.fresh_until:
        return FRESH
    return ADVISORY if now < token.usable_until else MANDATORY


class Token:
    """A bearer token with its expiry on the local wall clock.

    ``expires_at`` and ``obtained_at`` are ``time.time()`` values on *this* machine, so they can
    be shared with other processes through the cache. ``value`` is kept out of ``repr``.
    A plain class rather than a NamedTuple: ``typing`` alone costs the command line ~3 ms.

    ``replaces`` is the :func:`token_digest` of the token whose rejection (a 401) was pending
    when this one was requested, or ``None``: this token postdates whatever caused that
    rejection (a revocation, a rotated signing key), and nothing else is known of it. Naming
    the rejected token, rather than saying "fetched after a rejection", keeps a replacement
    for a first rejection from being taken for one after a second (see
    :meth:`memoram_auth.provider.TokenProvider.invalidate`).

    ``after_rejection=True`` without ``replaces`` (what a backend that stores only the old
    yes/no gives back) marks a replacement of an unknown token: it reads as marked, and
    replaces nothing a provider can match, so the provider treats it as unmarked. That costs
    at most one token request after a 401, never a 401.
    """

    __slots__ = ("expires_at", "obtained_at", "replaces", "value")

    def __init__(
        self,
        value: str,
        obtained_at: float,
        expires_at: float,
        *,
        replaces: str | None = None,
        after_rejection: bool = False,
    ) -> None:
        self.value = value
        self.obtained_at = obtained_at
        self.expires_at = expires_at
        self.replaces = replaces if replaces is not None or not after_rejection else ""

    @property
    def after_rejection(self) -> bool:
        """Whether this token was requested while a rejection was pending (``replaces``)."""
        return self.replaces is not None

    def __repr__(self) -> str:
        return f"Token(obtained_at={self.obtained_at!r}, expires_at={self.expires_at!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Token):
            return NotImplemented
        return (self.value, self.obtained_at, self.expires_at) == (
            other.value,
            other.obtained_at,
            other.expires_at,
        )

    def __hash__(self) -> int:
        return hash((self.value, self.obtained_at, self.expires_at))

    @property
    def fresh_until(self) -> float:
        """When the advisory refresh window starts (``time.time()``)."""
        return self.expires_at - advisory_window(max(self.lifetime, 0.0))

    @property
    def usable_until(self) -> float:
        """When the mandatory window starts: the token is not handed out after this."""
        return self.expires_at - mandatory_window(max(self.lifetime, 0.0))

    @property
    def lifetime(self) -> float:
        """Seconds between obtaining the token and its expiry."""
        return self.expires_at - self.obtained_at

    def remaining(self, now: float | None = None) -> float:
        """Seconds left before expiry (negative once expired)."""
        return self.expires_at - (time.time() if now is None else now)


def token_digest(value: str) -> str:
    """A short digest of a token value, for :attr:`Token.replaces`: 32 hex digits of SHA-256.

    Stored (in a cache) only for rejected, dead tokens; one way, like the slot names.
    """
    import hashlib  # here: a cached token is used without it (start-up time)

    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def is_header_safe(token: str) -> bool:
    """True if *token* can go into an HTTP header verbatim.

    Anything outside visible ASCII (spaces, CR/LF, non-ASCII) would break the header or smuggle
    another one in, whether the token came from the server or from a cache file.
    """
    return bool(token) and all("!" <= char <= "~" for char in token)


def parse_iso8601(text: object) -> datetime | None:
    """An aware datetime from an ISO 8601 string (``Z`` accepted), or ``None``.

    Naive times are taken as UTC, since the API documents ``expires_at`` in UTC.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    from datetime import datetime, timezone

    value = text.strip()
    if value[-1:] in "zZ":
        value = value[:-1] + "+00:00"  # fromisoformat() before Python 3.11 does not read "Z"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def parse_http_date(text: str | None) -> datetime | None:
    """An aware datetime from an HTTP ``Date``/``Retry-After`` date, or ``None``."""
    if not text:
        return None
    from datetime import timezone
    from email.utils import parsedate_to_datetime

    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, read *without* verifying it (we only want ``exp``/``iat`` hints).

    Returns an empty dict for anything that is not a JWT with a JSON object payload.
    """
    import base64
    import binascii
    import json

    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _number(value: object) -> float | None:
    # bool is an int subclass, and "exp": true is not a time.
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # "exp": 10**400
        return None
    # NaN and infinities are not times either: inf - inf is NaN, which no clamp removes.
    return number if number - number == 0 else None


def token_lifetime(
    *, expires_at: object, date_header: str | None, token: str, sent_at: float
) -> float:
    """How long a freshly issued token lives, in seconds, measured without trusting clocks.

    ``expires_at`` is on the server's clock, so it is compared with the server's own ``Date``
    header rather than with ours; the JWT's ``exp - iat`` is server-clock too. Each usable
    estimate is taken and the shortest wins: a wrong answer errs towards refreshing early,
    never towards sending an expired token. Only when the server gives ``expires_at`` and nothing
    to compare it with is our own clock (*sent_at*) used, and then capped at
    :data:`DEFAULT_LIFETIME`. With no usable estimate, :data:`DEFAULT_LIFETIME`. The result is
    clamped to ``[0, MAX_LIFETIME]``.
    """
    estimates: list[float] = []
    server_now = parse_http_date(date_header)
    expiry = parse_iso8601(expires_at)
    claims = jwt_claims(token)
    exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
    try:
        if expiry is not None and server_now is not None:
            estimates.append((expiry - server_now).total_seconds() - _DATE_RESOLUTION)
        if exp is not None and iat is not None:
            estimates.append(exp - iat)
        elif exp is not None and server_now is not None:
            estimates.append(exp - server_now.timestamp() - _DATE_RESOLUTION)
        if not estimates and expiry is not None:
            local = expiry.timestamp() - sent_at
            estimates.append(min(local, DEFAULT_LIFETIME) if local > 0 else DEFAULT_LIFETIME)
    except (OverflowError, ValueError, OSError):  # absurd dates far outside datetime's range
        pass
    shortest = min(estimates, default=DEFAULT_LIFETIME)
    if shortest != shortest:  # NaN: min() and max() would pass it through
        return DEFAULT_LIFETIME
    return min(max(shortest, 0.0), MAX_LIFETIME)
