"""Where the API key, the base URL and the cache directory come from when the caller does not say.

Precedence for the key: the argument, then ``MEMORAM_API_KEY``, then key plugins. The
environment wins over plugins, as AWS and gcloud environment credentials win over their
configured sources: it is the per-run override, and it lets a process that has its key in the
environment start without importing pluggy or any plugin.
"""

from __future__ import annotations

import os

from ._builtins import default_directory, environment_api_key
from ._env import API_KEY_ENV, BASE_URL_ENV
from ._urls import DEFAULT_BASE_URL, validate_base_url
from .exceptions import ConfigurationError
from .keys import ApiKey, normalize_api_key

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Iterable

#: ``MEMORAM_AUTH_CACHE_DIR``, else the platform's user cache directory: for cache backends
#: that keep a local file cache beside their own store.
default_cache_directory = default_directory

__all__ = [
    "KEY_OPTIONS",
    "default_cache_directory",
    "resolve_api_key",
    "resolve_base_url",
    "shown_url",
]


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


#: How to give a key, in the words of the place the message appears (issue 16).
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
        ConfigurationError: no key anywhere, or a key that cannot be one (not text:
            ``api_key=123`` raised AttributeError before, issue 12).
    """
    if api_key is None:
        api_key = environment_api_key()
    if api_key is None:
        from .plugins import get_api_key  # only now: plugins cost pluggy and a metadata scan

        api_key = get_api_key(base_url)
    if api_key is None or _blank(api_key):
        raise ConfigurationError(
            f"no Memoram API key: set {API_KEY_ENV}, or pass {option} "
            "(keys come from the Memoram dashboard and start with mem_)"
        )
    # Wrapped, so that the key is no plain local here if normalizing it raises.
    return normalize_api_key(ApiKey.of(api_key))


def _blank(api_key: str | ApiKey) -> bool:
    value = api_key.reveal() if isinstance(api_key, ApiKey) else api_key
    return isinstance(value, str) and not value.strip()
