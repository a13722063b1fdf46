"""Where tokens are kept between processes: one small text file per (base URL, key).

The file cache is safe to share between any number of processes:

- Files are written atomically (a temporary file in the same directory, fsync, ``os.replace``),
  so a reader never sees half a file and readers need no lock.
- Writers serialize on a sibling ``.lock`` file that is never deleted: deleting a lock file
  lets a late-comer lock a new inode while an old holder still holds the old one.
- The lock is a kernel ``flock``, so a holder killed with SIGKILL releases it as it dies.
- The directory is created 0700 and files are 0600; the name of a file is a one-way digest of
  the base URL and key, and the API key itself is never written.
- Nothing on disk is trusted that this user did not write where only this user can write:
  the directory must be a real directory (not a symlink) owned by this user without
  group or world write bits (loose bits on our own directory are tightened to 0700, with one
  warning). A token file is opened with ``O_NOFOLLOW | O_NONBLOCK`` and used only if it is a
  regular file of this user, private (``mode & 0o077 == 0``) and at most 64 KiB, written for
  this base URL and key, with finite times not in the future. A lock file that is a symlink or
  not this user's regular file is never opened.
- Damage is a miss: a corrupt, truncated, unreadable, untrusted or foreign-version file is
  ignored (with a warning that does not show its contents) and replaced by the next write. A
  directory that cannot be created, written or trusted, or a full disk, turns the cache into a
  memory-only one, with one warning.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import time
import warnings

from ._env import CACHE_DIR_ENV
from .exceptions import MemoramAuthWarning
from .keys import sha256_hex
from .token import Token, is_header_safe

__all__ = ["CACHE_HEADER", "CachedEntry", "FileCache", "MemoryOnlyCache", "slot_for"]

#: The first line of every cache file; another first line is another format (or damage).
#: Plain "name: value" lines rather than JSON: the command line reads this file on every
#: call, and importing json would cost it more than reading and checking the file does.
CACHE_HEADER = "memoram-auth token cache v1"

#: A token file is a few hundred bytes. Anything bigger is not ours: reading a 2 GiB sparse
#: file (or a device) would grow a process to ~4 GB.
MAX_FILE_SIZE = 64 * 1024

#: How far ahead of our clock a cached token may say it was obtained. Another process's clock
#: read or an NTP step of a few seconds is fine; more means our clock moved back (and the token
#: may be long dead: the CLI kept printing one the API rejected) or the file is not genuine.
MAX_CLOCK_AHEAD = 60.0

# O_NOFOLLOW: a symlink in place of a file is refused, not followed (to /dev/zero, or another
# user's file). O_NONBLOCK: opening a FIFO planted in place of a file returns at once instead
# of hanging every caller until a writer shows up. Windows has neither, nor the attack.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_CREATE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
#: Ownership and modes mean something only where there are uids (not on Windows).
_POSIX = hasattr(os, "geteuid")

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

#: Warnings already given in this process, by what they are about: a directory and its
#: problem, or a damaged file's path. Every auth object with its own settings (another
#: expires_in, another policy) builds its own FileCache for the same directory, and each
#: would warn again, whatever the warnings filters say.
#: set.add is atomic, so this needs no lock; a path leaves it when a new token replaces the
#: file, and the next damage there is reported again.
_warned: set[str] = set()


def _warn_once(about: str, message: str, stacklevel: int) -> None:
    if about in _warned:
        return
    _warned.add(about)
    warnings.warn(f"memoram-auth: {message}", MemoramAuthWarning, stacklevel=stacklevel + 1)


def slot_for(base_url: str, api_key: str, expires_in: int | None = None) -> str:
    """The cache slot of a (base URL, key, asked lifetime): a one-way digest, safe as a name.

    The lifetime a caller asks for (``expires_in``) is part of the slot: one object asking
    for 60 s tokens and another asking for an hour, for the same key, would otherwise get each
    other's token, in one process or across processes. ``None`` (the server's default)
    keeps the slot of the versions before, which the command line also uses.
    """
    if expires_in is None:
        return sha256_hex(f"{base_url}\n{api_key}")[:32]
    return sha256_hex(f"{base_url}\n{api_key}\nexpires_in={int(expires_in)}")[:32]


class CachedEntry:
    """One token file as :meth:`FileCache.entries` found it: what it says it is for, no key."""

    __slots__ = ("base_url", "key_fingerprint", "path", "slot", "token")

    def __init__(self, slot: str, path: str, token: Token, fields: dict[str, str]) -> None:
        self.slot = slot
        self.path = path
        self.token = token
        self.base_url = fields.get("base_url", "")
        self.key_fingerprint = fields.get("key", "")

    def __repr__(self) -> str:
        # Never the token: this is what `status --all` shows.
        return (
            f"CachedEntry({self.slot!r}, base_url={self.base_url!r}, "
            f"key={self.key_fingerprint!r}, expires_at={self.token.expires_at!r})"
        )


class MemoryOnlyCache:
    """No disk: each process keeps its token in memory only (``cache_dir=False``)."""

    def load(
        self, slot: str, *, base_url: str | None = None, key_fingerprint: str | None = None
    ) -> Token | None:
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
    if token.replaces:
        # The digest of the rejected token this one replaces; absent otherwise. Older readers
        # ignore the line (and treat the token as unmarked: one token request more after a
        # 401 at worst). Versions before wrote "after_rejection: 1", a yes/no that did not say
        # which rejection; read back as unmarked.
        lines.append(f"replaces: {token.replaces}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _decode(raw: bytes) -> tuple[Token, dict[str, str]] | None:
    """The token in a cache file's bytes and all its fields, or ``None`` if they are not valid."""
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
    # Infinite times would pass the checks below ("inf <= inf") and crash `status`.
    if not (math.isfinite(obtained_at) and math.isfinite(expires_at)):
        return None
    # "not <=" also refuses NaN; no token lives two days (MAX_LIFETIME is one).
    if not obtained_at <= expires_at or expires_at - obtained_at > 2 * 86_400:
        return None
    replaces = fields.get("replaces")
    token = Token(
        value,
        obtained_at=obtained_at,
        expires_at=expires_at,
        # A digest is 32 hex digits; anything else is no mark at all (damage costs a token
        # request, never a token taken for a replacement it is not).
        replaces=replaces if replaces is not None and _is_slot(replaces) else None,
    )
    return token, fields


