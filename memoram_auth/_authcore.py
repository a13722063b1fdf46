"""What every auth adapter shares, with no HTTP library: settings, provider, which URLs."""

from __future__ import annotations

from .exchange import RetryPolicy, token_url
from .provider import TokenProvider, get_provider
from .settings import resolve_api_key, resolve_base_url
from .urls import DEFAULT_PORTS, base_url_origin, origin_of

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from .cache import CacheDir

__all__ = ["AuthCore"]


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
    ) -> None:
        url = resolve_base_url(base_url)
        key = resolve_api_key(api_key, url)
        self.provider: TokenProvider = get_provider(
            key,
            url,
            cache_dir=cache_dir,
            cache_backend=cache_backend,
            policy=policy,
            expires_in=expires_in,
        )
        self._origin = base_url_origin(url)
        self._scheme, self._host, self._port = self._origin
        # The port as httpx reports it: None for the scheme's default.
        self._default_or_port = None if self._port == DEFAULT_PORTS[self._scheme] else self._port
        # Most URLs start with the base URL's own spelling of the origin: a prefix test decides
        # them without parsing. The trailing "/" keeps "api.memoram.app.evil" out.
        self._origin_prefix = "/".join(url.split("/", 3)[:3]) + "/"
        self._token_url = token_url(url)
        # A raw path (as sent) without percent-escapes that does not start with this cannot
        # be the token endpoint; the httpx flow decodes the path only otherwise.
        self._token_path = "/" + self._token_url.split("/", 3)[3]

    @property
    def base_url(self) -> str:
        return self.provider.base_url

    @property
    def fingerprint(self) -> str:
        """A one-way name of the key, safe to show."""
        return self.provider.fingerprint

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, key={self.fingerprint})"

    def bearer_header(self) -> str:
        """``Bearer <current token>``, fetching a token if needed (built once per token)."""
        return self.provider.authorization()

    async def bearer_header_async(self) -> str:
        """:meth:`bearer_header` for coroutines; the event loop never waits on a lock."""
        return await self.provider.authorization_async()

    def is_token_path(self, path: str) -> bool:
        """True if *path* (decoded, without the query) is the token endpoint's."""
        if not path.startswith(self._token_path):
            return False
        rest = path[len(self._token_path) :]
        return not rest or rest[0] == "/"

    def targets(self, url: str) -> bool:
        """True if a request to *url* gets the token: same origin, not the token endpoint."""
        if not url.startswith(self._origin_prefix) and origin_of(url) != self._origin:
            return False
        if url.startswith(self._token_url):
            rest = url[len(self._token_url) :]
            return bool(rest) and rest[0] not in "/?#"
        return True
