"""The requests half of MemoramAuth: set the header, and replay once after a 401.

The replay follows ``requests.auth.HTTPDigestAuth.handle_401``: consume the 401, copy the
request, carry its cookies, rewind the body, send it on the same connection adapter and keep the
401 in ``history``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from requests.cookies import extract_cookies_to_jar
from requests.utils import rewind_body

if TYPE_CHECKING:
    import requests

    from ._authcore import AuthCore

__all__ = ["apply"]

_IN_MEMORY = (bytes, str, type(None))


def _replayable(request: requests.PreparedRequest) -> bool:
    # bytes/str bodies (json=, data=, files=) can be sent again as they are; a file can if
    # requests recorded where it started (an int _body_position); a generator cannot.
    return isinstance(request.body, _IN_MEMORY) or isinstance(
        getattr(request, "_body_position", None), int
    )


def apply(auth: AuthCore, request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Set ``Authorization`` on requests to the API's origin and hook the 401 replay."""
    if not request.url or not auth.targets(request.url):
        return request
    header = f"Bearer {auth.provider.get_token().value}"
    request.headers["Authorization"] = header
    hook = _on_response(auth, header, replayable=_replayable(request))
    request.register_hook("response", hook)  # type: ignore[no-untyped-call]
    return request


def _on_response(
    auth: AuthCore, header: str, *, replayable: bool
) -> Callable[..., requests.Response]:
    def handle_401(response: requests.Response, **kwargs: Any) -> requests.Response:  # noqa: ANN401
        sent = response.request
        # Only our own rejected header, on the API's origin (not after a redirect elsewhere).
        if (
            response.status_code != 401
            or sent.headers.get("Authorization") != header
            or not sent.url
            or not auth.targets(sent.url)
        ):
            return response
        # Invalidated even when the body cannot be replayed, so the next request gets a new one.
        auth.provider.invalidate(header[len("Bearer ") :])
        if not replayable:
            return response
        token = auth.provider.get_token()

        response.content  # noqa: B018 - drain the 401 so its connection can be reused
        response.close()
        replay = sent.copy()
        if not isinstance(replay.body, _IN_MEMORY):
            rewind_body(replay)
        extract_cookies_to_jar(replay._cookies, sent, response.raw)  # type: ignore[attr-defined,no-untyped-call]
        replay.prepare_cookies(replay._cookies)  # type: ignore[attr-defined]
        replay.headers["Authorization"] = f"Bearer {token.value}"
        # copy() shares the hooks dict: give the replay its own, without this hook, so that a
        # second 401 comes back to the caller instead of being replayed again.
        replay.hooks = {
            event: [hook for hook in hooks if hook is not handle_401]
            for event, hooks in sent.hooks.items()
        }
        retried = response.connection.send(replay, **kwargs)
        retried.history.append(response)
        retried.request = replay
        return retried

    return handle_401
