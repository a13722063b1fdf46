"""Base URLs: which are allowed, and the origin of a URL (``_origin`` says which requests get
the token)."""

from __future__ import annotations

from .exceptions import ConfigurationError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_PORTS",
    "Origin",
    "base_url_origin",
    "is_loopback_host",
    "origin_of",
    "validate_base_url",
]

DEFAULT_BASE_URL = "https://api.memoram.app/api/v1"

#: The two schemes a base URL may have, and their default ports.
DEFAULT_PORTS = {"http": 80, "https": 443}


#: Scheme, host and port: the unit a token is allowed to travel to.
Origin = tuple[str, str, int]


def is_loopback_host(host: str) -> bool:
    """True for exactly ``localhost``, IP literals in 127.0.0.0/8, and ``::1``.

    Not ``*.localhost`` nor ``localhost.``: RFC 6761 says they should resolve locally, but
    common resolvers send them to DNS, where a spoofed answer would receive the API key over
    plain http. IP literals never leave.
    """
    host = host.lower()
    if host == "localhost":
        return True
    octets = host.split(".")
    if len(octets) == 4 and all(o.isdigit() and o == str(int(o)) and int(o) < 256 for o in octets):
        # A canonical dotted quad, decided without importing ipaddress. Leading zeros are not
        # canonical: some resolvers read "0127.0.0.1" as octal, which is not loopback.
        return octets[0] == "127"
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> Origin | None:
    """The origin of an absolute http(s) URL, or ``None`` when it has none we understand."""
    from urllib.parse import urlsplit  # see _split_netloc for why not at the top

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return (scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme])


# A base URL is configuration, so it may be held to a stricter shape than URLs in general:
# a host name or IP literal of plain ASCII characters, an optional port, and a path without
# spaces, backslashes or odd characters. Checked with sets of characters rather than
# urllib.parse or re, each of which costs the command line's warm path more than all of its
# own work (re, with enum and collections, was a third of it); origin_of() (urllib) must agree
# on every URL this accepts, which a test checks.
_DIGITS = frozenset("0123456789")
_ALNUM = _DIGITS | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HOST_CHARS = _ALNUM | frozenset("._~-")
_IPV6_CHARS = _DIGITS | frozenset("ABCDEFabcdef:.")
_PATH_CHARS = _ALNUM | frozenset("!$&'()*+,;=:@/._~%-")


def _split_netloc(netloc: str) -> tuple[str, str] | None:
    """Host (IPv6 in brackets) and port text ("" if none) of a plain netloc, else None."""
    if netloc.startswith("["):
        end = netloc.find("]")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if end < 2 or not set(host[1:-1]) <= _IPV6_CHARS:
            return None
    else:
        host, colon, port = netloc.partition(":")
        rest = colon + port
        if not host or not set(host) <= _HOST_CHARS:
            return None
    if not rest:
        return host, ""
    port = rest[1:]
    if rest[0] != ":" or not 1 <= len(port) <= 5 or not set(port) <= _DIGITS:
        return None
    return host, port


def _split_base_url(text: str, hint: str) -> tuple[str, str, int]:
    """Scheme, host and port of a base URL, or a ConfigurationError that never echoes it."""
    scheme, separator, rest = text.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in DEFAULT_PORTS:
        # The rejected text is not echoed: a mix-up of arguments can put the key here.
        raise ConfigurationError(f"the base URL is not an absolute http(s) URL; {hint}")
    if "?" in rest or "#" in rest:
        raise ConfigurationError(f"the base URL must not have a query or fragment; {hint}")
    netloc, _, path = rest.partition("/")
    if "@" in netloc:
        # Never echo the URL here: its userinfo may be a secret.
        raise ConfigurationError(f"the base URL must not contain a user name or password; {hint}")
    parts = _split_netloc(netloc)
    port = int(parts[1]) if parts and parts[1] else DEFAULT_PORTS[scheme]
    if parts is None or not 0 < port < 65536 or not set(path) <= _PATH_CHARS:
        raise ConfigurationError(f"the base URL is not an absolute http(s) URL; {hint}")
    return scheme, parts[0].strip("[]").lower(), port


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
    scheme, host, _ = _split_base_url(text, hint)
    if scheme == "http" and not is_loopback_host(host):
        raise ConfigurationError(
            f"refusing plain http:// for {host}: the token would travel unencrypted; "
            "use https:// (http:// is allowed only for loopback hosts such as 127.0.0.1)"
        )
    return text.rstrip("/")


def base_url_origin(base_url: str) -> Origin:
    """The origin of a base URL that :func:`validate_base_url` accepted."""
    return _split_base_url(base_url, "")
