"""The circuit breaker: a Redis that fails is skipped, for 5 s doubling up to 60 s."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import warnings
from collections.abc import Callable

from memoram_auth import plugins
from memoram_auth.exceptions import MemoramAuthWarning

from ._diagnose import Diagnosis, diagnose

_log = logging.getLogger("memoram_auth.redis")

__all__ = ["Breaker"]

# One warning per process, whatever the number of caches; dict.setdefault is atomic.
_warned_once: dict[str, object] = {}


class Breaker:
    """Closed: calls go through. A failure opens it for a period (jittered ±20 %, so a
    fleet that lost Redis together does not come back in lockstep); the first call after
    the period tries again, and closes it on success or opens it for twice as long.

    Every opening and closing is logged (``memoram_auth.redis``) and sent to the hooks; the
    one :class:`MemoramAuthWarning` per process says whether it is an outage or a setting or
    a right to fix (see ``_diagnose``). ``last`` is the latest failure's diagnosis and text.
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
        self.last: tuple[Diagnosis, str] | None = None

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
        error = _readable(f"{type(exc).__name__}: {exc}")
        found = diagnose(exc, tls=self.where.startswith("rediss:"))
        self.last = (found, error)
        detail = f"{error.rstrip('.')}; {found.advice}" if found.advice else error
        state = f"not usable ({found.kind}, not an outage)" if found.permanent else "unavailable"
        message = (
            f"memoram-auth: the Redis token cache at {self.where} is {state} ({detail}); "
            f"using the local token cache, trying Redis again in {retry_in:.0f} s"
        )
        _log.warning("%s", message)
        mine = object()
        if _warned_once.setdefault("warned", mine) is mine:
            warnings.warn(message, MemoramAuthWarning, stacklevel=4)
        reported = f"{found.kind}: {error}" if found.permanent else error
        plugins.notify(
            "memoram_auth_cache_unavailable", backend="redis", error=reported, retry_in=retry_in
        )

    def succeeded(self) -> None:
        if self._period == 0:
            return
        with self._lock:
            was_open, self._period, self._open_until = self._period > 0, 0.0, 0.0
        if was_open:
            _log.warning("memoram-auth: the Redis token cache at %s is back", self.where)
            plugins.notify("memoram_auth_cache_recovered", backend="redis")


# redis-py's MasterNotFoundError quotes each Sentinel client's repr, a kilobyte of options.
_SENTINEL_REPR = re.compile(r"<redis\.client\.Redis\(.*?host=([^,]+),port=(\d+).*?\)>(?= - )")


def _readable(error: str) -> str:
    """*error* with a Sentinel client's repr shortened to its address."""
    return _SENTINEL_REPR.sub(r"Sentinel \1:\2", error)


def _reset_for_tests() -> None:
    _warned_once.clear()
