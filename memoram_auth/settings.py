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


def _key_from_plugins(base_url: str) -> str | None:
    # The seam for key plugins (keyring and others): none are consulted yet.
    return None


def resolve_api_key(api_key: str | None, base_url: str) -> str:
    """The argument, else ``MEMORAM_API_KEY``, else a key plugin's answer; normalized.

    Raises:
        ConfigurationError: no key anywhere, or a key that cannot be one.
    """
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV) or _key_from_plugins(base_url)
    if api_key is None or not api_key.strip():
        raise ConfigurationError(
            f"no Memoram API key: set {API_KEY_ENV}, or pass api_key= "
            "(keys come from the Memoram dashboard and start with mem_)"
        )
    return normalize_api_key(api_key)
