"""The requests half of MemoramAuth: set the header, and replay once after a 401.

The replay follows ``requests.auth.HTTPDigestAuth.handle_401``: consume the 401, copy the
request, carry its cookies, rewind the body, send it on the same connection adapter and keep the
401 in ``history``.
"""

from __future__ import annotations

from time import time as _now
from typing import Any, Callable

import requests
import requests.auth
from requests.cookies import extract_cookies_to_jar
from requests.utils import rewind_body

from ._authcore import AuthCore
from .provider import BEARER

__all__ = ["RequestsAuth"]

_IN_MEMORY = (bytes, str, type(None))


def _replayable(request: requests.PreparedRequest) -> bool:
    # bytes/str bodies (json=, data=, files=) can be sent again as they are; a file can if
    # requests recorded where it started (an int _body_position); a generator cannot.
    return isinstance(request.body, _IN_MEMORY) or isinstance(
        getattr(request, "_body_position", None), int
    )


class RequestsAuth(AuthCore, requests.auth.AuthBase):
    """An :class:`AuthCore` that requests can use as ``auth=``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - AuthCore's
        super().__init__(*args, **kwargs)
        # One bound method, kept: the hook test below is by identity, and an attribute set
        # here (not a cached_property, which materialises __dict__) keeps attribute reads on
        # the per-request path at their fastest.
        self._response_hook: Callable[..., requests.Response] = self.handle_401

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        """Set ``Authorization`` on requests to the API's origin and hook the 401 replay."""
        url = r.url
        # The common case inline (same origin spelled as configured, not the token endpoint);
        # targets() decides everything else. This runs once per request.
        if url and url.startswith(self._origin_prefix) and not url.startswith(self._token_url):
            pass
        elif url is None or not self.targets(url):
            return r
        # TokenProvider.authorization() inlined while the token is fresh: the call would cost
        # as much as the test itself, on a path that runs for every request.
        entry = self.provider._entry
        r.headers["Authorization"] = (
            entry.authorization
            if entry is not None and _now() < entry.refresh_at
            else self.provider.authorization()
        )
        # One hook object per auth, added once: it reads what was sent from the response, so
        # nothing per request needs building (a closure per call costs as much as the rest).
        hooks = r.hooks["response"]
        if self._response_hook not in hooks:
            hooks.append(self._response_hook)
        return r

    def handle_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:  # noqa: ANN401
        """The response hook: after a 401 to our header, a new token and one replay."""
        sent = response.request
        header = sent.headers.get("Authorization") or ""
        # Only our own header, on the API's origin (not after a redirect elsewhere).
        if (
            response.status_code != 401
            or not header.startswith(BEARER)
            or not sent.url
            or not self.targets(sent.url)
        ):
            return response
        # Invalidated even when the body cannot be replayed, so the next request gets a new one.
        self.provider.invalidate(header[len(BEARER) :])
        if not _replayable(sent):
            return response
        new_header = self.provider.authorization()

        response.content  # noqa: B018 - drain the 401 so its connection can be reused
        response.close()
        replay = sent.copy()
        if not isinstance(replay.body, _IN_MEMORY):
            rewind_body(replay)
        extract_cookies_to_jar(replay._cookies, sent, response.raw)  # type: ignore[attr-defined,no-untyped-call]
        replay.prepare_cookies(replay._cookies)  # type: ignore[attr-defined]
        replay.headers["Authorization"] = new_header
        # copy() shares the hooks dict: give the replay its own, without this hook, so that a
        # second 401 comes back to the caller instead of being replayed again.
        replay.hooks = {
            event: [hook for hook in hooks if hook != self._response_hook]
            for event, hooks in sent.hooks.items()
        }
        retried: requests.Response = response.connection.send(replay, **kwargs)
        retried.history.append(response)
        retried.request = replay
        return retried
