"""What every auth adapter shares, with no HTTP library: settings, provider, which URLs."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .. import _log
from .._env import BASE_URL_ENV
from .._origin import ApiOrigin
from .._policy import RetryPolicy
from .._urls import DEFAULT_PORTS, origin_of
from ..exceptions import TokenRequestError
from ..keys import ApiKey, refusal
from ..provider import provider_for
from ..settings import agent_socket, resolve, resolve_base_url
from ..transport import NetworkSettings

if TYPE_CHECKING:
    from ..agent.client import AgentProvider
    from ..plugins._backends import CacheDir
    from ..provider import TokenProvider
    from ..settings import Resolved
    from ..transport import Cert, Verify

__all__ = ["AuthCore", "call_budget", "in_library_terms"]

#: Origins already warned about by note_unauthenticated_401(), process-wide: auth objects are
#: cheap to create per request, and the warning is about configuration, which they share.
_noted_origins: set[str] = set()
_noted_lock = threading.Lock()
#: Past this many origins, no more warnings: a shared session that talks to many other
#: services must not grow this set without end.
MAX_NOTED_ORIGINS = 64


#: (our error class, the library's base error) -> a class that is both, made once per pair.
_both: dict[tuple[type[TokenRequestError], type[Exception]], type[TokenRequestError]] = {}


def in_library_terms(error: TokenRequestError, base: type[Exception]) -> TokenRequestError:
    """*error* again, as an instance of a class that is both its own and the HTTP library's
    *base* error (``requests.RequestException``, ``aiohttp.ClientError``).

    A token request that failed fails the user's call: retry code written for the library
    (``except requests.RequestException``, urllib3's or tenacity's retry on it) then handles
    it unchanged, and ``except KeyRejectedError`` still works. The class is made on the first
    failure, not at import.
    """
    kind = type(error)
    both = _both.get((kind, base))
    if both is None:
        made = type(kind.__name__, (kind, base), {"__module__": kind.__module__})
        both = _both.setdefault((kind, base), made)
    return both(str(error), status=error.status)


def call_budget(connect: object, read: object) -> float | None:
    """The seconds a call with these connect and read timeouts may wait in all, their sum: the
    most a token request made for that call may take (see ``Provider.refresh_steps``).

    ``None`` when either is unbounded (``None``) or not a number: the call may then wait
    without end, and the policy's ``total_timeout`` alone bounds the token request.
    """
    numbers = (int, float)
    if (
        isinstance(connect, numbers)
        and isinstance(read, numbers)
        and not isinstance(connect, bool)
        and not isinstance(read, bool)
    ):
        return max(0.0, float(connect) + float(read))
    return None


class AuthCore:
    """Resolves the settings once and decides which requests get the token.

    See :class:`memoram_auth.auth.MemoramAuth` for the arguments.
    """

    def __init__(
        self,
        api_key: str | ApiKey | None = None,
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
        background_refresh: bool | None = None,
        session: object = None,
    ) -> None:
        #: The user's requests.Session for the token request (requests only), if given.
        self.session = session
        #: The token request's own TLS trust, client certificate and proxy, if given.
        self.network = NetworkSettings(verify=verify, cert=cert, proxy=proxy, trust_env=trust_env)
        # The key is held as an ApiKey from here on, and the argument dropped from this frame:
        # traceback formatters that print locals would show it.
        given = None if api_key is None else ApiKey.of(api_key)
        del api_key
        socket = agent_socket(given)
        #: Key, base URL, network and cache settings, resolved and checked once; ``None`` when
        #: tokens come from the agent (``MEMORAM_AUTH_SOCK``), which holds the key and settings.
        self.settings: Resolved | None = None
        self.provider: TokenProvider | AgentProvider
        if socket is not None:
            from ..agent.client import CONNECT_TIMEOUT, AgentProvider

            url = resolve_base_url(base_url)
            # The agent holds the key and sends the token requests; the policy given here
            # bounds how long this client waits for it (plus the time to relay its error).
            self.provider = AgentProvider(
                socket,
                url,
                total_timeout=(policy or RetryPolicy()).total_timeout + CONNECT_TIMEOUT,
            )
        else:
            self.settings = resolve(
                given,
                base_url,
                network=self.network,
                cache_dir=cache_dir,
                cache_backend=cache_backend,
                policy=policy,
                expires_in=expires_in,
                background_refresh=background_refresh,
            )
            url = self.settings.base_url
            self.provider = provider_for(self.settings)
        #: Which requests get the token.
        self.scope = ApiOrigin(url)
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

    def targets(self, url: str) -> bool:
        """True if a request to *url* gets the token (see ``memoram_auth._origin.ApiOrigin``)."""
        return self.scope.targets(url)

    def note_unauthenticated_401(self, url: str) -> bool:
        """Say, once per origin, why a request this object left alone came back 401.

        With the key set but ``MEMORAM_BASE_URL`` unset or pointing elsewhere, requests to the
        API go out without a token and come back 401, with nothing to say why. The
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
        if origin is None or origin == self.scope.origin:
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
