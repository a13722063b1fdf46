"""Where the API key, the base URL and the cache directory come from when the caller does not say.

Precedence for the key: the argument, then ``MEMORAM_API_KEY``, then key plugins. The
environment wins over plugins, as AWS and gcloud environment credentials win over their
configured sources: it is the per-run override, and it lets a process that has its key in the
environment start without importing pluggy or any plugin.

Where tokens come from (:func:`agent_socket`): a key given explicitly (the argument,
``--api-key``, httpie's ``--auth``) is used; else, with ``MEMORAM_AUTH_SOCK`` set, the agent;
else the key as above. The socket comes before ``MEMORAM_API_KEY`` because setting it is the
decision to keep the key out of this process: a key left in the environment must not quietly
win over it, and a dead agent must be an error, not a silent fallback to that key.
"""

from __future__ import annotations

import os

from ._env import API_KEY_ENV, AUTH_SOCK_ENV, BACKGROUND_REFRESH_ENV, BASE_URL_ENV, OFF_VALUES
from ._urls import DEFAULT_BASE_URL, validate_base_url
from .exceptions import ConfigurationError
from .keys import ApiKey, normalize_api_key
from .plugins._defaults import default_directory, environment_api_key

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._policy import RetryPolicy
    from .plugins._backends import CacheDir
    from .transport import NetworkSettings

#: ``MEMORAM_AUTH_CACHE_DIR``, else the platform's user cache directory: for cache backends
#: that keep a local file cache beside their own store.
default_cache_directory = default_directory

__all__ = [
    "KEY_OPTIONS",
    "Resolved",
    "agent_socket",
    "background_refresh_enabled",
    "default_cache_directory",
    "resolve",
    "resolve_api_key",
    "resolve_base_url",
    "shown_url",
]


def agent_socket(api_key: object = None) -> str | None:
    """The agent's socket when tokens come from it, else ``None``: ``MEMORAM_AUTH_SOCK`` is set
    (not blank) and no key was given explicitly (*api_key* is ``None``).

    The one place that decides between the agent and a key; see the module's docstring.
    """
    if api_key is not None:
        return None
    return os.environ.get(AUTH_SOCK_ENV, "").strip() or None