def _file_problem(info: os.stat_result) -> str | None:
    """Why an opened token file is not to be trusted, or ``None`` if it may be read."""
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if _POSIX and info.st_uid != os.geteuid():
        return "owned by another user"
    if _POSIX and info.st_mode & 0o077:
        return "readable or writable by other users"
    if info.st_size > MAX_FILE_SIZE:
        return f"larger than {MAX_FILE_SIZE // 1024} KiB"
    return None


def _read_capped(fd: int) -> bytes:
    # At most one byte past the cap, however the file grows or lies about its size.
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_FILE_SIZE:
        chunk = os.read(fd, MAX_FILE_SIZE + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


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

    def _disable(self, reason: str, hint: str | None = None) -> None:
        if self._state.setdefault("disabled", reason) is not reason:
            return  # another thread got here first and warned
        hint = hint or (
            f"Fix the directory's permissions or free space, or choose another with {CACHE_DIR_ENV}"
        )
        _warn_once(
            f"{self.directory}\n{reason}",
            f"cannot use the token cache in {self.directory} ({reason}); "
            f"keeping tokens in memory only. {hint}",
            stacklevel=3,
        )

    def _ensure_directory(self, *, create: bool = True) -> bool:
        """True once the directory is there and trusted; checked once per cache object.

        With ``create=False`` (reading) a missing directory is just a miss: nothing is made.
        """
        if self._ready:
            return True
        if self.disabled:
            return False
        try:
            if create:
                # 0700: the files hold bearer tokens. An existing directory is checked below.
                os.makedirs(self.directory, mode=0o700, exist_ok=True)
            info = os.lstat(self.directory)
        except FileNotFoundError:
            if not create:
                return False
            self._disable("cannot create the directory: No such file or directory")
            return False
        except OSError as exc:
            self._disable(f"cannot create or write the directory: {exc.strerror or exc}")
            return False
        if not self._trust_directory(info):
            return False
        if not os.access(self.directory, os.W_OK | os.X_OK):
            self._disable("cannot create or write the directory: Permission denied")
            return False
        self._ready = True
        return True

    def _trust_directory(self, info: os.stat_result) -> bool:
        # lstat, not stat: a symlinked directory is someone else's choice of where our tokens
        # go (or come from). Only this user may be able to write in it: whoever can, can plant
        # token files, lock-file symlinks or FIFOs.
        if stat.S_ISLNK(info.st_mode):
            self._disable("it is a symbolic link", "Point it at a real directory of your own.")
            return False
        if not stat.S_ISDIR(info.st_mode):
            self._disable("it is not a directory")
            return False
        if not _POSIX:
            return True
        if info.st_uid != os.geteuid():
            self._disable(
                "it is owned by another user",
                f"Choose a directory of your own with {CACHE_DIR_ENV}.",
            )
            return False
        mode = stat.S_IMODE(info.st_mode)
        if not mode & 0o022:
            return True
        if mode & stat.S_ISVTX:
            # Sticky and writable by others: a shared directory like /tmp. Ours to use only if
            # we took it over, which would break everyone else's use of it.
            self._disable(
                "it is a shared directory, writable by other users",
                f"Choose a private directory with {CACHE_DIR_ENV}.",
            )
            return False
        try:
            self._tighten()
        except OSError as exc:
            self._disable(f"it is writable by other users and cannot be made private: {exc}")
            return False
        _warn_once(
            f"{self.directory}\ntightened",
            f"the token cache directory {self.directory} was writable by other "
            f"users (mode {mode:04o}); made it private (0700)",
            stacklevel=4,
        )
        return True

    def _tighten(self) -> None:
        # Through a descriptor opened without following links, and checked again: the path
        # could have been swapped for a symlink since the lstat.
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.directory, flags)
        try:
            info = os.fstat(fd)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                raise PermissionError(1, "it changed while it was checked")
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)

    def _report(self, slot: str, message: str) -> None:
        # One warning per untrusted or damaged file, not one per read, nor one per cache
        # object (see _warned); never its contents.
        _warn_once(self.path(slot), message, stacklevel=3)

    def _read(self, slot: str) -> bytes | None:
        path = self.path(slot)
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            # ELOOP: a symlink in place of the file (O_NOFOLLOW).
            why = "a symbolic link" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
            self._report(
                slot,
                f"cannot read the cached token {os.path.basename(path)} ({why}); treating it "
                "as missing, the next token replaces it",
            )
            return None
        try:
            problem = _file_problem(os.fstat(fd))
            raw = b"" if problem else _read_capped(fd)
        except OSError as exc:
            problem = exc.strerror or str(exc)
        finally:
            os.close(fd)
        if problem is None and len(raw) > MAX_FILE_SIZE:
            problem = f"larger than {MAX_FILE_SIZE // 1024} KiB"
        if problem is not None:
            self._report(
                slot,
                f"cannot read the cached token {os.path.basename(path)} ({problem}); not "
                "trusting it, treating it as missing: the next token replaces it",
            )
            return None
        return raw

    def load(
        self, slot: str, *, base_url: str | None = None, key_fingerprint: str | None = None
    ) -> Token | None:
        """The token in *slot*, or ``None`` (missing, damaged, untrusted: all misses).

        *base_url* and *key_fingerprint*, when given, must be the ones the file was written
        for: a file copied or planted under another slot's name is a miss.
        """
        if not self._ensure_directory(create=False):
            return None
        raw = self._read(slot)
        if raw is None:
            return None
        path = self.path(slot)
        decoded = _decode(raw)
        if decoded is None:
            self._report(
                slot,
                f"the cached token file {path} is damaged or from another version; ignoring "
                "it, the next token replaces it",
            )
            return None
        token, fields = decoded
        if (base_url is not None and fields.get("base_url") != base_url) or (
            key_fingerprint is not None and fields.get("key") != key_fingerprint
        ):
            self._report(
                slot,
                f"the cached token file {path} was written for another base URL or key; "
                "ignoring it, the next token replaces it",
            )
            return None
        if token.obtained_at > time.time() + MAX_CLOCK_AHEAD:
            self._report(
                slot,
                f"the cached token file {path} says it was obtained in the future (did the "
                "clock move back?); ignoring it, the next token replaces it",
            )
            return None
        return token

    def entries(self) -> list[CachedEntry]:
        """Every token file in the directory that :meth:`load` would read, in slot order.

        The same checks as :meth:`load` (a trusted directory, private regular files of this
        user, well-formed, not obtained in the future); the base URL and key they were written
        for are as the files say, since without the key a slot cannot be recomputed. For
        ``memoram-auth status --all``; nothing is created.
        """
        if not self._ensure_directory(create=False):
            return []
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return []
        found = []
        for name in names:
            slot = name[:-6]
            if not (name.endswith(".token") and _is_slot(slot)):
                continue
            raw = self._read(slot)
            decoded = None if raw is None else _decode(raw)
            if decoded is None:
                continue  # missing by now, untrusted (reported by _read) or damaged
            token, fields = decoded
            if token.obtained_at <= time.time() + MAX_CLOCK_AHEAD:
                found.append(CachedEntry(slot, self.path(slot), token, fields))
        return found

    def store(self, slot: str, token: Token, *, base_url: str, key_fingerprint: str) -> None:
        if not self._ensure_directory():
            return
        data = _encode(token, base_url=base_url, key_fingerprint=key_fingerprint)
        _warned.discard(self.path(slot))  # a damaged file is about to be replaced
        temp = None
        try:
            # mkstemp creates the file 0600 with O_EXCL; same directory so os.replace is an
            # atomic rename, which replaces whatever is at the path (a symlink, a FIFO) itself
            # and never opens it.
            import tempfile

            fd, temp = tempfile.mkstemp(prefix=f".{slot}.", suffix=".tmp", dir=self.directory)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path(slot))
            temp = None
        except OSError as exc:
            self._disable(f"cannot write a token file: {exc.strerror or exc}")
        finally:
            if temp is not None:
                _unlink_quietly(temp)

    def delete(self, slot: str) -> None:
        _unlink_quietly(self.path(slot))

    def clear_all(self) -> int:
        """Remove every cached token in the directory; returns how many. Lock files stay.

        Only names this library creates are touched (``<32 hex>.token`` and its own
        ``.<32 hex>.*.tmp`` files): the directory may be one the user named, with their own
        ``notes.tmp`` or ``session.token`` in it.
        """
        try:
            names = os.listdir(self.directory)
        except OSError:
            return 0
        removed = 0
        for name in names:
            token = _is_slot(name[:-6]) and name.endswith(".token")
            temp = name.startswith(".") and name.endswith(".tmp") and _is_slot(name[1:33])
            if (token or (temp and name[33:34] == ".")) and _unlink_quietly(
                os.path.join(self.directory, name)
            ):
                removed += token
        return removed

    def lock(self, slot: str, timeout: float) -> _SlotLock:
        return _SlotLock(self, slot, timeout)


