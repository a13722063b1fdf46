"""The exceptions memoram-auth raises. Everything derives from one root::

    MemoramAuthError
     ├── ConfigurationError          no key, a malformed key, a bad or insecure base URL
     └── TokenRequestError           exchanging the API key for a token failed
          ├── KeyRejectedError        400/401/403: the endpoint refused the key or the request
          ├── EndpointUnavailableError  connection errors, timeouts, 429/5xx after the retries
          └── MalformedResponseError  an answer that is not a usable token (wrong status, not
                                      JSON, wrong shape, not a Bearer token)

Degraded but working situations (a damaged cache file, an unwritable cache directory, a lock
wait that timed out) are reported as :class:`MemoramAuthWarning`, not raised.

Messages say what happened and what to do. They never contain the API key or a token: where a
hint helps they name the key by its fingerprint (see :func:`memoram_auth.keys.fingerprint`).
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "EndpointUnavailableError",
    "KeyRejectedError",
    "MalformedResponseError",
    "MemoramAuthError",
    "MemoramAuthWarning",
    "TokenRequestError",
]


class MemoramAuthError(Exception):
    """Root of every error memoram-auth raises."""


class ConfigurationError(MemoramAuthError):
    """The settings cannot work: a missing or malformed key, a bad or insecure base URL."""


class TokenRequestError(MemoramAuthError):
    """Exchanging the API key for a token failed.

    ``status`` is the HTTP status of the last answer, or ``None`` when there was none
    (connection error, timeout).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KeyRejectedError(TokenRequestError):
    """The token endpoint refused the API key or the request (400, 401 or 403); not retried."""


class EndpointUnavailableError(TokenRequestError):
    """The token endpoint could not be reached or kept failing (network, 429, 5xx) after retries."""


class MalformedResponseError(TokenRequestError):
    """The token endpoint answered, but not with a usable Bearer token."""


class MemoramAuthWarning(UserWarning):
    """Something is degraded but still works, e.g. the disk cache fell back to memory."""