def resolve_base_url(
    base_url: str | None = None, *, option: str = "base_url=", api_key: object = None
) -> str:
    """The argument, else ``MEMORAM_BASE_URL``, else the production API; validated.

    Args:
        base_url: the caller's value, if any.
        option: how the caller's value is given where the message will appear
            (``base_url=`` in Python, ``--base-url`` on the command line).
        api_key: the key the caller was given, if any: a message never shows a value that
            contains it (nor one that contains ``MEMORAM_API_KEY``'s).

    Raises:
        ConfigurationError: see :func:`memoram_auth._urls.validate_base_url`; the message
            also shows the value (without user name, password, query or fragment, and never
            if it looks like a key) and where it came from.
    """
    source = option
    if base_url is None:
        source = BASE_URL_ENV
        base_url = os.environ.get(BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL
    try:
        return validate_base_url(base_url)
    except ConfigurationError as exc:
        shown = _shown_base_url(base_url, api_key)
        raise ConfigurationError(f"{exc} (from {source}: {shown})") from None


def _shown_base_url(base_url: object, api_key: object) -> str:
    # The keys in play are looked at here, in a frame that has returned by the time the
    # error is raised: the raising frame's locals (which formatters print) never hold them.
    keys = [api_key.reveal() if isinstance(api_key, ApiKey) else api_key]
    keys.append(os.environ.get(API_KEY_ENV))
    return shown_url(base_url, hide=[key for key in keys if isinstance(key, str)])


def shown_url(value: object, hide: Iterable[str] = ()) -> str:
    """A rejected base URL as a message may show it: never a password, a query or a key.

    User info becomes ``...@``, a query or fragment ``?...``; text that contains ``mem_`` (an API
    key in the wrong place, as a swapped argument puts it) or any of *hide* (the keys in play)
    is not shown at all; anything but
    printable ASCII becomes ``?``, and more than 100 characters are cut.
    """
    if not isinstance(value, str):
        return f"a {type(value).__name__}, not text"
    text = value.strip()
    if "mem_" in text or any(key.strip() and key.strip() in text for key in hide):
        return "not shown, it looks like an API key"
    cut = min((i for i in (text.find("?"), text.find("#")) if i >= 0), default=-1)
    if cut >= 0:
        text = text[:cut] + "?..."
    scheme, separator, rest = text.partition("://")
    if separator:
        netloc, slash, path = rest.partition("/")
        if "@" in netloc:
            netloc = "...@" + netloc.rpartition("@")[2]
        text = f"{scheme}://{netloc}{slash}{path}"
    text = "".join(char if " " <= char <= "~" else "?" for char in text)
    if len(text) > 100:
        text = text[:100] + "..."
    return repr(text)


#: How to give a key, in the words of the place the message appears.
KEY_OPTIONS = {"python": "api_key=", "cli": "--api-key KEY", "httpie": "--auth KEY (-a KEY)"}


def resolve_api_key(
    api_key: str | ApiKey | None, base_url: str, *, option: str = "api_key="
) -> str:
    """The argument, else ``MEMORAM_API_KEY``, else key plugins; normalized.

    Args:
        api_key: the caller's key, if any.
        base_url: for key plugins, which may keep keys per API.
        option: how a key is passed where the message will appear (see :data:`KEY_OPTIONS`).

    Raises:
        ConfigurationError: no key anywhere (the message names the key plugins installed that
            found none, and what they say to run), or a key that cannot be one (not text:
            ``api_key=123``).
    """
    return _resolve_api_key(api_key, base_url, option=option).reveal()


def _resolve_api_key(api_key: str | ApiKey | None, base_url: str, *, option: str) -> ApiKey:
    """:func:`resolve_api_key`, as an :class:`ApiKey` that knows where it came from."""
    # A key handed on as an ApiKey keeps the source it was given (httpie's --auth).
    source: str | None = option
    if isinstance(api_key, ApiKey) and api_key.source:
        source = api_key.source
    if api_key is None:
        api_key, source = environment_api_key(), API_KEY_ENV
    if api_key is None:
        from .plugins import get_api_key_and_source  # only now: pluggy and a metadata scan

        api_key, source = get_api_key_and_source(base_url)
    if api_key is None or _blank(api_key):
        raise ConfigurationError(_no_key(option, base_url))
    # Wrapped, so that the key is no plain local here if normalizing it raises.
    return ApiKey(normalize_api_key(ApiKey.of(api_key)), source)


def _no_key(option: str, base_url: str) -> str:
    message = (
        f"no Memoram API key: set {API_KEY_ENV}, or pass {option} "
        "(keys come from the Memoram dashboard and start with mem_)"
    )
    from .plugins import no_key_hints  # no pluggy unless a plugin is installed

    hints = no_key_hints(base_url)
    if hints:
        # A key plugin is installed and found nothing: its own way to store a key is the
        # likelier fix than an environment variable.
        found = "; ".join(
            f"the {name} plugin has none for {base_url}: {hint}" for name, hint in hints
        )
        message += f"; {found}"
    return message


def _blank(api_key: str | ApiKey) -> bool:
    value = api_key.reveal() if isinstance(api_key, ApiKey) else api_key
    return isinstance(value, str) and not value.strip()


class Resolved:
    """One use of an API key, resolved and validated once: what everything downstream takes.

    Built by :func:`resolve` (adapters, the command line) or by
    :func:`memoram_auth.provider.get_provider` from its arguments; nothing after that checks
    the key, the base URL or the network settings again.
    """

    __slots__ = (
        "api_key",
        "background_refresh",
        "base_url",
        "cache_backend",
        "cache_dir",
        "expires_in",
        "network",
        "policy",
    )

    def __init__(
        self,
        api_key: ApiKey,
        base_url: str,
        *,
        network: NetworkSettings | None = None,
        cache_dir: CacheDir = None,
        cache_backend: str | None = None,
        policy: RetryPolicy | None = None,
        expires_in: int | None = None,
        background_refresh: bool = True,
    ) -> None:
        self.api_key = api_key  # an ApiKey: shows only its fingerprint
        self.base_url = base_url
        self.network = network
        self.cache_dir = cache_dir
        self.cache_backend = cache_backend
        self.policy = policy
        self.expires_in = expires_in
        #: Whether the advisory-window refresh runs in the refresher thread (see
        #: :func:`background_refresh_enabled`).
        self.background_refresh = background_refresh

    def with_network(self, network: NetworkSettings) -> Resolved:
        """These settings with *network* (the command line reads it only when it must send)."""
        return Resolved(
            self.api_key,
            self.base_url,
            network=network,
            cache_dir=self.cache_dir,
            cache_backend=self.cache_backend,
            policy=self.policy,
            expires_in=self.expires_in,
            background_refresh=self.background_refresh,
        )

    def __repr__(self) -> str:
        return f"Resolved(base_url={self.base_url!r}, key={self.api_key.fingerprint})"

    def __reduce__(self) -> str | tuple[object, ...]:
        from .keys import refusal

        raise TypeError(refusal("a Resolved"))


def resolve(
    api_key: str | ApiKey | None = None,
    base_url: str | None = None,
    *,
    option: str = "api_key=",
    base_url_option: str = "base_url=",
    network: NetworkSettings | None = None,
    cache_dir: CacheDir = None,
    cache_backend: str | None = None,
    policy: RetryPolicy | None = None,
    expires_in: int | None = None,
    background_refresh: bool | None = None,
) -> Resolved:
    """Base URL (:func:`resolve_base_url`), then key (:func:`resolve_api_key`), the policy and
    the asked lifetime, each checked once.

    Raises:
        ConfigurationError: as :func:`resolve_base_url`, :func:`resolve_api_key`,
            :func:`memoram_auth._policy.check_policy` and ``check_expires_in``.
    """
    # The key is held as an ApiKey from here on, and the argument dropped from this frame:
    # traceback formatters that print locals would show it.
    given = None if api_key is None else ApiKey.of(api_key)
    del api_key
    url = resolve_base_url(base_url, option=base_url_option, api_key=given)
    key = _resolve_api_key(given, url, option=option)
    if policy is not None or expires_in is not None:
        from ._policy import check_expires_in, check_policy  # typing: not for the command line

        policy, expires_in = check_policy(policy), check_expires_in(expires_in)
    return Resolved(
        key,
        url,
        network=network,
        cache_dir=cache_dir,
        cache_backend=cache_backend,
        policy=policy,
        expires_in=expires_in,
        background_refresh=background_refresh_enabled(background_refresh),
    )


def background_refresh_enabled(given: bool | None = None) -> bool:
    """Whether tokens are refreshed ahead of expiry in a background thread: *given*, else
    ``MEMORAM_AUTH_BACKGROUND_REFRESH`` (``0``, ``false``, ``no``, ``off`` turn it off), else on.

    Raises:
        ConfigurationError: *given* is not a bool or ``None``.
    """
    if given is None:
        return os.environ.get(BACKGROUND_REFRESH_ENV, "").strip().lower() not in OFF_VALUES
    if not isinstance(given, bool):
        raise ConfigurationError(f"background_refresh= must be True or False, not {given!r}")
    return given
