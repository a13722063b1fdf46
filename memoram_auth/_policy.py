"""How hard the token exchange tries: attempts, timeouts, backoff."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["RetryPolicy"]


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
