"""The built-in behaviour, defined once and without pluggy: the key from the environment, the
default cache directory, and the file and memory cache backends.

``_hookimpls`` exposes these as ``@hookimpl`` functions, like any third-party plugin; the
fast paths that skip pluggy (see :mod:`memoram_auth.plugins`) call the same functions.
"""

from __future__ import annotations

import os
import sys

from .._env import API_KEY_ENV, CACHE_DIR_ENV
from ..cache import FileCache, MemoryOnlyCache
from ..exceptions import ConfigurationError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from ..hookspecs import CacheFactory, TokenCache

__all__ = [
    "BUILTIN_BACKENDS",
    "default_directory",
    "environment_api_key",
    "file_cache",
    "memory_cache",
]


def environment_api_key() -> str | None:
    """``MEMORAM_API_KEY``, or ``None`` when it is unset or empty."""
    return os.environ.get(API_KEY_ENV) or None


def default_directory() -> str:
    """``MEMORAM_AUTH_CACHE_DIR``, else the platform's user cache directory for memoram-auth.

    Raises:
        ConfigurationError: ``MEMORAM_AUTH_CACHE_DIR`` is a relative path.
    """
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    if configured:
        directory = os.path.expanduser(configured)
        if not os.path.isabs(directory):
            # Relative to whatever the current directory happens to be, a cache of bearer
            # tokens would appear under each project a command runs in.
            raise ConfigurationError(
                f"{CACHE_DIR_ENV} must be an absolute path (or start with ~/); a relative one "
                "would put the token cache under the current directory"
            )
        return directory
    if sys.platform.startswith("linux"):
        # What platformdirs answers on Linux (the XDG base directory spec), without importing
        # it: platformdirs alone would more than double the command line's start-up time.
        xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
        root = xdg if os.path.isabs(xdg) else os.path.expanduser("~/.cache")
        return os.path.join(root, "memoram-auth")
    import platformdirs

    return str(platformdirs.user_cache_dir("memoram-auth", appauthor=False))


def file_cache(cache_dir: str | None) -> FileCache:
    """The ``file`` backend: *cache_dir*, else :func:`default_directory`."""
    return FileCache(cache_dir or default_directory())


def memory_cache(cache_dir: str | None) -> TokenCache:
    """The ``memory`` backend: nothing shared between processes."""
    return MemoryOnlyCache()


#: The backends every installation has; plugins cannot replace them.
BUILTIN_BACKENDS: dict[str, CacheFactory] = {"file": file_cache, "memory": memory_cache}
