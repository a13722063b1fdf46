"""The emulator's state: keys, issued tokens, injected faults and counters, all behind one lock."""

from __future__ import annotations

import hashlib
import random
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import _jwt

__all__ = ["Counters", "Fault", "RecordedRequest", "State", "generate_api_key"]


def generate_api_key() -> str:
    """A key of the shape the API documents: ``mem_`` and 48 hex digits."""
    return "mem_" + secrets.token_hex(24)


@dataclass(frozen=True)
class Fault:
    """What the next token call does instead of answering normally.

    Attributes:
        status: answer with this status (and ``headers``/``body``); ``None`` answers normally,
            or with ``body`` under 200 when a body is given.
        headers: extra response headers, e.g. ``{"Retry-After": "1"}``.
        body: the raw response body, e.g. an HTML error page or broken JSON.
        delay: seconds to wait before answering (longer than the client's timeout = a timeout).
        close: drop the connection without answering.
    """

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay: float = 0.0
    close: bool = False


@dataclass
class Counters:
    """What the emulator has seen since start (or :meth:`State.reset_counters`)."""

    token_requests: int = 0
    tokens_issued: int = 0
    api_requests: int = 0
    unauthorized: int = 0


@dataclass(frozen=True)
class RecordedRequest:
    """One request as it arrived, for tests to inspect."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    client: str


class State:
    """Everything the emulator knows. Every public method is safe to call from any thread."""

    def __init__(
        self,
        api_keys: Iterable[str],
        *,
        max_lifetime: int,
        default_lifetime: int,
        clock_offset: float,
        token_delay: float,
        record_limit: int = 1000,
    ) -> None:
        self.lock = threading.Lock()
        self.api_keys: set[str] = set(api_keys)
        self.max_lifetime = max_lifetime
        self.default_lifetime = default_lifetime
        self.clock_offset = clock_offset
        self.token_delay = token_delay
        self.reject_all_tokens = False
        # Random failures: (probability, faults to pick from), for soak tests.
        self.flakiness: tuple[float, tuple[Fault, ...]] = (0.0, ())
        #: Every token issued, oldest first (for tests that look for leaks).
        self.issued_tokens: list[str] = []
        self.redirects: dict[str, tuple[int, str]] = {}
        self.counters = Counters()
        self.secret = secrets.token_bytes(32)
        self.requests: deque[RecordedRequest] = deque(maxlen=record_limit)
        self._faults: deque[Fault] = deque()
        self._issued: set[str] = set()
        self._revoked: set[str] = set()

    def now(self) -> float:
        """The server's clock: the local clock plus ``clock_offset``."""
        return time.time() + self.clock_offset

    def add_faults(self, fault: Fault, count: int) -> None:
        with self.lock:
            self._faults.extend([fault] * count)

    def next_fault(self) -> Fault | None:
        with self.lock:
            if self._faults:
                return self._faults.popleft()
            rate, choices = self.flakiness
            if rate and random.random() < rate:  # noqa: S311 - picking a fault to inject, not a secret - fault injection, not secrecy
                return random.choice(choices)  # noqa: S311 - picking a fault to inject, not a secret
            return None

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def record(self, request: RecordedRequest, *, token_call: bool) -> None:
        with self.lock:
            self.requests.append(request)
            if token_call:
                self.counters.token_requests += 1
            else:
                self.counters.api_requests += 1

    def count_unauthorized(self) -> None:
        with self.lock:
            self.counters.unauthorized += 1

    def reset_counters(self) -> None:
        with self.lock:
            self.counters = Counters()
            self.requests.clear()

    def issue(self, api_key: str, expires_in: int | None) -> dict[str, Any]:
        """Mint a token for *api_key*; returns the JSON answer of ``POST /auth/token``."""
        with self.lock:
            lifetime = min(expires_in or self.default_lifetime, self.max_lifetime)
            issued_at = int(self.now())
            jti = uuid.uuid4().hex
            claims = {
                "sub": "app_" + hashlib.sha256(api_key.encode()).hexdigest()[:16],
                "iat": issued_at,
                "exp": issued_at + lifetime,
                "jti": jti,
            }
            self._issued.add(jti)
            self.counters.tokens_issued += 1
        expires = datetime.fromtimestamp(issued_at + lifetime, tz=timezone.utc)
        token = _jwt.encode(claims, self.secret)
        with self.lock:
            self.issued_tokens.append(token)
        return {
            "token": token,
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "token_type": "Bearer",
        }

    def check(self, token: str) -> bool:
        """True if *token* was issued here, is unexpired on the server clock and not revoked."""
        claims = _jwt.decode(token, self.secret)
        if claims is None or self.reject_all_tokens:
            return False
        exp, jti = claims.get("exp"), claims.get("jti")
        if not isinstance(exp, int) or exp <= self.now():
            return False
        with self.lock:
            return jti in self._issued and jti not in self._revoked

    def reject_keys(self, api_key: str | None = None) -> int:
        """Stop accepting *api_key* (every key if ``None``); returns how many were accepted."""
        with self.lock:
            if api_key is None:
                count = len(self.api_keys)
                self.api_keys.clear()
                return count
            count = int(api_key in self.api_keys)
            self.api_keys.discard(api_key)
            return count

    def revoke_all(self) -> int:
        """Revoke every token issued so far; returns how many were live."""
        with self.lock:
            fresh = self._issued - self._revoked
            self._revoked |= self._issued
            return len(fresh)
