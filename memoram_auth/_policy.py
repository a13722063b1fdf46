"""How hard the token exchange tries: attempts, timeouts, backoff."""

from __future__ import annotations

from typing import NamedTuple

from .exceptions import ConfigurationError

__all__ = ["RetryPolicy", "check_expires_in", "check_policy"]


class RetryPolicy(NamedTuple):
    """How hard to try. The defaults bound one exchange to about 30 seconds in all.

    Attributes:
        attempts: requests in all, the first included.
        timeout: seconds one attempt may take to connect or to wait for data.
        total_timeout: seconds the whole exchange may take, sleeps included.
        backoff: first delay; each retry doubles it, up to ``max_backoff``, and a random
            jitter of up to half the delay spreads out clients that failed together.
        retry_after_cap: the longest ``Retry-After`` we honour; longer ones are cut to this.
    """

    attempts: int = 3
    timeout: float = 10.0
    total_timeout: float = 30.0
    backoff: float = 0.5
    max_backoff: float = 8.0
    retry_after_cap: float = 20.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number *retry* (1 for the first retry)."""
        import random

        ceiling = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))  # noqa: S311 - jitter, not secrecy


def check_expires_in(expires_in: object) -> int | None:
    """*expires_in* if it is ``None`` or a positive ``int`` of seconds; checked when an auth
    object or provider is built, so a mistake shows before any network use.

    Raises:
        ConfigurationError: anything else (``0``, ``-1``, ``True``, ``"3600"``, ``3600.0``,
            a list: unchecked, some would fail only at the first request).
    """
    if expires_in is None or (
        isinstance(expires_in, int) and not isinstance(expires_in, bool) and expires_in > 0
    ):
        return expires_in
    shown = expires_in if isinstance(expires_in, int) else type(expires_in).__name__
    raise ConfigurationError(
        f"expires_in must be a positive whole number of seconds (an int) or None, not {shown}"
    )


def check_policy(policy: object) -> RetryPolicy | None:
    """*policy* if it is ``None`` or a :class:`RetryPolicy`.

    Raises:
        ConfigurationError: anything else (a dict or tuple would fail at the first request).
    """
    if policy is None or isinstance(policy, RetryPolicy):
        return policy
    raise ConfigurationError(
        f"policy must be a RetryPolicy (memoram_auth.RetryPolicy), not {type(policy).__name__}"
    )
