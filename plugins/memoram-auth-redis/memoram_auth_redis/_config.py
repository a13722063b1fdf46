"""Settings: the URL and its spellings, and a client that fails fast instead of retrying."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from memoram_auth.exceptions import ConfigurationError, MemoramAuthWarning

__all__ = [
    "CLUSTER_ENV",
    "DEFAULT_PREFIX",
    "PREFIX_ENV",
    "SENTINEL_ENV",
    "STRICT_ENV",
    "TIMEOUT_ENV",
    "URL_ENV",
    "Settings",
    "check_options",
    "make_client",
    "normalize_url",
    "redact",
]

URL_ENV = "MEMORAM_AUTH_REDIS_URL"
CLUSTER_ENV = "MEMORAM_AUTH_REDIS_CLUSTER"
SENTINEL_ENV = "MEMORAM_AUTH_REDIS_SENTINEL"
PREFIX_ENV = "MEMORAM_AUTH_REDIS_PREFIX"
TIMEOUT_ENV = "MEMORAM_AUTH_REDIS_TIMEOUT"
STRICT_ENV = "MEMORAM_AUTH_REDIS_STRICT"
DEFAULT_PREFIX = "memoram-auth:"

#: Connect and read timeout, seconds: a Redis that does not answer costs this, once.
DEFAULT_TIMEOUT = 0.3
_SCHEMES = {
    "redis": "redis",
    "rediss": "rediss",
    "unix": "unix",
    # Some hosts hand out Valkey's own spellings; the protocol is the same.
    "valkey": "redis",
    "valkeys": "rediss",
}
_ON = frozenset({"1", "true", "yes", "on"})
# Letters, digits, dots, hyphens and underscores (some internal names have them), or an IPv6
# address (urlsplit has taken off its brackets).
_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+(%[A-Za-z0-9._-]+)?")
_DB_PATH = re.compile(r"/?|/[0-9]+/?")


def _untyped(function: object) -> Callable[..., Any]:
    """*function* as mypy sees an unannotated one: any arguments, a result of type Any.

    redis-py annotates more of its API with each release (5.0 none of the calls made here; 7.0
    all but ``RedisCluster.from_url``, ``parse_url`` and the Sentinel class; 8.2 that too).
    mypy --strict refuses a call to an unannotated function, and a ``type: ignore`` for it is
    an unused one wherever the installed redis-py is annotated: through here, the plugin
    type-checks alike against every redis-py it accepts.
    """
    return cast("Callable[..., Any]", function)


def redact(url: str) -> str:
    """*url* without its user and password, for messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def normalize_url(url: str) -> str:
    """*url* in a spelling redis-py reads (``valkey://`` becomes ``redis://``).

    Raises:
        ConfigurationError: not a redis, rediss, unix, valkey or valkeys URL. The message
            never shows the password.
    """
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    target = _SCHEMES.get(scheme.lower()) if sep else None
    if target is None:
        raise ConfigurationError(
            f"{URL_ENV} must be a redis://, rediss://, unix://, valkey:// or valkeys:// URL, "
            f"not {redact(text) if sep else 'something without a scheme'}"
        )
    normalized = f"{target}://{rest}"
    try:
        parts = urlsplit(normalized)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigurationError(
            f"{URL_ENV} is not a valid URL ({redact(normalized)}); check the host and port"
        ) from None
    if target != "unix" and not parts.hostname:
        raise ConfigurationError(f"{URL_ENV} names no host ({redact(normalized)})")
    if target != "unix" and not _HOST.fullmatch(parts.hostname or ""):
        # redis-py would try to resolve it, and every call would fail as if Redis were down.
        raise ConfigurationError(
            f"{URL_ENV} has a host name with characters no host name has "
            f"({redact(normalized)}); check for a space or a stray character"
        )
    if target != "unix" and not _DB_PATH.fullmatch(parts.path):
        # redis-py ignores a path that is not a number, and uses database 0.
        raise ConfigurationError(
            f"{URL_ENV} must end with the database number (/0, /1, ...), not "
            f"{parts.path!r}: {redact(normalized)}"
        )
    return normalized


