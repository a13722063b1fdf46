"""memoram-auth: turn a Memoram API key into short-lived bearer tokens, invisibly.

Importing this package is cheap: it loads neither requests nor httpx. Names that need them are
resolved on first use (see ``__getattr__``).
"""

from __future__ import annotations

from ._version import __version__
from .exceptions import (
    ConfigurationError,
    EndpointUnavailableError,
    KeyRejectedError,
    MalformedResponseError,
    MemoramAuthError,
    MemoramAuthWarning,
    TokenRequestError,
)

__all__ = [
    "ConfigurationError",
    "EndpointUnavailableError",
    "KeyRejectedError",
    "MalformedResponseError",
    "MemoramAuthError",
    "MemoramAuthWarning",
    "TokenRequestError",
    "__version__",
]