def _is_slot(text: str) -> bool:
    """True for what :func:`slot_for` makes: 32 lower-case hex digits."""
    return len(text) == 32 and all(char in "0123456789abcdef" for char in text)


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
        mode = self._lock_file_mode() if self._cache._ensure_directory() else None
        if mode is None:
            return False
        import filelock

        # The file's own mode: filelock before 4 fchmod-s the lock file to the mode it is
        # given, and a lock file we did not just create is not ours to change.
        # thread_local=False: under an event loop the lock is taken in a worker thread and may
        # be released from another (the provider's steps, see _steps.py); a thread-local
        # filelock would then never release the flock.
        # Kept after release: unlinking lets a late-comer lock a fresh inode (see docstring).
        # Passed as a mapping because filelock < 4 (3.19.1 is the floor on Python 3.9) has no
        # such parameter, so a keyword would not type-check against it.
        keep: dict[str, Any] = {"preserve_lock_file": True}
        try:
            lock = filelock.FileLock(self._path, mode=mode, thread_local=False, **keep)
        except TypeError:  # filelock < 4 has no such option, and never deletes anyway
            lock = filelock.FileLock(self._path, mode=mode, thread_local=False)
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
            self._cache._disable(f"cannot lock a token file: {exc.strerror or exc}")
            return False
        self._held = lock
        return True

    def _lock_file_mode(self) -> int | None:
        """The mode of the slot's lock file once it is known to be ours, else ``None``."""
        # Not left to the lock library alone: before 3.20.1 filelock opened lock files without
        # O_NOFOLLOW and with O_TRUNC, and a symlink planted at <slot>.lock truncated the
        # victim's ~/.bashrc and made it 0600. So the file is created here, private
        # and without following links, and an existing one is used only if it is this user's
        # regular file; the lock library then opens a file that is known to be ours.
        try:
            os.close(os.open(self._path, _CREATE_FLAGS, 0o600))
        except FileExistsError:
            pass  # created earlier (it is never deleted), or planted: checked below
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                self._cache._disable(f"cannot create a lock file: {exc.strerror or exc}")
                return None
        try:
            info = os.lstat(self._path)
        except OSError as exc:
            self._cache._disable(f"cannot check a lock file: {exc.strerror or exc}")
            return None
        if stat.S_ISLNK(info.st_mode):
            problem = "is a symbolic link"
        elif not stat.S_ISREG(info.st_mode):
            problem = "is not a regular file"
        elif _POSIX and info.st_uid != os.geteuid():
            problem = "is owned by another user"
        else:
            return stat.S_IMODE(info.st_mode)
        self._cache._disable(
            f"the lock file {os.path.basename(self._path)} {problem}",
            "Someone else wrote in the cache directory; remove the file, or choose another "
            f"directory with {CACHE_DIR_ENV}.",
        )
        return None

    def __exit__(self, *exc_info: object) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.release()
