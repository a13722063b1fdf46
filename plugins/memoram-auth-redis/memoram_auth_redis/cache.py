"""``RedisTokenCache``: the file cache in front, Redis behind it for the whole fleet.

Layers, from the provider's point of view (it keeps the token in memory, so none of this is
on the per-request path):

- **load**: the local file cache first; a fresh token there that was not rejected needs no
  Redis (a warm restart). Otherwise one round trip reads Redis; a token found there is
  written through to the local file.
- **lock**: the local file lock (processes on one machine), then the fleet's lock in Redis
  (``SET NX PX`` with an owner value, renewed while held, released by compare-and-delete).
  Taking it also hands out a fencing generation.
- **store**: Redis by compare-and-set on the generation (a writer that lost its lock, or
  fetched before a rejection, cannot replace a newer token), then the local file, which never
  keeps a token Redis refused as fetched before a rejection.
- **reject**: compare-and-invalidate, locally and in Redis (see the provider's 401 rule).

Every Redis call goes through a circuit breaker: a failure or a timeout (0.3 s by default)
makes the cache local-only for a while, with one warning per process; requests never fail
because of Redis.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from memoram_auth.cache import FileCache
from memoram_auth.exceptions import ConfigurationError, MemoramAuthError, MemoramAuthWarning
from memoram_auth.settings import default_cache_directory as default_directory
from memoram_auth.token import Token, token_digest

from . import _scripts
from ._breaker import Breaker
from ._config import DEFAULT_PREFIX, STRICT_ENV, Settings, make_client, redact
from ._diagnose import OUTAGE, diagnose
from ._guard import Deadline, check_reply, cut

if TYPE_CHECKING:
    from ._seal import SlotKeys

__all__ = ["LEASE", "RedisTokenCache", "RedisUnavailableError"]

#: How long the fleet's lock outlives a holder that died (SIGKILL, a lost machine). The
#: holder renews it every third of this while it fetches, so a slow fetch keeps it.
LEASE = 3.0
#: Generations and rejection floors outlive any token (MAX_LIFETIME is one day).
_META_TTL_MS = 2 * 86_400 * 1000
#: A call's deadline, in seconds, unless three socket timeouts are longer (deadline_for).
DEFAULT_DEADLINE = 2.0
_FAILED = object()
_log = logging.getLogger("memoram_auth.redis")


class RedisUnavailableError(MemoramAuthError):
    """Strict mode: Redis is not usable, and the cache fails instead of degrading."""


class _Slot:
    """What the cache knows about one slot: its keys, and the tokens rejected in it."""

    __slots__ = ("_keys", "_prefix", "_secret", "floor", "floor_replaces", "rejected")

    def __init__(self, secret: bytes, prefix: str) -> None:
        self._secret = secret
        self._prefix = prefix
        self._keys: SlotKeys | None = None
        self.rejected: deque[str] = deque(maxlen=8)
        # The highest floor our rejections raised in Redis: a token stored under a generation
        # at or below it was fetched before one of them. Kept here because a restart of Redis
        # loses the floor there, and a late writer's token then gets in.
        self.floor = 0
        # The token_digest of the token whose rejection raised the floor last: below the floor,
        # only a replacement of that token is taken (it may have been stored before our
        # rejection reached Redis, by a machine that saw the same 401 first).
        self.floor_replaces: str | None = None

    @property
    def keys(self) -> SlotKeys:
        """Names and seals, made on the first Redis call: a process that finds a fresh token
        on its local file (the warm command line) loads no cryptography."""
        if self._keys is None:
            from ._seal import SlotKeys

            self._keys = SlotKeys(self._secret, self._prefix)
        return self._keys


class RedisTokenCache:
    """A :class:`memoram_auth.hookspecs.TokenCache` shared by a fleet through Redis or Valkey.

    Args:
        client: a ready sync redis-py client (``redis.Redis``, ``RedisCluster``, a Sentinel
            master). Its timeouts and retries are yours: give it short ones (see the README).
        client_factory: instead of *client*, a function that makes one on first use.
        local: the cache in front of Redis; default a :class:`FileCache` in *cache_dir*.
        cache_dir: the local cache's directory (default: memoram-auth's usual one).
        prefix: the start of every Redis key name (``memoram-auth:``), for ACL key patterns.
        where: how to name the server in messages (never with a password).
        breaker: the circuit breaker (tests pass one with short periods).
        deadline: seconds a Redis call may take in all, connecting included, however the
            server trickles its answer; past it the call fails into the breaker.
        strict: raise :class:`RedisUnavailableError` instead of degrading to the local cache
            (the breaker still spares Redis in between).
    """

    #: Where in the refresh-ahead window each process starts refreshing: at a random point in
    #: its first half (see TokenCache). Machines share the token's expiry through Redis; with
    #: Redis down when the window opens, each fetches its own, and without this all in the
    #: same second. With Redis up, the first to start refreshes for the fleet, as before.
    refresh_spread = 0.5

    def __init__(
        self,
        client: Any = None,  # noqa: ANN401 - any of redis-py's sync clients
        *,
        client_factory: Callable[[], Any] | None = None,
        local: FileCache | None = None,
        cache_dir: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        where: str = "the configured address",
        breaker: Breaker | None = None,
        deadline: float = DEFAULT_DEADLINE,
        strict: bool = False,
    ) -> None:
        if (client is None) == (client_factory is None):
            raise TypeError("give a client or a client_factory")
        self._make_client: Callable[[], Any] = client_factory or (lambda: client)
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._client_lock = threading.Lock()
        self.local = local if local is not None else FileCache(cache_dir or default_directory())
        self.prefix = prefix
        self.where = where
        self.breaker = breaker if breaker is not None else Breaker(where)
        self.deadline = deadline
        self.strict = strict
        self._slots: dict[str, _Slot] = {}
        # The generation of the fleet lock this thread holds, per slot, for store().
        self._held = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings, *, cache_dir: str | None = None) -> RedisTokenCache:
        """A cache for *settings*; the client is made on first use (Cluster connects then)."""
        return cls(
            client_factory=lambda: make_client(settings),
            cache_dir=cache_dir,
            prefix=settings.prefix,
            where=redact(settings.url),
            deadline=deadline_for(settings.timeout),
            strict=settings.strict,
        )

    def __repr__(self) -> str:
        state = ", unavailable" if self.breaker.is_open else ""
        return f"RedisTokenCache({self.where}, local={self.local!r}{state})"

    # -- talking to Redis ---------------------------------------------------------------------

    def _ensure_client(self) -> Any:  # noqa: ANN401 - any of redis-py's sync clients
        """The client, made on first use (a Cluster client connects then, and may raise)."""
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._make_client()
                client = self._client
        return client

    def _script(self, name: str) -> Any:  # noqa: ANN401 - redis.commands.core.Script
        script = self._scripts.get(name)
        if script is None:
            script = self._ensure_client().register_script(getattr(_scripts, name))
            self._scripts[name] = script
        return script

    def _call(self, name: str, keys: list[str], args: list[object]) -> Any:  # noqa: ANN401 - whatever the Lua script answers
        """Run script *name*, or give ``_FAILED`` when Redis is skipped or fails."""
        return self._guarded(lambda: self._script(name)(keys=keys, args=args))

    def _guarded(self, call: Callable[[], Any]) -> Any:  # noqa: ANN401 - whatever Redis answers
        """*call*'s answer, within the deadline and the bound, or ``_FAILED`` (breaker)."""
        if not self.breaker.allows():
            if self.strict:
                raise self._strict_error()
            return _FAILED
        deadline = Deadline(self.deadline, lambda: cut(self._client))
        try:
            # Made before the clock starts: the first call of a process imports redis-py
            # (0.1 s or more), which says nothing about the server.
            self._ensure_client()
            with deadline:
                result = call()
            check_reply(result)
        # Every exception, not just redis-py's errors and OSError: redis-py raises others for a
        # connection it cannot make (a TypeError for an option its connection class does not
        # take, in a client given to configure()), and the cache is an optimisation that must
        # never fail a request. The breaker's one warning names the type, so a bug still shows.
        # A setting to fix (a URL option redis-py refuses, found when the client is made) is
        # not an outage: it is raised, once, to the caller.
        except ConfigurationError:
            raise
        except Exception as exc:  # noqa: BLE001
            failure = deadline.error() if deadline.expired else exc
            self.breaker.failed(failure)
            if self.strict:
                raise self._strict_error() from failure
            return _FAILED
        self.breaker.succeeded()
        return result

    def _strict_error(self) -> RedisUnavailableError:
        last = self.breaker.last
        why = f"{last[0].kind}: {last[1]}" if last is not None else "unavailable"
        return RedisUnavailableError(
            f"the Redis token cache at {self.where} is not usable ({why}), and {STRICT_ENV} "
            "says to fail rather than use the local cache alone"
        )

    def health(self) -> dict[str, object]:
        """For ``memoram-auth status``: whether Redis is reachable, lets the plugin's user in
        and run its scripts, and takes writes. Asks Redis now, breaker or not.

        ``ok`` is true only if all three hold; otherwise ``kind`` says what failed (outage,
        configuration, permission, full) and ``problem`` what to do.
        """
        report: dict[str, object] = {
            "backend": "redis",
            "where": self.where,
            "reachable": False,
            "authorised": False,
            "writable": False,
            "ok": False,
            "kind": None,
            "problem": None,
        }
        probe = f"{self.prefix}{{status}}:token"
        step = "authorised"
        deadline = Deadline(self.deadline, lambda: cut(self._client))
        try:
            client = self._ensure_client()
            with deadline:
                self._script("LOAD")(keys=[probe], args=[])
                report["reachable"] = report["authorised"] = True
                step = "writable"
                client.set(probe, "1", px=1000)  # a full Redis reads, and refuses writes
                report["writable"] = True
        except ConfigurationError as exc:
            report.update(kind="configuration", problem=str(exc))
            return report
        except Exception as exc:  # noqa: BLE001 - as in _guarded: whatever it is, say it
            failure = deadline.error() if deadline.expired else exc
            found = diagnose(failure, tls=self.where.startswith("rediss:"))
            if found.kind != OUTAGE and step == "authorised":
                report["reachable"] = True  # it answered, with a refusal
            error = f"{type(failure).__name__}: {failure}"
            advice = f"; {found.advice}" if found.advice else ""
            report.update(kind=found.kind, problem=f"{error}{advice}")
            return report
        report["ok"] = True
        return report

    # -- the optional TokenCache methods ------------------------------------------------------

    def bind_secret(self, slot: str, secret: bytes) -> None:
        """Name and seal *slot*'s entries with *secret* (the core derives it from the key)."""
        if slot not in self._slots:
            if len(secret) < 32:  # as SlotKeys checks, but now rather than on first use
                raise ValueError("the slot secret must be at least 32 bytes")
            self._slots[slot] = _Slot(secret, self.prefix)

    def reject(self, slot: str, token: str, rejected_at: float) -> None:
        """Forget *token*, and any token that is not its replacement, here and in Redis.

        The provider's rule (see ``TokenProvider.invalidate``): what stays is a token fetched
        to replace *token* (``replaces`` is its digest), or, locally, one obtained after the
        rejection. A replacement for an earlier rejection goes: a second revocation may have
        hit it.
        """
        digest = token_digest(token)
        local = self.local.load(slot)
        if local is not None and (
            local.value == token
            or not (local.replaces == digest or local.obtained_at > rejected_at)
        ):
            self.local.delete(slot)
        bound = self._slots.get(slot)
        if bound is None:
            return
        bound.rejected.append(token)
        keys = bound.keys
        tag, replaces_tag = keys.rejected_tags(token)
        result = self._call(
            "REJECT",
            [keys.token, keys.floor, keys.generation, keys.floor_by],
            [tag, replaces_tag, _META_TTL_MS],
        )
        if result is not _FAILED and int(result[1]) >= bound.floor:
            bound.floor = int(result[1])
            bound.floor_replaces = digest

    # -- TokenCache ---------------------------------------------------------------------------

    def load(self, slot: str) -> Token | None:
        local = self.local.load(slot)
        bound = self._slots.get(slot)
        if bound is None:
            return local
        if local is not None and local.value in bound.rejected:
            local = None
        if local is not None and time.time() < local.fresh_until:
            return local  # a warm restart, or another process on this machine refreshed
        remote = self._load_remote(slot, bound)
        if remote is None:
            return local
        if local is None or _better(remote, local):
            return remote
        return local

    def _load_remote(self, slot: str, bound: _Slot) -> Token | None:
        result = self._call("LOAD", [bound.keys.token], [])
        if result is _FAILED or not result or not result[0]:
            return None
        flat, ttl_ms = result
        fields = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}
        opened = bound.keys.open(fields, int(ttl_ms), time.time())
        if opened is None or opened.token.value in bound.rejected:
            return None  # damaged, tampered with, from another key, or known to be dead
        if opened.generation <= bound.floor and opened.token.replaces != bound.floor_replaces:
            # Fetched before our last rejection, maybe revoked with it, and not to replace the
            # token it rejected (a replacement for an earlier rejection is no better: a second
            # revocation may have hit it); the floor in Redis refuses such a store, unless a
            # restart lost the floor. (Its obtained_at, rebuilt from the TTL, would not tell: it
            # comes out later by the store's and this read's round trips.)
            return None
        local = self.local.load(slot)
        if local is None or local.value != opened.token.value:
            self.local.store(
                slot,
                opened.token,
                base_url=opened.base_url,
                key_fingerprint=opened.key_fingerprint,
            )
        return opened.token

    def store(self, slot: str, token: Token, *, base_url: str, key_fingerprint: str) -> None:
        """Redis first, then the local file, unless Redis refused the token as fetched before
        a rejection (it may be revoked): a token in the local file has reached the fleet, or
        Redis was unavailable. The command line serves a fresh local token without asking
        Redis (``memoram_auth.file_in_front``), so the file must not outlast the fleet's word.
        """
        bound = self._slots.get(slot)
        generation = getattr(self._held, slot, None)
        ttl_ms = int((token.expires_at - time.time()) * 1000)
        if bound is not None and generation is not None and ttl_ms > 0:
            keys = bound.keys
            fields = keys.seal(
                token, generation=generation, base_url=base_url, key_fingerprint=key_fingerprint
            )
            result = self._call(
                "STORE",
                [keys.token, keys.floor, keys.floor_by],
                [fields["gen"], fields["rp"], fields["tag"], fields["blob"], ttl_ms],
            )
            if result is not _FAILED and int(result) < 0:
                return  # the provider still has it in memory; a 401 there costs one replay
        # Else stored in Redis, or a newer token is there (ours is still valid), or it was
        # fetched without a generation (Redis was unavailable): kept locally.
        self.local.store(slot, token, base_url=base_url, key_fingerprint=key_fingerprint)

    def delete(self, slot: str) -> None:
        self.local.delete(slot)
        bound = self._slots.get(slot)
        if bound is not None:
            # Through the breaker and the deadline, like the scripts; a plain DEL needs no script.
            name = bound.keys.token
            self._guarded(lambda: self._ensure_client().delete(name))

    def lock(self, slot: str, timeout: float) -> _FleetLock:
        return _FleetLock(self, slot, timeout)


