"""API keys: clean up what users paste, and name a key without revealing it."""

from __future__ import annotations

import hashlib
import unicodedata

from .exceptions import ConfigurationError

__all__ = ["fingerprint", "normalize_api_key"]


def normalize_api_key(api_key: str) -> str:
    """Return *api_key* without surrounding whitespace, or raise if it cannot be a key.

    A pasted key often drags a newline along, so leading and trailing whitespace is dropped.
    Whitespace or control characters inside the key mean it was mangled (two values joined,
    a stray escape); sending it would only earn a 401 that hides the real mistake.

    Raises:
        ConfigurationError: the key is empty or has inner whitespace or control characters.
            The message never contains the key.
    """
    if not isinstance(api_key, str):
        raise ConfigurationError(
            f"the API key must be a string, not {type(api_key).__name__}; "
            "pass it as text or set MEMORAM_API_KEY"
        )
    key = api_key.strip()
    if not key:
        raise ConfigurationError("the API key is empty; set MEMORAM_API_KEY or pass api_key=")
    for char in key:
        if char.isspace() or unicodedata.category(char).startswith("C"):
            raise ConfigurationError(
                "the API key contains whitespace or control characters; copy it again "
                "from the Memoram dashboard (keys look like mem_ followed by hex digits)"
            )
    return key


def fingerprint(api_key: str) -> str:
    """A short one-way name for *api_key*, safe to show in messages, reprs and logs.

    Twelve hex digits of SHA-256: enough to tell a user's keys apart, and since real keys
    carry ~192 bits of randomness the digest reveals nothing usable.
    """
    digest = hashlib.sha256(api_key.encode("utf-8")).hexdigest()
    return f"sha256:{digest[:12]}"
