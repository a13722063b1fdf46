"""Where tokens are kept between processes: one small text file per (base URL, key).

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

import os
import warnings

from ._env import CACHE_DIR_ENV
from .exceptions import MemoramAuthWarning
from .keys import sha256_hex
from .token import Token, is_header_safe

__all__ = ["CACHE_HEADER", "FileCache", "MemoryOnlyCache", "slot_for"]

#: The first line of every cache file; another first line is another format (or damage).
#: Plain "name: value" lines rather than JSON: the command line reads this file on every
#: call, and importing json would cost it more than reading and checking the file does.
CACHE_HEADER = "memoram-auth token cache v1"

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any


def slot_for(base_url: str, api_key: str) -> str:
    """The cache slot of a (base URL, key) pair: a one-way digest, safe as a file name."""
    return sha256_hex(f"{base_url}\n{api_key}")[:32]


class MemoryOnlyCache:
    """No disk: each process keeps its token in memory only (``cache_dir=False``)."""

    def load(self, slot: str) -> Token | None:
        return None

    def store(self, slot: str, token: Token, *, base_url: str, key_fingerprint: str) -> None:
        return None

    def delete(self, slot: str) -> None:
        return None

    def lock(self, slot: str, timeout: float) -> _NoLock:
        return _NoLock()

    def __repr__(self) -> str:
        return "MemoryOnlyCache()"


def _encode(token: Token, *, base_url: str, key_fingerprint: str) -> bytes:
    """A cache file's bytes: a header line, then one ``name: value`` line per field."""
    lines = [
        CACHE_HEADER,
        f"base_url: {base_url}",
        f"key: {key_fingerprint}",
        f"obtained_at: {token.obtained_at!r}",
        f"expires_at: {token.expires_at!r}",
        f"token: {token.value}",
    ]
    if token.after_rejection:
        lines.append("after_rejection: 1")  # absent otherwise; older readers ignore it
    return ("\n".join(lines) + "\n").encode("utf-8")


def _decode(raw: bytes) -> Token | None:
    """The token in a cache file's bytes, or ``None`` if they are not a valid entry."""
    try:
        header, *lines = raw.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return None
    if header != CACHE_HEADER:
        return None  # empty, damaged, or written by another version
    fields = dict(line.partition(": ")[::2] for line in lines if line)
    value = fields.get("token", "")
    if not is_header_safe(value):
        return None
    try:
        obtained_at, expires_at = float(fields["obtained_at"]), float(fields["expires_at"])
    except (KeyError, ValueError):
        return None
    # "not <=" also refuses NaN; no token lives two days (MAX_LIFETIME is one).
    if not obtained_at <= expires_at or expires_at - obtained_at > 2 * 86_400:
        return None
    return Token(
        value,
        obtained_at=obtained_at,
        expires_at=expires_at,
        after_rejection=fields.get("after_rejection") == "1",
    )


class FileCache:
    """Tokens in ``directory``, a small text file per slot, written atomically, flock-locked.

    Never raises for I/O problems: see the module docstring.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        # Strings and os.path rather than pathlib: importing pathlib costs the command line
        # about as much as all of this module.
        self.directory = os.path.expanduser(os.fspath(directory))
        # {"disabled": reason} once the cache falls back to memory. dict.setdefault is atomic,
        # which makes the warning once-only without a lock (and without importing threading).
        self._state: dict[str, str] = {}
        self._ready = False
        # Slots whose damage was reported: one warning per damaged file, not one per read.
        self._reported: set[str] = set()

    def __repr__(self) -> str:
        reason = self._state.get("disabled")
        state = f", memory-only: {reason}" if reason else ""
        return f"FileCache({self.directory!r}{state})"

    @property
    def disabled(self) -> bool:
        """True once the cache has fallen back to memory only."""
        return "disabled" in self._state

    def path(self, slot: str) -> str:
        """The file that holds *slot*'s token."""
        return os.path.join(self.directory, f"{slot}.token")

    def _disable(self, what: str, exc: OSError) -> None:
        reason = f"{what}: {exc.strerror or exc}"
        if self._state.setdefault("disabled", reason) is not reason:
            return  # another thread got here first and warned
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
        if token is None and slot not in self._reported:
            self._reported.add(slot)
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
        data = _encode(token, base_url=base_url, key_fingerprint=key_fingerprint)
        self._reported.discard(slot)  # a damaged file is about to be replaced
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
                _unlink_quietly(temp)

    def delete(self, slot: str) -> None:
        _unlink_quietly(self.path(slot))

    def clear_all(self) -> int:
        """Remove every cached token in the directory; returns how many. Lock files stay."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return 0
        removed = 0
        for name in names:
            if name.endswith((".token", ".tmp")):
                gone = _unlink_quietly(os.path.join(self.directory, name))
                removed += gone and name.endswith(".token")
        return removed

    def lock(self, slot: str, timeout: float) -> _SlotLock:
        return _SlotLock(self, slot, timeout)


def _unlink_quietly(path: str) -> bool:
    # What contextlib.suppress(OSError) would do; contextlib is left out of start-up.
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


class _NoLock:
    """The lock of a memory-only cache: always had, nothing to hold."""

    def __enter__(self) -> bool:
        return True

    def __exit__(self, *exc_info: object) -> None:
        return None


class _SlotLock:
    """``with cache.lock(slot, timeout) as acquired``: the slot's lock file, held until exit.

    ``acquired`` is False when the wait timed out (warned) or locking is impossible (the cache
    falls back to memory): the caller goes on without the lock rather than never.
    """

    def __init__(self, cache: FileCache, slot: str, timeout: float) -> None:
        self._cache = cache
        self._path = os.path.join(cache.directory, f"{slot}.lock")
        self._timeout = timeout
        self._held: Any = None

    def __enter__(self) -> bool:
        if not self._cache._ensure_directory():
            return False
        import filelock

        # thread_local=False: under an event loop the lock is taken in a worker thread and may
        # be released from another (the provider's steps, see _steps.py); a thread-local
        # filelock would then never release the flock.
        try:
            # Kept after release: unlinking lets a late-comer lock a fresh inode (see docstring).
            lock = filelock.FileLock(
                self._path, mode=0o600, thread_local=False, preserve_lock_file=True
            )
        except TypeError:  # filelock < 4 has no such option, and never deletes anyway
            lock = filelock.FileLock(self._path, mode=0o600, thread_local=False)
        try:
            lock.acquire(timeout=self._timeout)
        except filelock.Timeout:
            warnings.warn(
                f"memoram-auth: waited {self._timeout:g} s for another process to finish "
                f"refreshing the token ({os.path.basename(self._path)}); fetching one anyway",
                MemoramAuthWarning,
                stacklevel=2,
            )
            return False
        except OSError as exc:
            self._cache._disable("cannot lock a token file", exc)
            return False
        self._held = lock
        return True

    def __exit__(self, *exc_info: object) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.release()
