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

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

    from .auth import MemoramAuth
    from .hookspecs import hookimpl
    from .policy import RetryPolicy

__all__ = [
    "ConfigurationError",
    "EndpointUnavailableError",
    "KeyRejectedError",
    "MalformedResponseError",
    "MemoramAuth",
    "MemoramAuthError",
    "MemoramAuthWarning",
    "RetryPolicy",
    "TokenRequestError",
    "__version__",
    "hookimpl",
]


def __getattr__(name: str) -> Any:  # noqa: ANN401 - module __getattr__ returns anything
    # MemoramAuth subclasses requests' and httpx's auth classes, so it imports both: load it
    # only when asked for, so that the CLI and `import memoram_auth` stay fast.
    if name == "MemoramAuth":
        from .auth import MemoramAuth

        return MemoramAuth
    if name == "RetryPolicy":  # a NamedTuple: importing typing would slow the command line
        from .policy import RetryPolicy

        return RetryPolicy
    if name == "hookimpl":  # pluggy is needed only by code that writes plugins
        from .hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
