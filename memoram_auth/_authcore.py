"""What every auth adapter shares, with no HTTP library: settings, provider, which URLs."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from . import _log
from ._env import BASE_URL_ENV
from ._policy import RetryPolicy
from ._urls import DEFAULT_PORTS, base_url_origin, origin_of
from .exchange import token_url
from .keys import ApiKey, refusal
from .provider import TokenProvider, get_provider
from .settings import resolve_api_key, resolve_base_url
from .transport import NetworkSettings

if TYPE_CHECKING:
    from ._backends import CacheDir
    from .transport import Cert, Verify

__all__ = ["AuthCore"]

#: Origins already warned about by note_unauthenticated_401(), process-wide: auth objects are
#: cheap to create per request, and the warning is about configuration, which they share.
_noted_origins: set[str] = set()
_noted_lock = threading.Lock()
#: Past this many origins, no more warnings: a shared session that talks to many other
#: services must not grow this set without end.
MAX_NOTED_ORIGINS = 64


class AuthCore:
    """Resolves the settings once and decides which requests get the token.

    See :class:`memoram_auth.auth.MemoramAuth` for the arguments.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        cache_dir: CacheDir = None,
        cache_backend: str | None = None,
        expires_in: int | None = None,
        policy: RetryPolicy | None = None,
        verify: Verify | None = None,
        cert: Cert | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
    ) -> None:
        #: The token request's own TLS trust, client certificate and proxy, if given.
        self.network = NetworkSettings(verify=verify, cert=cert, proxy=proxy, trust_env=trust_env)
        # The key is held as an ApiKey from here on, and the argument dropped from this frame:
        # traceback formatters that print locals would show it.
        given = None if api_key is None else ApiKey.of(api_key)
        del api_key
        url = resolve_base_url(base_url, api_key=given)
        key = ApiKey(resolve_api_key(given, url))
        self.provider: TokenProvider = get_provider(
            key,
            url,
            cache_dir=cache_dir,
            cache_backend=cache_backend,
            policy=policy,
            expires_in=expires_in,
            verify=verify,
            cert=cert,
            proxy=proxy,
            trust_env=trust_env,
        )
        self._origin = base_url_origin(url)
        self._scheme, self._host, self._port = self._origin
        self._raw_host = self._host.encode("ascii")  # as httpx's URL.raw_host gives it
        # The port as httpx reports it: None for the scheme's default.
        self._default_or_port = None if self._port == DEFAULT_PORTS[self._scheme] else self._port
        # Most URLs start with the base URL's own spelling of the origin: a prefix test decides
        # them without parsing. The trailing "/" keeps "api.memoram.app.evil" out.
        self._origin_prefix = "/".join(url.split("/", 3)[:3]) + "/"
        self._token_url = token_url(url)
        # A raw path (as sent) without percent-escapes that does not start with this cannot
        # be the token endpoint; the httpx flow decodes the path only otherwise.
        self._token_path = "/" + self._token_url.split("/", 3)[3]
        self._setup()

    def _setup(self) -> None:
        """What an adapter adds once the settings are resolved (nothing here)."""

    @property
    def base_url(self) -> str:
        return self.provider.base_url

    @property
    def fingerprint(self) -> str:
        """A one-way name of the key, safe to show."""
        return self.provider.fingerprint

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, key={self.fingerprint})"

    def __reduce__(self) -> str | tuple[object, ...]:
        # Refused on purpose: a pickle or copy would carry the key (through the provider).
        raise TypeError(refusal(f"a {type(self).__name__}"))

    def is_token_path(self, path: str) -> bool:
        """True if *path* (decoded, without the query) is the token endpoint's."""
        if not path.startswith(self._token_path):
            return False
        rest = path[len(self._token_path) :]
        return not rest or rest[0] == "/"

    def targets(self, url: str) -> bool:
        """True if a request to *url* gets the token: same origin, not the token endpoint."""
        # Most URLs start with the base URL's own spelling of the origin and, without escapes,
        # are decided by two prefix tests; everything else is parsed.
        if url.startswith(self._origin_prefix):
            if not url.startswith(self._token_url) and "%" not in url:
                return True
            path = url[len(self._origin_prefix) - 1 :]
        elif origin_of(url) == self._origin:
            parts = url.split("/", 3)
            path = "/" + parts[3] if len(parts) > 3 else "/"
        else:
            return False
        path = path.partition("?")[0].partition("#")[0]
        if "%" in path:
            from urllib.parse import unquote  # "%2F" and "%61" spell the token path too

            path = unquote(path)
        return not self.is_token_path(path)

    def note_unauthenticated_401(self, url: str) -> bool:
        """Say, once per origin, why a request this object left alone came back 401.

        With the key set but ``MEMORAM_BASE_URL`` unset or pointing elsewhere, requests to the
        API go out without a token and come back 401, and nothing said why (issue 16). The
        adapters call this for a 401 to a request they did not add the token to; for another
        origin than the base URL's, the first one logs a warning on the ``memoram_auth`` logger
        that names that origin, the configured base URL and how to change it. 401s from the
        base URL's own origin (the token endpoint's are KeyRejectedError's business) and URLs
        without an http(s) origin say nothing.

        Args:
            url: the URL the request went to (the response's, after redirects).

        Returns:
            True if this call logged the warning.
        """
        origin = origin_of(url)
        if origin is None or origin == self._origin:
            return False
        scheme, host, port = origin
        # Rebuilt from the parsed parts: a user:password@ in the URL never reaches the log.
        shown = f"{scheme}://{f'[{host}]' if ':' in host else host}"
        if port != DEFAULT_PORTS[scheme]:
            shown += f":{port}"
        with _noted_lock:
            if shown in _noted_origins or len(_noted_origins) >= MAX_NOTED_ORIGINS:
                return False
            _noted_origins.add(shown)
        _log.warning(
            "%s answered 401 to a request sent without a Memoram token: memoram-auth adds "
            "tokens only to requests for the configured base URL, %s. If %s is the Memoram "
            "API, set %s (or pass base_url=) to its base URL, e.g. %s/api/v1",
            shown,
            self.base_url,
            shown,
            BASE_URL_ENV,
            shown,
        )
        return True