def _check_tls_options(url: str) -> None:
    """Refuse TLS options (``ssl_…``) on a URL without TLS, and warn about one that turns off
    the certificate check: string tests, no redis import."""
    options = parse_qsl(urlsplit(url).query)
    tls = sorted({name for name, _ in options if name.startswith("ssl")})
    if tls and not url.startswith("rediss://"):
        raise ConfigurationError(
            f"{URL_ENV} has TLS options ({', '.join(tls)}) on a URL without TLS; "
            "use rediss:// (or valkeys://) to connect with TLS"
        )
    if any(name == "ssl_cert_reqs" and value.lower() in ("none", "") for name, value in options):
        warnings.warn(
            f"memoram-auth: {URL_ENV} has ssl_cert_reqs=none: the Redis server's certificate "
            "is not checked, so anyone on the network path can stand in for it and read the "
            "cache's traffic; name its CA with ssl_ca_certs instead",
            MemoramAuthWarning,
            stacklevel=4,
        )


def check_options(url: str) -> None:
    """Refuse the URL's query options that redis-py would refuse only when it connects.

    redis-py passes a URL's query options to each connection it makes, so an option it does
    not know would fail every Redis call with a ``TypeError`` instead of saying so once. Run
    where the client is made (redis is imported there anyway), not in :class:`Settings`: a
    warm start that finds its token on the local file must not pay for ``import redis``.

    Raises:
        ConfigurationError: names the option (never a value: a password may be among them).
    """
    query = urlsplit(url).query
    if not query:
        return
    import redis

    try:
        pool = _untyped(redis.ConnectionPool.from_url)(url)
        pool.connection_class(**pool.connection_kwargs)  # builds, does not connect
    except (TypeError, ValueError) as exc:
        names = sorted({name for name, _ in parse_qsl(query, keep_blank_values=True)})
        raise ConfigurationError(
            f"{URL_ENV} has a query option redis-py does not accept ({exc}); "
            f"the options given: {', '.join(names)}"
        ) from None


class Settings:
    """Where the cache is and how to reach it; from the environment unless given."""

    def __init__(
        self,
        url: str | None = None,
        *,
        cluster: bool | None = None,
        sentinel: str | None = None,
        prefix: str | None = None,
        timeout: float | None = None,
        strict: bool | None = None,
    ) -> None:
        env = os.environ
        raw = url if url is not None else env.get(URL_ENV, "").strip()
        if not raw:
            raise ConfigurationError(
                f"the redis cache backend needs {URL_ENV} (e.g. redis://host:6379/0), "
                "or a client passed to memoram_auth_redis.configure()"
            )
        self.url = normalize_url(raw)
        self.cluster = (
            env.get(CLUSTER_ENV, "").strip().lower() in _ON if cluster is None else cluster
        )
        self.sentinel = (
            (env.get(SENTINEL_ENV, "").strip() or None) if sentinel is None else sentinel
        )
        if self.cluster and self.sentinel:
            raise ConfigurationError(f"set {CLUSTER_ENV} or {SENTINEL_ENV}, not both")
        if self.sentinel and self.url.startswith("unix:"):
            raise ConfigurationError(
                f"with {SENTINEL_ENV}, {URL_ENV} names the Sentinel's host and port "
                "(redis:// or rediss://), not a unix socket"
            )
        _check_tls_options(self.url)
        self.prefix = prefix if prefix is not None else self.default_prefix()
        if timeout is None:
            try:
                timeout = float(env.get(TIMEOUT_ENV, "") or DEFAULT_TIMEOUT)
            except ValueError:
                raise ConfigurationError(f"{TIMEOUT_ENV} must be a number of seconds") from None
        if not 0 < timeout <= 30:
            raise ConfigurationError(f"{TIMEOUT_ENV} must be between 0 and 30 seconds")
        self.timeout = timeout
        #: Fail instead of degrading to the local cache when Redis is not usable.
        self.strict = env.get(STRICT_ENV, "").strip().lower() in _ON if strict is None else strict

    @staticmethod
    def default_prefix() -> str:
        """``MEMORAM_AUTH_REDIS_PREFIX``, else ``memoram-auth:``."""
        return os.environ.get(PREFIX_ENV, "").strip() or DEFAULT_PREFIX

    @property
    def identity(self) -> tuple[str, bool, str | None, str, float, bool]:
        return self.url, self.cluster, self.sentinel, self.prefix, self.timeout, self.strict

    def __repr__(self) -> str:
        mode = " cluster" if self.cluster else f" sentinel={self.sentinel}" if self.sentinel else ""
        return f"Settings({redact(self.url)}{mode})"


