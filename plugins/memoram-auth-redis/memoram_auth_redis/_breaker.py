"""The circuit breaker: a Redis that fails is skipped, for 5 s doubling up to 60 s."""

from __future__ import annotations

import random
import re
import threading
import time
import warnings
from collections.abc import Callable

from memoram_auth import plugins
from memoram_auth.exceptions import MemoramAuthWarning

from ._config import URL_ENV

__all__ = ["Breaker"]

#: What to do about a TLS failure, by words in the error (redis-py's message quotes OpenSSL's).
_TLS_ADVICE = (
    (
        ("CERTIFICATE_VERIFY_FAILED",),
        f"if its certificate comes from a private CA, name the CA in {URL_ENV}: "
        "rediss://host:port/0?ssl_ca_certs=/path/to/ca.pem",
    ),
    (
        # TLS 1.3: the server's alert, or its hang-up before the client reads it.
        ("CERTIFICATE_REQUIRED", "EOF occurred in violation of protocol"),
        f"if it asks for a client certificate (tls-auth-clients), name one in {URL_ENV}: "
        "?ssl_certfile=/path/to/cert.pem&ssl_keyfile=/path/to/key.pem",
    ),
)

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
        error = _readable(f"{type(exc).__name__}: {exc}")
        mine = object()
        if _warned_once.setdefault("warned", mine) is mine:
            advice = _advice(exc)
            detail = f"{error.rstrip('.')}; {advice}" if advice else error
            warnings.warn(
                f"memoram-auth: the Redis token cache at {self.where} is unavailable ({detail}); "
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


# redis-py's MasterNotFoundError quotes each Sentinel client's repr, a kilobyte of options.
_SENTINEL_REPR = re.compile(r"<redis\.client\.Redis\(.*?host=([^,]+),port=(\d+).*?\)>(?= - )")


def _readable(error: str) -> str:
    """*error* with a Sentinel client's repr shortened to its address."""
    return _SENTINEL_REPR.sub(r"Sentinel \1:\2", error)


def _advice(exc: BaseException) -> str:
    """How to fix a TLS set-up that *exc*, or an error it was raised from, points at; or "".

    redis-py raises its ConnectionError while handling the ``ssl`` error and quotes it: the
    text is enough, and spares importing ``ssl`` here.
    """
    current: BaseException | None = exc
    for _ in range(10):  # a chain is short; a cycle must not hang a failing refresh
        if current is None:
            break
        text = str(current)
        for signs, advice in _TLS_ADVICE:
            if any(sign in text for sign in signs):
                return advice
        current = current.__cause__ or current.__context__
    return ""


def _reset_for_tests() -> None:
    _warned_once.clear()
