"""The token provider: one token request per key per token lifetime, however many ask at once.

:class:`TokenProvider` is the core's :class:`~memoram_auth.core.provider.Provider` (when a token
is refreshed, single flight, the 401 rules: see there) with this package's defaults: the
configured cache, the stdlib transport and the plugins' events. :func:`get_provider` shares one
per settings within the process; across processes they share the cache.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from . import plugins
from ._policy import check_expires_in, check_policy
from ._urls import validate_base_url
from .cache import FileCache
from .core.provider import ADVISORY_RETRY_INTERVAL, BEARER, Provider
from .keys import ApiKey, normalize_api_key
from .plugins._backends import cache_identity, default_cache
from .settings import Resolved, background_refresh_enabled
from .token import advisory_window, mandatory_window

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._policy import RetryPolicy
    from .hookspecs import TokenCache
    from .plugins._backends import CacheDir
    from .token import Token
    from .transport import Cert, NetworkSettings, Transport, Verify

__all__ = [
    "ADVISORY_RETRY_INTERVAL",
    "BEARER",
    "TokenProvider",
    "advisory_window",
    "get_provider",
    "mandatory_window",
    "provider_for",
]


def _loader(cache: TokenCache, base_url: str, fingerprint: str) -> Callable[[str], Token | None]:
    if isinstance(cache, FileCache):
        # The file must say it was written for this base URL and key: a file copied or
        # planted under this slot's name is a miss. Plugin backends keep the one-argument
        # load() of the TokenCache protocol.
        def load(slot: str) -> Token | None:
            return cache.load(slot, base_url=base_url, key_fingerprint=fingerprint)

        return load
    return cache.load


class TokenProvider(Provider):
    """Current tokens for one (base URL, API key); thread-, task- and process-safe.

    Prefer :func:`get_provider`, which shares one provider per key within the process.

    Args:
        api_key: the developer API key (surrounding whitespace is dropped).
        base_url: the API's base URL (https, or http to a loopback host).
        cache: where tokens are shared between processes (default:
            `memoram_auth.plugins._backends.default_cache`).
        policy: retries and timeouts of the token request.
        expires_in: the lifetime to ask for, in seconds (the server may grant less).
        lock_timeout: longest wait for another process's refresh before fetching anyway;
            defaults to the policy's total timeout plus 10 s.
        network: TLS trust, client certificate and proxy for the default transport.
        transport: how the token request is sent when a caller gives none, and by the
            background refresh when the caller that handed it over gave none; by default
            the stdlib one with *network*'s settings.
        background_refresh: refresh ahead of expiry in a background thread while callers
            keep the current token, until it expires if that refresh is late or fails
            (default: ``MEMORAM_AUTH_BACKGROUND_REFRESH``, else on).

    Raises:
        ConfigurationError: a malformed key, a bad or insecure base URL, an ``expires_in``
            that is not a positive int, or a ``policy`` that is not a RetryPolicy.
    """

    def __init__(
        self,
        api_key: str | ApiKey,
        base_url: str,
        *,
        cache: TokenCache | None = None,
        policy: RetryPolicy | None = None,
        expires_in: int | None = None,
        lock_timeout: float | None = None,
        network: NetworkSettings | None = None,
        transport: Transport | None = None,
        background_refresh: bool | None = None,
    ) -> None:
        # Held as an ApiKey and dropped from this frame: traceback formatters print locals.
        key = ApiKey(normalize_api_key(api_key), _source(api_key))
        del api_key
        settings = Resolved(
            key,
            validate_base_url(base_url),
            network=network,
            policy=check_policy(policy),
            expires_in=check_expires_in(expires_in),
            background_refresh=background_refresh_enabled(background_refresh),
        )
        self._wire(settings, cache, lock_timeout, transport)

    @classmethod
    def for_settings(cls, settings: Resolved, cache: TokenCache | None = None) -> TokenProvider:
        """A provider for settings that :func:`memoram_auth.settings.resolve` already checked."""
        provider = cls.__new__(cls)
        provider._wire(settings, cache, None, None)
        return provider

    def _wire(
        self,
        settings: Resolved,
        cache: TokenCache | None,
        lock_timeout: float | None,
        transport: Transport | None,
    ) -> None:
        if cache is None:
            cache = default_cache(settings.cache_dir, settings.cache_backend)
        if transport is None:
            from .transport import UrllibTransport

            transport = UrllibTransport(settings.network)
        key = settings.api_key
        super().__init__(
            key,
            settings.base_url,
            cache=cache,
            transport=transport,
            policy=settings.policy,
            expires_in=settings.expires_in,
            lock_timeout=lock_timeout,
            events=plugins.notify,
            load=_loader(cache, settings.base_url, key.fingerprint),
            background=settings.background_refresh,
        )


_registry: dict[tuple[object, ...], TokenProvider] = {}
_registry_lock = threading.Lock()


def provider_for(settings: Resolved) -> TokenProvider:
    """The process-wide provider for *settings* (already checked), created on first use."""
    from .transport import NetworkSettings

    network = settings.network or NetworkSettings()
    registry_key = (
        settings.base_url,
        settings.api_key,
        cache_identity(settings.cache_dir, settings.cache_backend),
        settings.policy,
        settings.expires_in,
        network.key(),
        settings.background_refresh,
    )
    provider = _registry.get(registry_key)
    if provider is None:
        with _registry_lock:
            provider = _registry.get(registry_key)
            if provider is None:
                provider = _registry[registry_key] = TokenProvider.for_settings(settings)
    return provider


def get_provider(
    api_key: str | ApiKey,
    base_url: str,
    *,
    cache_dir: CacheDir = None,
    cache_backend: str | None = None,
    policy: RetryPolicy | None = None,
    expires_in: int | None = None,
    verify: Verify | None = None,
    cert: Cert | None = None,
    proxy: str | None = None,
    trust_env: bool = True,
    background_refresh: bool | None = None,
) -> TokenProvider:
    """The process-wide provider for this key, base URL and cache, created on first use.

    Every auth object built with the same settings shares it, so building one per request
    costs a dictionary lookup, and the whole process makes one token request per lifetime.
    Arguments are as for :class:`TokenProvider`; ``cache_dir`` and ``cache_backend`` choose
    the cache (``memoram_auth.plugins._backends.default_cache``); ``verify``, ``cert``,
    ``proxy`` and ``trust_env`` are the network settings of :meth:`TokenProvider.get_token`'s
    default transport, with the meaning requests gives them; ``background_refresh`` as for
    :class:`TokenProvider` (a provider that refreshes inline is a different one).
    """
    from .transport import NetworkSettings

    key = ApiKey(normalize_api_key(api_key), _source(api_key))
    del api_key  # see TokenProvider.__init__
    settings = Resolved(
        key,
        validate_base_url(base_url),
        network=NetworkSettings(verify=verify, cert=cert, proxy=proxy, trust_env=trust_env),
        cache_dir=cache_dir,
        cache_backend=cache_backend,
        # Checked before they go into the registry key, where a list would be unhashable.
        policy=check_policy(policy),
        expires_in=check_expires_in(expires_in),
        background_refresh=background_refresh_enabled(background_refresh),
    )
    return provider_for(settings)


def _source(api_key: object) -> str:
    """Where a key given to a provider came from: the ApiKey's own source, else the argument."""
    source = api_key.source if isinstance(api_key, ApiKey) else None
    return source or "api_key="


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time stays held forever in the child.
    global _registry_lock
    _registry_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