def _fail_fast(timeout: float) -> dict[str, Any]:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No retries: the breaker decides when to try again, and a retry would double the cost
    # of a Redis that does not answer.
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": _untyped(Retry)(_untyped(NoBackoff)(), 0),
        "retry_on_timeout": False,
    }


def _connection_class(url: str, *, sentinel: bool = False) -> type[Any]:
    """redis-py's connection class for *url*, with its replies bounded (``_guard.bounded``)."""
    from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection

    from ._guard import bounded

    tls = url.startswith("rediss:")
    if sentinel:
        from redis.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

        return bounded(SentinelManagedSSLConnection if tls else SentinelManagedConnection)
    if url.startswith("unix:"):
        return bounded(UnixDomainSocketConnection)
    return bounded(SSLConnection if tls else Connection)


def make_client(settings: Settings) -> Any:  # noqa: ANN401 - Redis, RedisCluster or a master proxy
    """A sync redis-py client for *settings*. Cluster clients connect here (may raise).

    Every connection to a Redis server bounds each reply while reading it (not those to a
    Sentinel, which only names the master).
    """
    import redis

    check_options(settings.url)
    options = _fail_fast(settings.timeout)
    if settings.cluster:
        from redis.cluster import RedisCluster

        options.pop("retry_on_timeout")
        # redis-py 6 and later take the cluster's own retries from `retry` (none, as above)
        # and deprecate cluster_error_retry_attempts, with a warning in every process; 5.x
        # knows only the latter, and retries 3 times without it.
        if int(str(redis.VERSION[0])) < 6:
            options["cluster_error_retry_attempts"] = 0
        from ._guard import bounded_pool

        return _untyped(RedisCluster.from_url)(
            settings.url, connection_pool_class=bounded_pool(), **options
        )
    if settings.sentinel:
        from redis.connection import parse_url
        from redis.sentinel import Sentinel

        parsed: dict[str, Any] = _untyped(parse_url)(settings.url)
        address = (parsed.pop("host", "localhost"), parsed.pop("port", 26379))
        # rediss:// gives SSLConnection, which would connect to its default host rather than
        # to the master the Sentinel names: the master gets the Sentinel-managed TLS
        # connection instead, and the Sentinel the TLS that ssl=True gives.
        if parsed.pop("connection_class", None) is not None:
            parsed["ssl"] = True
        # The Sentinel is asked as the master is: no retries (redis-py's default retries with
        # backoff, seconds for a Sentinel that is down), the same TLS options, no password
        # (the URL's is the master's). Not retry_on_timeout: redis.Redis() deprecates it, and
        # no retries means none on a timeout either.
        sentinel_kwargs = {
            **{k: v for k, v in options.items() if k != "retry_on_timeout"},
            **{k: v for k, v in parsed.items() if k == "ssl" or k.startswith("ssl_")},
        }
        parsed.pop("ssl", None)  # the master's connection class says it
        sentinel = _untyped(Sentinel)(
            [address], sentinel_kwargs=sentinel_kwargs, **{**options, **parsed}
        )
        return sentinel.master_for(
            settings.sentinel,
            connection_class=_connection_class(settings.url, sentinel=True),
        )
    return _untyped(redis.Redis.from_url)(
        settings.url, connection_class=_connection_class(settings.url), **options
    )
