"""The requests half of MemoramAuth: set the header, and replay once after a 401.

The replay follows ``requests.auth.HTTPDigestAuth.handle_401`` with public API only: consume
the 401, copy the request, add the cookies the 401 set, rewind the body, send it on the same
connection adapter and keep the 401 in ``history``.
"""

from __future__ import annotations

from typing import Any, Callable

import requests
import requests.auth
from requests.cookies import get_cookie_header
from requests.exceptions import UnrewindableBodyError
from requests.utils import rewind_body

from ..core.provider import BEARER
from ..exceptions import TokenRequestError
from .base import AuthCore, call_budget, in_library_terms

__all__ = ["RequestsAuth"]

_IN_MEMORY = (bytes, str, type(None))


def _merge_cookies(sent: str | None, added: str) -> str:
    """A ``Cookie`` header: what was sent, with the cookies the 401 set added or replaced."""
    pairs: dict[str, str] = {}
    for part in [*(sent or "").split(";"), *added.split(";")]:
        name, _, value = part.strip().partition("=")
        if name:
            pairs[name] = value
    return "; ".join(f"{name}={value}" for name, value in pairs.items())


def send_budget(send_kwargs: dict[str, Any]) -> float | None:
    """The whole time a token request may take for a call sent with *send_kwargs*: its
    ``timeout``'s connect plus read seconds (see ``call_budget``), ``None`` if unbounded.

    requests hands the call's timeout to an auth only here, in a response hook: before the
    first request (``__call__``) no public route leads to it, and the policy's
    ``total_timeout`` bounds the token request alone.
    """
    timeout = send_kwargs.get("timeout")
    if isinstance(timeout, tuple) and len(timeout) == 2:
        return call_budget(*timeout)
    if isinstance(timeout, (int, float)):
        return call_budget(timeout, timeout)
    # urllib3's Timeout, which requests accepts as it is (public attributes).
    total = getattr(timeout, "total", None)
    if isinstance(total, (int, float)):
        return call_budget(total, 0)
    return call_budget(
        getattr(timeout, "connect_timeout", None), getattr(timeout, "read_timeout", None)
    )


class RequestsAuth(AuthCore, requests.auth.AuthBase):
    """An :class:`AuthCore` that requests can use as ``auth=``."""

    def _setup(self) -> None:
        # Called at the end of AuthCore.__init__ (an __init__ here would hold the key in its
        # *args, where traceback formatters that print locals would show it).
        self._last_target = "\x00"  # no URL: see __call__
        from ..transports.requests import RequestsTransport, requests_transport

        # The token request goes through requests too (see transports/requests.py): through
        # the user's session when given one, as there is no public route from a request to
        # the session that sends it.
        if self.session is None:
            self._transport = requests_transport(self.network)
        elif isinstance(self.session, requests.Session):
            self._transport = RequestsTransport(self.network, self.session)
        else:
            raise TypeError(
                f"session= must be a requests.Session, not {type(self.session).__name__}"
            )
        # One bound method, kept: the hook is added once per request by identity, and no
        # closure per request needs building.
        self._response_hook: Callable[..., requests.Response] = self.handle_401
        self._unauthenticated_hook: Callable[..., requests.Response] = self._note_401

    def _note_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:  # noqa: ANN401 - requests passes the send() arguments
        """The response hook of requests this object left alone: see note_unauthenticated_401."""
        if response.status_code == 401 and response.url:
            self.note_unauthenticated_401(response.url)
        return response

    def _authorization(self, within: float | None = None) -> str:
        """A header from a new token, the token request taking at most *within* seconds (else
        the policy's); a failure is also a ``requests.RequestException``."""
        try:
            return self.provider.authorization(self._transport, within=within)
        except TokenRequestError as exc:
            raise in_library_terms(exc, requests.RequestException) from exc

    def _authorization_for(self, response: requests.Response, send_kwargs: dict[str, Any]) -> str:
        """The header for replaying the request of *response* (a 401), which went out with
        *send_kwargs*: the call's timeout bounds the token request (see httpie_plugin for the
        transport that also takes the call's other settings)."""
        return self._authorization(send_budget(send_kwargs))

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        """Set ``Authorization`` on requests to the API's origin and hook the 401 replay."""
        url = r.url
        # The last URL found to need the token: a client that calls one endpoint again and
        # again is decided by one string comparison instead of the rule (scope.targets).
        if url != self._last_target:
            if url is None or not self.scope.targets(url):
                # Left alone; a 401 to it may mean the base URL is not set (see _note_401).
                hooks = r.hooks["response"]
                if self._unauthenticated_hook not in hooks:
                    hooks.append(self._unauthenticated_hook)
                return r
            self._last_target = url
        provider = self.provider
        r.headers["Authorization"] = provider.fresh_authorization() or self._authorization()
        hooks = r.hooks["response"]
        if self._response_hook not in hooks:
            hooks.append(self._response_hook)
        return r

    def handle_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:  # noqa: ANN401 - requests passes the send() arguments
        """The response hook: after a 401 to our header, a new token and one replay."""
        sent = response.request
        header = sent.headers.get("Authorization") or ""
        # Only on the API's origin (not after a redirect elsewhere).
        if response.status_code != 401 or not sent.url:
            return response
        if not self.scope.targets(sent.url):
            self.note_unauthenticated_401(sent.url)
            return response
        if header.startswith(BEARER):
            # Our token, rejected. Invalidated even when the body cannot be replayed, so the
            # next request gets a new one.
            self.provider.invalidate(header[len(BEARER) :])
        # Otherwise requests replaced our token on a same-origin redirect (with trust_env, it
        # applies ~/.netrc credentials to every redirected request): the token goes out again.
        replay = sent.copy()
        if not isinstance(replay.body, _IN_MEMORY):
            try:
                rewind_body(replay)  # a file rewound to where it started; a generator cannot be
            except UnrewindableBodyError:
                return response
        try:
            new_header = self._authorization_for(response, kwargs)
        except BaseException:
            # The caller gets the error, not this 401: its connection is let go here, or it
            # would stay checked out of the pool until the garbage collector found it.
            response.close()
            raise

        response.content  # noqa: B018 - drain the 401 so its connection can be reused
        response.close()
        added = get_cookie_header(response.cookies, replay)  # type: ignore[no-untyped-call]  # requests' helper has no annotations
        if added:
            replay.headers["Cookie"] = _merge_cookies(replay.headers.get("Cookie"), added)
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
