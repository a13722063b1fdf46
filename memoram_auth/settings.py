"""Where the API key, the base URL and the cache directory come from when the caller does not say.

Precedence for the key: the argument, then ``MEMORAM_API_KEY``, then key plugins. The
environment wins over plugins, as AWS and gcloud environment credentials win over their
configured sources: it is the per-run override, and it lets a process that has its key in the
environment start without importing pluggy or any plugin.
"""

from __future__ import annotations

import os

from ._builtins import default_directory, environment_api_key
from ._env import API_KEY_ENV, BASE_URL_ENV
from ._urls import DEFAULT_BASE_URL, validate_base_url
from .exceptions import ConfigurationError
from .keys import ApiKey, normalize_api_key

#: ``MEMORAM_AUTH_CACHE_DIR``, else the platform's user cache directory: for cache backends
#: that keep a local file cache beside their own store.
default_cache_directory = default_directory

__all__ = ["default_cache_directory", "resolve_api_key", "resolve_base_url"]


def resolve_base_url(base_url: str | None = None) -> str:
    """The argument, else ``MEMORAM_BASE_URL``, else the production API; validated.

    Raises:
        ConfigurationError: see :func:`memoram_auth._urls.validate_base_url`.
    """
    if base_url is None:
        base_url = os.environ.get(BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL
    return validate_base_url(base_url)


def resolve_api_key(api_key: str | ApiKey | None, base_url: str) -> str:
    """The argument, else ``MEMORAM_API_KEY``, else key plugins; normalized.

    Raises:
        ConfigurationError: no key anywhere, or a key that cannot be one (not text:
            ``api_key=123`` raised AttributeError before, issue 12).
    """
    if api_key is None:
        api_key = environment_api_key()
    if api_key is None:
        from .plugins import get_api_key  # only now: plugins cost pluggy and a metadata scan

        api_key = get_api_key(base_url)
    if api_key is None or _blank(api_key):
        raise ConfigurationError(
            f"no Memoram API key: set {API_KEY_ENV}, or pass api_key= "
            "(keys come from the Memoram dashboard and start with mem_)"
        )
    # Wrapped, so that the key is no plain local here if normalizing it raises.
    return normalize_api_key(ApiKey.of(api_key))


def _blank(api_key: str | ApiKey) -> bool:
    value = api_key.reveal() if isinstance(api_key, ApiKey) else api_key
    return isinstance(value, str) and not value.strip()
