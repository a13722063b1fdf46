"""The circuit breaker: a Redis that fails is skipped, for 5 s doubling up to 60 s."""

from __future__ import annotations

import random
import threading
import time
import warnings
from collections.abc import Callable

from memoram_auth import plugins
from memoram_auth.exceptions import MemoramAuthWarning

__all__ = ["Breaker"]

# One warning per process, whatever the number of caches; dict.setdefault is atomic.
_warned_once: dict[str, object] = {}


class Breaker:
    """Closed: calls go through. A failure opens it for a period (jittered ±20 %, so a
    fleet that lost Redis together does not come back in lockstep); the first call after
    the period tries again, and closes it on success or opens it for twice as long.
    """

    def __init__(
        self,
        where: str,
        *,
        first: float = 5.0,
        longest: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = where
        self.first = first
        self.longest = longest
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until = 0.0
        self._period = 0.0  # 0 while closed

    @property
    def is_open(self) -> bool:
        return self._period > 0

    def allows(self) -> bool:
        """True if a call may go to Redis now."""
        return self._clock() >= self._open_until

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._period = self.first if self._period == 0 else min(self._period * 2, self.longest)
            retry_in = self._period * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto
            self._open_until = self._clock() + retry_in
        # The exception's text, not the URL's: redis-py's messages name host and port only.
        error = f"{type(exc).__name__}: {exc}"
        mine = object()
        if _warned_once.setdefault("warned", mine) is mine:
            warnings.warn(
                f"memoram-auth: the Redis token cache at {self.where} is unavailable ({error}); "
                f"using the local token cache, trying Redis again in {retry_in:.0f} s",
                MemoramAuthWarning,
                stacklevel=4,
            )
        plugins.notify(
            "memoram_auth_cache_unavailable", backend="redis", error=error, retry_in=retry_in
        )

    def succeeded(self) -> None:
        if self._period == 0:
            return
        with self._lock:
            was_open, self._period, self._open_until = self._period > 0, 0.0, 0.0
        if was_open:
            plugins.notify("memoram_auth_cache_recovered", backend="redis")


def _reset_for_tests() -> None:
    _warned_once.clear()
