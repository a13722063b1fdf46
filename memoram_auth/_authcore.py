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
        # (token, its header): replaced as one tuple, so a reader never pairs mismatched halves.
        self._header: tuple[object, str] = (None, "")
        # Most URLs start with the base URL's own spelling of the origin: a prefix test decides
        # them without parsing. The trailing "/" keeps "api.memoram.app.evil" out.
        self._origin_prefix = "/".join(url.split("/", 3)[:3]) + "/"
        self._token_url = token_url(url)
        self._token_path = "/" + self._token_url.split("/", 3)[3]
        # A raw path (as sent) without percent-escapes that does not start with this cannot
        # be the token endpoint; the httpx flow decodes the path only otherwise.
        self._token_raw_path = self._token_path.encode()

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
        token = self.provider.get_token()
        cached = self._header
        if cached[0] is token:
            return cached[1]
        header = "Bearer " + token.value
        self._header = (token, header)
        return header

    async def bearer_header_async(self) -> str:
        """:meth:`bearer_header` for coroutines; the event loop never waits on a lock."""
        return "Bearer " + (await self.provider.get_token_async()).value

    def targets_parts(self, scheme: str, host: str, port: int | None, path: str) -> bool:
        """:meth:`targets` for a URL already split (as httpx keeps it); *port* None = default."""
        if scheme != self._scheme or host != self._host:
            return False
        if (port or DEFAULT_PORTS[scheme]) != self._port:
            return False
        if path.startswith(self._token_path):
            rest = path[len(self._token_path) :]
            return bool(rest) and rest[0] != "/"
        return True

    def targets(self, url: str) -> bool:
        """True if a request to *url* gets the token: same origin, not the token endpoint."""
        if not url.startswith(self._origin_prefix) and origin_of(url) != self._origin:
            return False
        if url.startswith(self._token_url):
            rest = url[len(self._token_url) :]
            return bool(rest) and rest[0] not in "/?#"
        return True
