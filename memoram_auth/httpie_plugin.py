"""The httpie auth plugin: ``http --auth-type=memoram URL`` (or ``-A memoram``).

The key comes from ``--auth KEY``, else as for :class:`memoram_auth.MemoramAuth` (the
agent at ``MEMORAM_AUTH_SOCK``, the environment, then key plugins); the base URL from
``MEMORAM_BASE_URL``. httpie never prompts and never parses ``user:password``. Tokens are
cached on disk like every other use of the key, so repeated ``http`` calls make one token
request per token lifetime.

httpie puts its own plugin directory (``httpie cli plugins install``) on ``sys.path`` only
while it loads entry points, so everything a request needs later is imported here, now.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Any, TextIO

# Imported eagerly on purpose: see the module docstring.
import filelock  # noqa: F401 - imported for later, see the module docstring
import platformdirs  # noqa: F401 - imported for later, see the module docstring
import requests
import requests.auth
from httpie.plugins import AuthPlugin

from . import plugins
from .adapters.base import in_library_terms
from .adapters.requests import RequestsAuth, send_budget
from .exceptions import MemoramAuthError, MemoramAuthWarning, TokenRequestError
from .keys import ApiKey
from .settings import KEY_OPTIONS, _resolve_api_key, agent_socket, resolve_base_url
from .transports.requests import AdapterTransport

__all__ = ["MemoramAuthPlugin"]


class HttpieMemoramAuth(RequestsAuth):
    """MemoramAuth for httpie: the requests half only, so httpie does not load httpx.

    httpie hands its auth plugins neither ``--verify``, ``--cert``/``--cert-key``,
    ``--proxy``, ``--timeout`` nor ``--offline``; it passes them to ``Session.send`` only, and
    so to the response hooks. So the token is set here only when a fresh one is at hand (in
    memory, or in the cache another run filled: ``cached_authorization``); otherwise the
    request goes out without one, and the API's 401 comes back to the replay hook, which gets
    the token through the same adapter with the arguments httpie sent with
    (``AdapterTransport``), within ``--timeout`` (connect plus read, for the whole token
    request), and sends the request again. A streamed body cannot be sent twice, so for one
    the token is fetched before the request, as before. ``http --offline`` sends nothing, so
    it makes no token request.
    """

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if r.url is None or not self.scope.targets(r.url):
            return super().__call__(r)  # left alone, as MemoramAuth leaves it
        # A new process has nothing in memory: a token another run cached saves this one the
        # 401 and the replay.
        header = self.provider.cached_authorization()
        if header is None and (
            self.settings is None or not isinstance(r.body, (bytes, str, type(None)))
        ):
            # A streamed body (--chunked, stdin, a file) may not go out twice, and the replay
            # after a 401 needs it to: the token is fetched first, as MemoramAuth does (with
            # the environment's TLS and proxy settings, not httpie's options). So is one from
            # the agent (no settings here): httpie's options would not reach its request.
            return super().__call__(r)
        if header is not None:
            r.headers["Authorization"] = header
        hooks = r.hooks["response"]
        if self._response_hook not in hooks:
            hooks.append(self._response_hook)
        return r

    def _authorization_for(self, response: requests.Response, send_kwargs: dict[str, Any]) -> str:
        transport = AdapterTransport(response.connection, send_kwargs)
        try:
            return self.provider.authorization(transport, within=send_budget(send_kwargs))
        except TokenRequestError as exc:
            raise in_library_terms(exc, requests.RequestException) from exc


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
        _one_line_warnings()
        raw = self.raw_auth
        # As an ApiKey that names httpie's --auth, so that a 401 says where the key came from.
        key = ApiKey(raw, KEY_OPTIONS["httpie"]) if isinstance(raw, str) and raw.strip() else None
        del raw
        try:
            if key is None and agent_socket() is None:
                # Resolved here rather than in MemoramAuth so that "no key" names httpie's
                # --auth, not Python's api_key=; the key then goes in as given.
                key = _resolve_api_key(None, resolve_base_url(), option=KEY_OPTIONS["httpie"])
            # One request and exit: no refresher thread (see MemoramAuth's background_refresh).
            return HttpieMemoramAuth(key, background_refresh=False)
        except MemoramAuthError as exc:
            return _Failed(exc)


def _one_line_warnings() -> None:
    """Show our warnings (a damaged cache file, ...) as one line, as httpie shows its errors.

    Python's default adds the source line of ours that warned, which means nothing to a user
    of ``http``. Other warnings are shown as before. Set when our auth type is used, in
    httpie's process only.
    """
    shown = warnings.showwarning
    if getattr(shown, "_memoram_one_line", False):
        return

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if not issubclass(category, MemoramAuthWarning):
            shown(message, category, filename, lineno, file, line)
            return
        # stderr closed: as warnings itself does, say nothing.
        with contextlib.suppress(OSError):
            print(f"http: warning: {message}", file=file or sys.stderr)

    show._memoram_one_line = True  # type: ignore[attr-defined]  # a marker on a function
    warnings.showwarning = show


# Key plugins are loaded now too, while httpie's plugin directory is still importable.
if plugins.third_party_plugins_installed():
    plugins.get_plugin_manager()
