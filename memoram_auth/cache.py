"""Where tokens are kept between processes: one small JSON file per (base URL, key).

The file cache is safe to share between any number of processes:

- Files are written atomically (a temporary file in the same directory, fsync, ``os.replace``),
  so a reader never sees half a file and readers need no lock.
- Writers serialize on a sibling ``.lock`` file that is never deleted: deleting a lock file
  lets a late-comer lock a new inode while an old holder still holds the old one.
- The lock is a kernel ``flock``, so a holder killed with SIGKILL releases it as it dies.
- The directory is created 0700 and files are 0600; the name of a file is a one-way digest of
  the base URL and key, and the API key itself is never written.
- Damage is a miss: a corrupt, truncated, unreadable or foreign-version file is ignored (with a
  warning that does not show its contents) and replaced by the next write. A directory that
  cannot be created or written, or a full disk, turns the cache into a memory-only one, with one
  warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any, Protocol, Union

from .exceptions import ConfigurationError, MemoramAuthWarning
from .token import Token, is_header_safe

__all__ = [
    "CACHE_BACKEND_ENV",
    "CACHE_DIR_ENV",
    "CACHE_FORMAT",
    "DISK_CACHE_ENV",
    "CacheDir",
    "FileCache",
    "MemoryOnlyCache",
    "TokenCache",
    "cache_identity",
    "default_cache",
    "default_directory",
    "slot_for",
]

logger = logging.getLogger("memoram_auth")

CACHE_DIR_ENV = "MEMORAM_AUTH_CACHE_DIR"
CACHE_BACKEND_ENV = "MEMORAM_AUTH_CACHE_BACKEND"
DISK_CACHE_ENV = "MEMORAM_AUTH_DISK_CACHE"
CACHE_FORMAT = 1
_OFF = frozenset({"0", "off", "false", "no"})

#: A ``cache_dir`` argument: a directory, ``False`` for memory only, ``None`` for the default.
CacheDir = Union[str, "os.PathLike[str]", bool, None]


def slot_for(base_url: str, api_key: str) -> str:
    """The cache slot of a (base URL, key) pair: a one-way digest, safe as a file name."""
    return hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()[:32]


class TokenCache(Protocol):
    """Storage shared by every process that uses the same key (see :class:`FileCache`)."""

    def load(self, slot: str) -> Token | None:
        """The stored token, or ``None`` (missing, damaged or unreadable: all misses)."""

    def store(self, slot: str, token: Token, *, base_url: str, key_fingerprint: str) -> None:
        """Keep *token*; failures degrade the cache, they never raise."""

    def delete(self, slot: str) -> None:
        """Forget the token in *slot*, if any."""

    def lock(self, slot: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        """Hold the slot's cross-process lock; the value is ``False`` if it could not be had."""


