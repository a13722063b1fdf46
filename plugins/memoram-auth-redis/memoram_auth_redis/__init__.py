"""memoram-auth plugin: one token per key per lifetime for a whole fleet, through Redis or Valkey.

::

    pip install ./plugins/memoram-auth-redis
    MEMORAM_AUTH_CACHE_BACKEND=redis MEMORAM_AUTH_REDIS_URL=redis://host:6379/0

or from Python, with a client of your own::

    memoram_auth_redis.configure(client=redis.Redis(host="cache", socket_timeout=0.3))
    auth = MemoramAuth(cache_backend="redis")

Redis holds neither the API key nor a usable token: names come from an HMAC and values are
AES-GCM sealed, both keyed by a secret the core derives from the key (see ``_seal``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from memoram_auth import hookimpl
from memoram_auth.hookspecs import CacheFactory, TokenCache

from ._breaker import Breaker
from ._config import (
    CLUSTER_ENV,
    PREFIX_ENV,
    SENTINEL_ENV,
    STRICT_ENV,
    TIMEOUT_ENV,
    URL_ENV,
    Settings,
    normalize_url,
)
from .cache import LEASE, RedisTokenCache, RedisUnavailableError

__all__ = [
    "CLUSTER_ENV",
    "LEASE",
    "PREFIX_ENV",
    "SENTINEL_ENV",
    "STRICT_ENV",
    "TIMEOUT_ENV",
    "URL_ENV",
    "Breaker",
    "RedisTokenCache",
    "RedisUnavailableError",
    "Settings",
    "configure",
    "make_cache",
    "memoram_auth_cache_backends",
    "normalize_url",
]

_configured: dict[str, Any] = {}
_clients: dict[tuple[object, ...], Any] = {}
_lock = threading.Lock()


def configure(client: Any = None, *, prefix: str | None = None) -> None:  # noqa: ANN401 - a redis.Redis (or cluster) client; redis is imported lazily
    """Use *client* (a sync redis-py client) for the ``redis`` backend; ``None`` to forget it.

    Takes precedence over ``MEMORAM_AUTH_REDIS_URL``. Affects providers created afterwards.
    """
    _configured.clear()
    if client is not None:
        _configured["client"] = client
        _configured["prefix"] = prefix


def make_cache(cache_dir: str | None) -> TokenCache:
    """The ``redis`` backend's factory: a configured client, else the environment's URL.

    Caches of one process share one client (one connection pool) per setting.

    Raises:
        ConfigurationError: no client configured and no usable ``MEMORAM_AUTH_REDIS_URL``.
    """
    client = _configured.get("client")
    if client is not None:
        prefix = _configured.get("prefix") or Settings.default_prefix()
        return RedisTokenCache(client, cache_dir=cache_dir, prefix=prefix)
    settings = Settings()
    with _lock:
        shared = _clients.get(settings.identity)
        if shared is None:
            shared = RedisTokenCache.from_settings(settings)
            _clients[settings.identity] = shared
    # One client and one breaker per setting, one local cache per directory asked for.
    return RedisTokenCache(
        client_factory=shared._ensure_client,
        cache_dir=cache_dir,
        prefix=settings.prefix,
        where=shared.where,
        breaker=shared.breaker,
        deadline=shared.deadline,
        strict=shared.strict,
    )


@hookimpl
def memoram_auth_cache_backends() -> Mapping[str, CacheFactory]:
    return {"redis": make_cache}
