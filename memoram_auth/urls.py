"""Base URLs: which are allowed, and which requests count as going to the API."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple
from urllib.parse import urlsplit

from .exceptions import ConfigurationError

__all__ = ["DEFAULT_BASE_URL", "Origin", "is_loopback_host", "origin_of", "validate_base_url"]

DEFAULT_BASE_URL = "https://api.memoram.app/api/v1"

_DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    """Scheme, host and port: the unit a token is allowed to travel to."""

    scheme: str
    host: str
    port: int


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` (and ``*.localhost``), 127.0.0.0/8 and ``::1``."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> Origin | None:
    """The origin of an absolute http(s) URL, or ``None`` when it has none we understand."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return Origin(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme])


def validate_base_url(base_url: str) -> str:
    """Check *base_url* and return it without a trailing slash.

    The token travels to this origin in the clear if the scheme is ``http``, so plain HTTP is
    accepted only for loopback hosts (a local emulator or a tunnel); everything else must be
    ``https``. The check happens before any network use.

    Raises:
        ConfigurationError: not an absolute http(s) URL with a host, carries credentials, a
            query or a fragment, or uses ``http`` for a host that is not loopback.
    """
    text = base_url.strip() if isinstance(base_url, str) else ""
    hint = "set MEMORAM_BASE_URL or base_url= to e.g. https://api.memoram.app/api/v1"
    origin = origin_of(text)
    if origin is None:
        # The rejected text is not echoed: a mix-up of arguments can put the key here.
        raise ConfigurationError(f"the base URL is not an absolute http(s) URL; {hint}")
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        # Never echo the URL here: its userinfo may be a secret.
        raise ConfigurationError(f"the base URL must not contain a user name or password; {hint}")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"the base URL must not have a query or fragment; {hint}")
    if origin.scheme == "http" and not is_loopback_host(origin.host):
        raise ConfigurationError(
            f"refusing plain http:// for {origin.host}: the token would travel unencrypted; "
            "use https:// (http:// is allowed only for loopback hosts such as 127.0.0.1)"
        )
    return text.rstrip("/")
