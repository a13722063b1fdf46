"""The background refresher: one daemon thread per process that refreshes tokens ahead of expiry.

A provider hands it a refresh when a request finds the token in its advisory window (see
:meth:`memoram_auth.core.provider.Provider.refresh_steps`); the request goes on with the
current token at once. So refreshing happens only while tokens are used: a process that stops
making calls hands over nothing, and its thread sleeps on an event, spending no quota.

The thread is started on the first hand-over, never joined (a daemon: interpreter exit does
not wait for a refresh under way) and started again in a child after ``os.fork()``, where
this module's lock, event and queue are new (a fork copies neither the thread nor a lock it
held in a usable state).
"""

from __future__ import annotations

import os
import threading
from typing import Protocol

from .. import _log


class Refreshes(Protocol):
    """What the refresher runs: :class:`memoram_auth.core.provider.Provider` is one."""

    def refresh_ahead(self) -> None:
        """Refresh ahead of expiry; handles its own errors."""


__all__ = ["Refreshes", "retry_delay", "submit"]

#: The first pause after a failed background refresh; each further failure doubles it, up to
#: :data:`MAX_RETRY_DELAY`.
FIRST_RETRY_DELAY = 5.0
MAX_RETRY_DELAY = 120.0

_lock = threading.Lock()
_wake = threading.Event()
_queue: list[Refreshes] = []
_thread: threading.Thread | None = None


def retry_delay(failures: int) -> float:
    """Seconds before the next refresh attempt after *failures* failed ones in a row.

    Doubles from :data:`FIRST_RETRY_DELAY` and adds up to half again at random, so processes
    that failed together (an endpoint that was down for all of them) come back spread out.
    """
    import random

    ceiling = min(MAX_RETRY_DELAY, FIRST_RETRY_DELAY * 2 ** max(0, min(failures - 1, 8)))
    return float(ceiling * (1 + random.random() / 2))  # noqa: S311 - jitter, not secrecy


def submit(provider: Refreshes) -> bool:
    """Queue *provider*'s refresh for the refresher thread, starting it if needed.

    Returns:
        False if no thread can be started (interpreter shutdown): refresh inline instead.
    """
    global _thread
    with _lock:
        if provider not in _queue:
            _queue.append(provider)
        if _thread is None or not _thread.is_alive():
            thread = threading.Thread(target=_serve, name="memoram-auth-refresher", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # "can't create new thread at interpreter shutdown"
                _queue.remove(provider)
                return False
            _thread = thread
    _wake.set()
    return True


def _serve() -> None:
    while True:
        _wake.wait()
        with _lock:
            _wake.clear()
            batch = _queue[:]
            del _queue[:]
        for provider in batch:
            try:
                provider.refresh_ahead()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any one failure
                # refresh_ahead() handles MemoramAuthError itself; this is a broken cache
                # plugin or a bug, and the requests still have their token.
                # Only the exception's type: its message could come from anywhere.
                _log.warning(
                    "the background token refresh failed unexpectedly (%s)", type(exc).__name__
                )


def _after_fork_in_child() -> None:
    # The parent's thread does not exist here, and its lock may have been held at fork time.
    global _lock, _wake, _thread
    _lock = threading.Lock()
    _wake = threading.Event()
    _thread = None
    del _queue[:]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