class MemoryOnlyCache:
    """No disk: each process keeps its token in memory only (``cache_dir=False``)."""

    def load(self, slot: str) -> Token | None:
        return None

    def store(self, slot: str, token: Token, *, base_url: str, key_fingerprint: str) -> None:
        return None

    def delete(self, slot: str) -> None:
        return None

    def lock(self, slot: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        return contextlib.nullcontext(True)

    def __repr__(self) -> str:
        return "MemoryOnlyCache()"


def _decode(raw: bytes) -> Token | None:
    """The token in a cache file's bytes, or ``None`` if they are not a valid entry."""
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        return None
    value, obtained, expires = data.get("token"), data.get("obtained_at"), data.get("expires_at")
    if not isinstance(value, str) or not value or not is_header_safe(value):
        return None
    times = [
        t for t in (obtained, expires) if isinstance(t, (int, float)) and not isinstance(t, bool)
    ]
    if len(times) != 2:
        return None
    obtained_at, expires_at = float(times[0]), float(times[1])
    # "not <=" also refuses NaN; no token lives two days (MAX_LIFETIME is one).
    if not obtained_at <= expires_at or expires_at - obtained_at > 2 * 86_400:
        return None
    return Token(value, obtained_at=obtained_at, expires_at=expires_at)


class FileCache:
    """Tokens in ``directory``, one JSON file per slot, written atomically and locked with flock.

    Never raises for I/O problems: see the module docstring.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        # Strings and os.path rather than pathlib: importing pathlib costs the command line
        # about as much as all of this module.
        self.directory = os.path.expanduser(os.fspath(directory))
        self._disabled_because: str | None = None
        self._ready = False
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        state = f", memory-only: {self._disabled_because}" if self._disabled_because else ""
        return f"FileCache({self.directory!r}{state})"

    @property
    def disabled(self) -> bool:
        """True once the cache has fallen back to memory only."""
        return self._disabled_because is not None

    def path(self, slot: str) -> str:
        """The file that holds *slot*'s token."""
        return os.path.join(self.directory, f"{slot}.json")

    def _disable(self, what: str, exc: OSError) -> None:
        with self._guard:
            if self._disabled_because is not None:
                return
            self._disabled_because = f"{what}: {exc.strerror or exc}"
        warnings.warn(
            f"memoram-auth: cannot use the token cache in {self.directory} ({what}: "
            f"{exc.strerror or exc}); keeping tokens in memory only. Fix the directory's "
            f"permissions or free space, or choose another with {CACHE_DIR_ENV}",
            MemoramAuthWarning,
            stacklevel=2,
        )

    def _ensure_directory(self) -> bool:
        if self._ready:
            return True
        if self.disabled:
            return False
        try:
            # 0700: the files hold bearer tokens. An existing directory is left as it is.
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            if not os.access(self.directory, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as exc:
            self._disable("cannot create or write the directory", exc)
            return False
        self._ready = True
        return True

    def load(self, slot: str) -> Token | None:
        if self.disabled:
            return None
        path = self.path(slot)
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            warnings.warn(
                f"memoram-auth: cannot read the cached token {os.path.basename(path)} "
                f"({exc.strerror or exc}); treating it as missing",
                MemoramAuthWarning,
                stacklevel=2,
            )
            return None
        token = _decode(raw)
        if token is None:
            # Never show the contents: they may hold a token.
            warnings.warn(
                f"memoram-auth: the cached token file {path} is damaged or from another "
                "version; ignoring it, the next token replaces it",
                MemoramAuthWarning,
                stacklevel=2,
            )
        return token

    def store(self, slot: str, token: Token, *, base_url: str, key_fingerprint: str) -> None:
        if not self._ensure_directory():
            return
        entry = {
            "format": CACHE_FORMAT,
            "base_url": base_url,
            "key": key_fingerprint,
            "token": token.value,
            "obtained_at": token.obtained_at,
            "expires_at": token.expires_at,
        }
        data = json.dumps(entry).encode()
        temp = None
        try:
            # mkstemp creates the file 0600; same directory so os.replace is an atomic rename.
            import tempfile

            fd, temp = tempfile.mkstemp(prefix=f".{slot}.", suffix=".tmp", dir=self.directory)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path(slot))
            temp = None
        except OSError as exc:
            self._disable("cannot write a token file", exc)
        finally:
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)

    def delete(self, slot: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path(slot))

    @contextlib.contextmanager
    def lock(self, slot: str, timeout: float) -> Iterator[bool]:
        if not self._ensure_directory():
            yield False
            return
        import filelock

        path = os.path.join(self.directory, f"{slot}.lock")
        try:
            # Kept after release: unlinking lets a late-comer lock a fresh inode (see docstring).
            lock = filelock.FileLock(path, mode=0o600, preserve_lock_file=True)
        except TypeError:  # filelock < 4 has no such option, and never deletes anyway
            lock = filelock.FileLock(path, mode=0o600)
        try:
            lock.acquire(timeout=timeout)
        except filelock.Timeout:
            warnings.warn(
                f"memoram-auth: waited {timeout:g} s for another process to finish refreshing "
                f"the token ({os.path.basename(path)}); fetching one anyway",
                MemoramAuthWarning,
                stacklevel=3,
            )
            yield False
            return
        except OSError as exc:
            self._disable("cannot lock a token file", exc)
            yield False
            return
        try:
            yield True
        finally:
            lock.release()


def _disk_cache_off() -> bool:
    return os.environ.get(DISK_CACHE_ENV, "").strip().lower() in _OFF


def default_directory() -> str:
    """``MEMORAM_AUTH_CACHE_DIR``, else the platform's user cache directory for memoram-auth."""
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    if configured:
        return os.path.expanduser(configured)
    import platformdirs

    return str(platformdirs.user_cache_dir("memoram-auth", appauthor=False))


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
    if name == "memory":
        return MemoryOnlyCache()
    if name == "file":
        return FileCache(directory or default_directory())
    from .plugins import cache_backends  # only a third-party backend needs the plugins

    backends = cache_backends()
    factory = backends.get(name)
    if factory is None:
        raise ConfigurationError(
            f"no installed plugin provides the cache backend {name!r} "
            f"(available: {', '.join(sorted(backends))}); check {CACHE_BACKEND_ENV}"
        )
    return factory(directory)