def deadline_for(timeout: float) -> float:
    """A call's deadline for a socket *timeout*: room for a new connection's round trips (TCP,
    TLS, HELLO, CLIENT SETINFO) and the script's, on a machine busy enough that the process
    waits for a core between them (a fleet of workers starting at once on two cores did)."""
    return max(DEFAULT_DEADLINE, 3 * timeout)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _better(remote: Token, local: Token) -> bool:
    """Whether Redis's token should win over the local one."""
    # A replacement of the other one postdates whatever rejected it. A mark that names some
    # other token says nothing about the two (a replacement for an earlier rejection may be
    # the older of them), so then the later expiry wins.
    if remote.replaces and remote.replaces == token_digest(local.value):
        return True
    if local.replaces and local.replaces == token_digest(remote.value):
        return False
    return remote.expires_at > local.expires_at


class _FleetLock:
    """The local file lock, then the fleet's lock in Redis; ``True`` if both were had.

    With Redis unavailable it is the local lock alone: machines then fetch one token each,
    as they would with the file backend. A waiter stops waiting as soon as the holder has
    stored a newer token (``False``: the lock was not had, and is not needed).
    """

    def __init__(self, cache: RedisTokenCache, slot: str, timeout: float) -> None:
        self._cache = cache
        self._slot = slot
        self._timeout = timeout
        self._local = cache.local.lock(slot, timeout)
        self._owner = secrets.token_hex(16)
        self._renewer: threading.Thread | None = None
        self._release = threading.Event()
        self._holds_remote = False

    def __enter__(self) -> bool:
        started = time.monotonic()
        had_local = self._local.__enter__()
        bound = self._cache._slots.get(self._slot)
        if bound is None:
            return had_local
        keys = bound.keys
        lease_ms = int(LEASE * 1000)
        pause = 0.01
        seen: int | None = None
        while True:
            result = self._cache._call(
                "LOCK",
                [keys.lock, keys.generation, keys.token],
                [self._owner, lease_ms, _META_TTL_MS],
            )
            if result is _FAILED:
                return had_local
            if isinstance(result, list):
                (result,) = result
                _log.warning(
                    "memoram-auth: took over a lock in Redis (%s) that no machine of this fleet "
                    "set: its expiry was beyond any lease; someone with write access to Redis "
                    "may be interfering",
                    self._cache.where,
                )
            if int(result) > 0:
                self._hold(int(result), keys.lock, lease_ms)
                return had_local
            if seen is None:
                seen = -int(result)
            elif -int(result) > seen:
                # The holder stored the token this wait was for: the caller's re-read finds it,
                # so taking the lock in turn would only queue the fleet behind one another.
                # Not had (False): should the caller fetch all the same, its store stays local.
                return False
            if time.monotonic() - started >= self._timeout:
                break
            # Jittered and growing: a fleet of waiters neither hammers Redis nor wakes together.
            time.sleep(pause * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not crypto
            pause = min(pause * 1.5, 0.1)
        warnings.warn(
            f"memoram-auth: waited {self._timeout:g} s for another machine to finish refreshing "
            "the token (lock in Redis); fetching one anyway",
            MemoramAuthWarning,
            stacklevel=2,
        )
        # A generation all the same, taken before the fetch: the store is fenced against
        # whatever the lock holder writes later.
        result = self._cache._call(
            "NEXT_GENERATION", [keys.lock, keys.generation], ["", "", _META_TTL_MS]
        )
        if result is not _FAILED:
            setattr(self._cache._held, self._slot, int(result))
        return False

    def _hold(self, generation: int, lock_key: str, lease_ms: int) -> None:
        setattr(self._cache._held, self._slot, generation)
        self._holds_remote = True
        cache, owner, release = self._cache, self._owner, self._release

        def renew() -> None:
            while not release.wait(LEASE / 3):
                try:
                    renewed = cache._call("RENEW", [lock_key], [owner, lease_ms])
                except RedisUnavailableError:
                    return  # strict mode: the fetch's own calls say so to its caller
                if renewed in (_FAILED, 0):
                    return  # lost: the generation still fences our store

        self._renewer = threading.Thread(target=renew, name="memoram-auth-lease", daemon=True)
        self._renewer.start()

    def __exit__(self, *exc_info: object) -> None:
        try:
            if hasattr(self._cache._held, self._slot):
                delattr(self._cache._held, self._slot)
            if self._holds_remote:
                self._release.set()
                bound = self._cache._slots[self._slot]
                self._cache._call("UNLOCK", [bound.keys.lock], [self._owner])
        finally:
            self._local.__exit__(*exc_info)
