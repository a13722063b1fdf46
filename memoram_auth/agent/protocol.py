"""The agent's wire format, version 1: HTTP/1.1 over a Unix socket, one request per connection.

- ``GET /v1/token``: ``{"token", "expires_at", "token_type": "Bearer", "expires_in",
  "lifetime", "base_url", "key"}``. The first three are the seed's token response (what
  ``memoram-auth token --json`` prints); ``expires_in`` and ``lifetime`` (seconds) let a client
  keep the token exactly as long as the agent would; ``key`` is the key's fingerprint.
- ``POST /v1/token/rejected`` with ``{"token": "..."}``: the API answered 401 to that token.
  The agent drops it unless its current token already replaces it (compare-and-invalidate),
  and answers as ``GET /v1/token`` does, with a token obtained after the rejection.
- ``GET /v1/status``: ``{"version", "base_url", "key", "pid", "socket", "token":
  {"expires_at", "expires_in", "lifetime"} | null}``: the token the agent holds, if any
  (``lifetime`` in seconds, so a client can tell a token due for refresh from a fresh one);
  answered at once, without fetching a token; never the key, never a token.

A client may send ``Memoram-Base-URL``: the agent answers 421 if it serves another base URL,
so a client never receives another origin's token. Errors are ``{"error": message, "kind":
...}`` with 400 (a malformed or oversized request), 403 (another user), 404, 405, 421, 502
(the token endpoint refused or failed: ``kind`` and ``status`` say how), 503 (shutting down).

A leaf: no I/O, nothing but the token maths and the error tree.
"""

from __future__ import annotations

import time

from ..exceptions import (
    ConfigurationError,
    EndpointUnavailableError,
    KeyRejectedError,
    MalformedResponseError,
    MemoramAuthError,
    TokenRequestError,
)
from ..token import Token, is_header_safe

__all__ = [
    "BASE_URL_HEADER",
    "MAX_BODY",
    "MAX_HEADERS",
    "MAX_LINE",
    "MAX_RESPONSE",
    "REJECTED_PATH",
    "STATUS_PATH",
    "TOKEN_PATH",
    "VERSION",
    "error_body",
    "error_for",
    "kind_of",
    "parse_token",
    "token_body",
]

VERSION = 1
TOKEN_PATH = "/v1/token"  # noqa: S105 - a path, not a password
REJECTED_PATH = "/v1/token/rejected"
STATUS_PATH = "/v1/status"
#: A client's base URL: a mismatch is a 421, never another origin's token.
BASE_URL_HEADER = "Memoram-Base-URL"

#: Request limits: a longer line, more header lines or a larger body is a 400.
MAX_LINE = 4096
MAX_HEADERS = 32
MAX_BODY = 8192
#: What a client reads of an answer at most (a token is a few hundred bytes).
MAX_RESPONSE = 65536

#: Error kinds the agent relays, and the exception a client raises for each.
_KINDS: dict[str, type[MemoramAuthError]] = {
    "configuration": ConfigurationError,
    "key_rejected": KeyRejectedError,
    "unavailable": EndpointUnavailableError,
    "malformed": MalformedResponseError,
}


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def token_body(token: Token, *, base_url: str, key: str, now: float) -> bytes:
    """The answer to ``GET /v1/token``."""
    import json  # here and below: not on the command line's path until it parses

    return json.dumps(
        {
            "token": token.value,
            "expires_at": _utc(token.expires_at),
            "token_type": "Bearer",
            "expires_in": round(token.expires_at - now, 3),
            "lifetime": round(token.lifetime, 3),
            "base_url": base_url,
            "key": key,
        }
    ).encode()


def parse_token(body: bytes, *, now: float) -> tuple[Token, str, str]:
    """(token, base URL, key fingerprint) from a ``GET /v1/token`` answer.

    The token's expiry is placed on this process's clock from ``expires_in``, and its
    lifetime kept, so the client's refresh windows are the agent's.

    Raises:
        ValueError: not such an answer (the caller names the agent in its error).
    """
    import json

    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    value, base_url, key = data.get("token"), data.get("base_url"), data.get("key")
    expires_in, lifetime = data.get("expires_in"), data.get("lifetime")
    if not isinstance(value, str) or not value or not is_header_safe(value):
        raise ValueError("no usable token")
    if data.get("token_type") != "Bearer":
        raise ValueError("not a Bearer token")
    if not isinstance(base_url, str) or not isinstance(key, str):
        raise ValueError("no base_url or key")
    if not (_number(expires_in) and _number(lifetime)):
        raise ValueError("no expires_in or lifetime")
    assert isinstance(expires_in, (int, float))  # noqa: S101 - for mypy: _number() checked it
    assert isinstance(lifetime, (int, float))  # noqa: S101 - for mypy: _number() checked it
    if not 0 < expires_in <= lifetime <= 86_400:
        raise ValueError("an expiry out of range")
    expires_at = now + expires_in
    return Token(value, expires_at - lifetime, expires_at), base_url, key


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def error_body(message: str, kind: str = "request", status: int | None = None) -> bytes:
    """An error answer: ``{"error": message, "kind": kind[, "status": upstream status]}``."""
    import json

    data: dict[str, object] = {"error": message, "kind": kind}
    if status is not None:
        data["status"] = status
    return json.dumps(data).encode()


def kind_of(error: MemoramAuthError) -> str:
    """The ``kind`` an agent reports for an error of its provider."""
    return next((kind for kind, cls in _KINDS.items() if isinstance(error, cls)), "error")


def error_for(body: bytes, prefix: str) -> MemoramAuthError:
    """The exception a client raises for an agent's error answer; *prefix* names the agent."""
    import json

    try:
        data = json.loads(body)
        message, kind = str(data["error"]), str(data.get("kind", "error"))
        status = data.get("status")
    except (ValueError, KeyError, TypeError):
        return MalformedResponseError(f"{prefix} answered an error that is not JSON")
    cls = _KINDS.get(kind, MemoramAuthError)
    text = f"{prefix}: {message}"
    if issubclass(cls, TokenRequestError):
        return cls(text, status=status if isinstance(status, int) else None)
    return cls(text)
