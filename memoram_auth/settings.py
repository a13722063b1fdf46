"""Where the API key and base URL come from when the caller does not say."""

from __future__ import annotations

import os

from .exceptions import ConfigurationError
from .keys import normalize_api_key
from .urls import DEFAULT_BASE_URL, validate_base_url

__all__ = ["API_KEY_ENV", "BASE_URL_ENV", "resolve_api_key", "resolve_base_url"]

API_KEY_ENV = "MEMORAM_API_KEY"
BASE_URL_ENV = "MEMORAM_BASE_URL"


def resolve_base_url(base_url: str | None = None) -> str:
    """The argument, else ``MEMORAM_BASE_URL``, else the production API; validated.

    Raises:
        ConfigurationError: see :func:`memoram_auth.urls.validate_base_url`.
    """
    if base_url is None:
        base_url = os.environ.get(BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL
    return validate_base_url(base_url)


def resolve_api_key(api_key: str | None, base_url: str) -> str:
    """The argument, else the key hook: ``MEMORAM_API_KEY``, then key plugins; normalized.

    Raises:
        ConfigurationError: no key anywhere, or a key that cannot be one.
    """
    if api_key is None:
        from .plugins import get_api_key  # plugins imports this module

        api_key = get_api_key(base_url)
    if api_key is None or not api_key.strip():
        raise ConfigurationError(
            f"no Memoram API key: set {API_KEY_ENV}, or pass api_key= "
            "(keys come from the Memoram dashboard and start with mem_)"
        )
    return normalize_api_key(api_key)
