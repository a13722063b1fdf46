"""The httpie auth plugin: ``http --auth-type=memoram URL`` (or ``-A memoram``).

The key comes from ``--auth KEY``, else as for :class:`memoram_auth.MemoramAuth` (the
environment, then key plugins); the base URL from ``MEMORAM_BASE_URL``. httpie never prompts
and never parses ``user:password``. Tokens are cached on disk like every other use of the key,
so repeated ``http`` calls make one token request per token lifetime.

httpie puts its own plugin directory (``httpie cli plugins install``) on ``sys.path`` only
while it loads entry points, so everything a request needs later is imported here, now.
"""

from __future__ import annotations

from typing import Any

# Imported eagerly on purpose: see the module docstring.
import filelock  # noqa: F401 - imported for later, see the module docstring
import platformdirs  # noqa: F401 - imported for later, see the module docstring
import requests
import requests.auth
from httpie.plugins import AuthPlugin

from . import plugins
from ._requests import RequestsAuth
from .exceptions import MemoramAuthError

__all__ = ["MemoramAuthPlugin"]


class HttpieMemoramAuth(RequestsAuth):
    """MemoramAuth for httpie: the requests half only, so httpie does not load httpx."""


class _Failed(requests.auth.AuthBase):
    # httpie calls get_auth() while parsing arguments, where an exception would end in a
    # traceback; raised from the request instead, httpie prints it as one line and exits 1.
    def __init__(self, error: MemoramAuthError) -> None:
        self.error = error

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        raise self.error


class MemoramAuthPlugin(AuthPlugin):  # type: ignore[misc]  # AuthPlugin is untyped (Any)
    """``--auth-type=memoram``: Memoram API key in, short-lived bearer tokens out."""

    name = "Memoram API key"
    auth_type = "memoram"
    description = (
        "Memoram API key (from --auth, MEMORAM_API_KEY or a key plugin) exchanged for "
        "short-lived bearer tokens; base URL from MEMORAM_BASE_URL"
    )
    auth_require = False  # the key usually comes from the environment or a plugin
    auth_parse = False  # a key is not user:password
    prompt_password = False
    netrc_parse = False

    def get_auth(self, username: Any = None, password: Any = None) -> requests.auth.AuthBase:  # noqa: ANN401 - httpie passes untyped values
        key = self.raw_auth if isinstance(self.raw_auth, str) and self.raw_auth.strip() else None
        try:
            return HttpieMemoramAuth(key)
        except MemoramAuthError as exc:
            return _Failed(exc)


# Key plugins are loaded now too, while httpie's plugin directory is still importable.
if plugins.third_party_plugins_installed():
    plugins.get_plugin_manager()
