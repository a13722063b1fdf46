"""Choosing the token cache: which backend and directory the arguments and environment ask for.

Configuration, not storage: the stores themselves are in :mod:`memoram_auth.cache` (built-in)
or in plugins. Built-in backends are built without pluggy; only a third-party backend name
loads the plugins.
"""

from __future__ import annotations

import os

from .._env import CACHE_BACKEND_ENV, DISK_CACHE_ENV, OFF_VALUES
from ..exceptions import ConfigurationError
from ._defaults import BUILTIN_BACKENDS, default_directory, file_cache

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Union

    from ..cache import FileCache
    from ..hookspecs import TokenCache

    #: A ``cache_dir`` argument: a directory, ``False`` for memory only, ``None`` for default.
    CacheDir = Union[str, "os.PathLike[str]", bool, None]

__all__ = ["CacheDir", "cache_identity", "default_cache", "local_front"]


def _disk_cache_off() -> bool:
    return os.environ.get(DISK_CACHE_ENV, "").strip().lower() in OFF_VALUES


def _backend_name(cache_dir: CacheDir, backend: str | None) -> str:
    if cache_dir is False or (cache_dir is None and _disk_cache_off()):
        return "memory"
    return backend or os.environ.get(CACHE_BACKEND_ENV, "").strip() or "file"


def _given_directory(cache_dir: CacheDir) -> str | None:
    if isinstance(cache_dir, bool) or cache_dir is None:
        return None
    return os.path.expanduser(os.fspath(cache_dir))


def cache_identity(cache_dir: CacheDir = None, backend: str | None = None) -> tuple[str, str]:
    """What :func:`default_cache` would build, as a key: equal keys, equal caches. No I/O."""
    name = _backend_name(cache_dir, backend)
    directory = _given_directory(cache_dir)
    if name == "file":
        directory = directory or default_directory()
    return name, directory or ""


def default_cache(cache_dir: CacheDir = None, backend: str | None = None) -> TokenCache:
    """The cache for a ``cache_dir`` argument, following the environment where it is ``None``.

    ``False`` (or ``MEMORAM_AUTH_DISK_CACHE=0``) keeps tokens in memory only; a path uses that
    directory; otherwise ``MEMORAM_AUTH_CACHE_DIR``, else the platform's user cache directory
    (``~/.cache/memoram-auth`` on Linux). *backend* (or ``MEMORAM_AUTH_CACHE_BACKEND``) picks
    a cache backend that a plugin provides, instead of the built-in ``file``.

    Raises:
        ConfigurationError: no installed plugin provides the backend named.
    """
    name = _backend_name(cache_dir, backend)
    directory = _given_directory(cache_dir)
    builtin = BUILTIN_BACKENDS.get(name)
    if builtin is not None:
        return builtin(directory)
    from . import cache_backends  # only a third-party backend needs the plugins

    backends = cache_backends()
    factory = backends.get(name)
    if factory is None:
        raise ConfigurationError(
            f"no installed plugin provides the cache backend {name!r} "
            f"(available: {', '.join(sorted(backends))}); check {CACHE_BACKEND_ENV}"
        )
    return factory(directory)


def local_front(cache_dir: CacheDir = None, backend: str | None = None) -> FileCache | None:
    """The local cache file that may answer with a fresh token before :func:`default_cache` is
    built: the ``file`` backend's own, or the local file of a plugin's backend that declares
    itself in ``memoram_auth.file_in_front`` (see :func:`memoram_auth.plugins.file_in_front`).

    ``None`` for the memory backend and for a backend that must be asked itself. Loads no
    plugin; for a plugin's backend, reads the installed distributions' ``entry_points.txt``.
    """
    name = _backend_name(cache_dir, backend)
    if name != "file":
        from . import file_in_front

        if name in BUILTIN_BACKENDS or not file_in_front(name):
            return None
    return file_cache(_given_directory(cache_dir))
