"""memoram-auth: turn a Memoram API key into short-lived bearer tokens, invisibly.

Importing this package is cheap: it loads neither requests, httpx nor aiohttp. Names that need
them are resolved on first use (see ``__getattr__``).

The public API is this package's ``__all__`` and these documented modules; modules whose names
start with an underscore are internal and may change in any release:

- :mod:`memoram_auth.exceptions`: the error tree.
- :mod:`memoram_auth.provider`: ``get_provider``/``TokenProvider``, tokens for code that sets
  headers itself.
- :mod:`memoram_auth.exchange`: ``request_token``, one token request with retries.
- :mod:`memoram_auth.transport`: how a token request travels: ``NetworkSettings`` (TLS
  trust, client certificate, proxy), ``TokenRequest``/``RawResponse`` and the stdlib
  ``UrllibTransport``, for code that sends token requests its own way.
- :mod:`memoram_auth.token`: ``Token`` and its expiry maths.
- :mod:`memoram_auth.cache`: the built-in ``FileCache`` and ``MemoryOnlyCache``.
- :mod:`memoram_auth.hookspecs` and :mod:`memoram_auth.plugins`: writing and testing plugins.
- :mod:`memoram_auth.settings` and :mod:`memoram_auth.keys`: where the key and base URL come
  from, and a key's fingerprint, for plugins that need the same rules.
- :mod:`memoram_auth.emulator`: the local Memoram API emulator; :mod:`memoram_auth.cli`: the
  ``memoram-auth`` command; :mod:`memoram_auth.httpie_plugin` and
  :mod:`memoram_auth.pytest_plugin`: entry points for httpie and pytest.
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

    from ._policy import RetryPolicy
    from .adapters.aiohttp import MemoramMiddleware
    from .auth import MemoramAuth
    from .hookspecs import hookimpl

__all__ = [
    "ConfigurationError",
    "EndpointUnavailableError",
    "KeyRejectedError",
    "MalformedResponseError",
    "MemoramAuth",
    "MemoramAuthError",
    "MemoramAuthWarning",
    "MemoramMiddleware",
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
    if name == "MemoramMiddleware":  # aiohttp's client middleware: imports aiohttp
        try:
            from .adapters.aiohttp import MemoramMiddleware
        except ModuleNotFoundError as exc:
            if exc.name not in ("aiohttp", "yarl", "multidict"):
                raise
            raise ImportError(
                "MemoramMiddleware needs aiohttp >= 3.12.1: pip install 'memoram-auth[aiohttp]'"
            ) from exc
        return MemoramMiddleware
    if name == "RetryPolicy":  # a NamedTuple: importing typing would slow the command line
        from ._policy import RetryPolicy

        return RetryPolicy
    if name == "hookimpl":  # pluggy is needed only by code that writes plugins
        from .hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
