"""Which requests get the token: the base URL's origin, less the token endpoint.

Only the adapters need it; the command line, which sends no requests of the user's, does not
load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._urls import DEFAULT_PORTS, Origin, base_url_origin, origin_of

if TYPE_CHECKING:
    from yarl import URL

__all__ = ["ApiOrigin"]


class ApiOrigin:
    """Which requests get the token: the base URL's origin (scheme, host, port), less the
    token endpoint. The one owner of that rule; every adapter asks it.

    :meth:`targets` decides a URL string; :meth:`targets_parts` and :meth:`targets_yarl` a URL
    the HTTP library has already parsed (httpx's, yarl's), from its parts, without rebuilding
    the string.
    """

    __slots__ = (
        "authority",
        "default_or_port",
        "host",
        "origin",
        "port",
        "prefix",
        "raw_host",
        "scheme",
        "token_path",
        "token_url",
    )

    def __init__(self, base_url: str) -> None:
        """*base_url*: one that :func:`validate_base_url` returned."""
        self.origin: Origin = base_url_origin(base_url)
        self.scheme, self.host, self.port = self.origin
        self.raw_host = self.host.encode("ascii")  # as httpx's URL.raw_host gives it
        # The port as a parsed URL may report it: None for the scheme's default (httpx).
        self.default_or_port = None if self.port == DEFAULT_PORTS[self.scheme] else self.port
        # Most URLs start with the base URL's own spelling of the origin: a prefix test decides
        # them without parsing. The trailing "/" keeps "api.memoram.app.evil" out.
        self.prefix = "/".join(base_url.split("/", 3)[:3]) + "/"
        self.authority = self.prefix.split("/")[2]  # host and port as the base URL spells them
        self.token_url = f"{base_url}/auth/token"
        # A raw path (as sent) without percent-escapes that does not start with this cannot
        # be the token endpoint.
        self.token_path = "/" + self.token_url.split("/", 3)[3]

    def is_token_path(self, path: str) -> bool:
        """True if *path* (decoded, without the query) is the token endpoint's."""
        if not path.startswith(self.token_path):
            return False
        rest = path[len(self.token_path) :]
        return not rest or rest[0] == "/"

    def targets(self, url: str) -> bool:
        """True if a request to *url* gets the token: same origin, not the token endpoint."""
        # Most URLs start with the base URL's own spelling of the origin and, without escapes,
        # are decided by two prefix tests; everything else is parsed.
        if url.startswith(self.prefix):
            if not url.startswith(self.token_url) and "%" not in url:
                return True
            path = url[len(self.prefix) - 1 :]
        elif origin_of(url) == self.origin:
            parts = url.split("/", 3)
            path = "/" + parts[3] if len(parts) > 3 else "/"
        else:
            return False
        path = path.partition("?")[0].partition("#")[0]
        if "%" in path:
            from urllib.parse import unquote  # "%2F" and "%61" spell the token path too

            path = unquote(path)
        return not self.is_token_path(path)

    def targets_parts(self, scheme: str, raw_host: bytes, port: int | None, path: str) -> bool:
        """:meth:`targets` for a URL the HTTP library has parsed: *raw_host* lower-case and
        IDNA-encoded (as httpx's ``URL.raw_host``), *port* ``None`` or the scheme's default
        for the default, *path* decoded."""
        return (
            raw_host == self.raw_host
            and (port == self.port or port == self.default_or_port)
            and scheme == self.scheme
            and (not path.startswith(self.token_path) or not self.is_token_path(path))
        )

    def targets_yarl(self, url: URL) -> bool:
        """:meth:`targets` for a yarl URL (aiohttp's), from the parts yarl caches."""
        path = url.raw_path
        if "%" in path:
            return self.targets(str(url))  # the string rule decodes the path
        # Most URLs spell the authority as the base URL does: one comparison decides the
        # origin. Others are compared part by part (yarl's host is lower-case, its port
        # explicit or the default).
        if url.raw_authority != self.authority and (
            url.raw_host != self.host or url.port != self.port
        ):
            return False
        return url.scheme == self.scheme and (
            not path.startswith(self.token_path) or not self.is_token_path(path)
        )
