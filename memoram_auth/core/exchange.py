"""The token exchange: ``POST {base_url}/auth/token`` with the API key, and what the answer means.

This module builds the request, judges the answer strictly, turns the server's expiry into a
deadline on the local clock (see :func:`memoram_auth.token.token_lifetime`) and retries what is
worth retrying, as steps (see ``steps.py``): it sends nothing itself. It does no caching; the
provider decides when to call it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Generator

from .. import _log
from .._policy import RetryPolicy, check_expires_in
from .._version import __version__
from ..exceptions import (
    EndpointUnavailableError,
    KeyRejectedError,
    MalformedResponseError,
)
from ..keys import ApiKey
from ..token import Token, is_header_safe, parse_http_date, token_lifetime
from .steps import Answer, RawResponse, Step, TokenRequest, TransportError, Wait

__all__ = [
    "REDIRECT_STATUSES",
    "RETRY_STATUSES",
    "USER_AGENT",
    "build_request",
    "exchange_steps",
    "parse_response",
    "redirect_refused",
    "retry_after",
    "token_url",
]

USER_AGENT = f"memoram-auth/{__version__} python/{sys.version_info[0]}.{sys.version_info[1]}"

#: Answers that say "not now" rather than "no".
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_REJECT_STATUSES = frozenset({400, 401, 403})
#: Answers an HTTP library would follow. The token request never does, in any library: a
#: 307/308 would send the key to the Location, and any answer from there would be adopted as
#: the token (session fixation).
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def token_url(base_url: str) -> str:
    """The token endpoint under an already validated *base_url*."""
    return f"{base_url}/auth/token"


def build_request(
    api_key: str | ApiKey, expires_in: int | None = None
) -> tuple[dict[str, str], bytes]:
    """Headers and JSON body of a token request.

    No ``Authorization`` header: the endpoint is unauthenticated and the key goes in the body
    only. ``expires_in`` is sent only when asked for, so the server's default applies otherwise.
    """
    expires_in = check_expires_in(expires_in)
    payload: dict[str, object] = {"api_key": ApiKey.of(api_key).reveal()}
    if expires_in is not None:
        payload["expires_in"] = expires_in
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    return headers, json.dumps(payload).encode("utf-8")


def _shown(text: str, limit: int = 40) -> str:
    """Server-provided *text* as it may appear in a message: printable ASCII, cut short.

    Messages end up on terminals: a hostile ``Content-Type`` with ESC bytes would reach the
    CLI's stderr raw (terminal escape injection). Everything else becomes ``?``.
    """
    cleaned = "".join(char if " " <= char <= "~" else "?" for char in text[: limit + 1])
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def _describe(response: RawResponse) -> str:
    content_type = response.header("Content-Type") or "no content type"
    shown = _shown(content_type.split(";")[0])
    return f"{response.status} with a {len(response.body)}-byte {shown} body"


def redirect_refused(url: str, status: int, location: str | None) -> MalformedResponseError:
    """The error for a token endpoint that answered with a redirect: its status and where to.

    Only the Location's origin is named (rebuilt from its parts: no credentials, no path that
    might carry a secret), as printable ASCII.
    """
    from urllib.parse import urljoin

    from .._urls import origin_of

    where = "no Location"
    if location:
        try:
            origin = origin_of(urljoin(url, location.strip()))
        except ValueError:
            origin = None
        if origin is None:
            where = "a Location that is not an http(s) URL"
        else:
            scheme, host, port = origin
            where = _shown(f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}", 120)
    return MalformedResponseError(
        f"the token endpoint {url} answered {status}, a redirect to {where}; the token request "
        "never follows a redirect (it would carry the API key there): check that "
        "MEMORAM_BASE_URL is the API's own URL (it ends in /api/v1)",
        status=status,
    )


def parse_response(response: RawResponse, *, sent_at: float, url: str) -> Token:
    """Turn a 2xx answer into a :class:`Token`, or raise :class:`MalformedResponseError`.

    *sent_at* is ``time.time()`` just before the request left: the token's lifetime is counted
    from then, so time spent on the wire only makes us refresh earlier.
    """
    hint = "check that MEMORAM_BASE_URL points at the Memoram API (it ends in /api/v1)"
    try:
        data = json.loads(response.body)
    except (ValueError, RecursionError):
        raise MalformedResponseError(
            f"the token endpoint {url} answered {_describe(response)}, not JSON; {hint}",
            status=response.status,
        ) from None
    if not isinstance(data, dict):
        raise MalformedResponseError(
            f"the token endpoint {url} answered JSON that is not an object; {hint}",
            status=response.status,
        )
    token = data.get("token")
    if not isinstance(token, str) or not token:
        raise MalformedResponseError(
            f"the token endpoint {url} answered without a token; {hint}", status=response.status
        )
    if not is_header_safe(token):
        raise MalformedResponseError(
            f"the token endpoint {url} answered a token with characters that cannot go in an "
            f"HTTP header; {hint}",
            status=response.status,
        )
    token_type = data.get("token_type")
    if token_type is not None and (
        not isinstance(token_type, str) or token_type.lower() != "bearer"
    ):
        shown = _shown(token_type, 20) if isinstance(token_type, str) else type(token_type).__name__
        raise MalformedResponseError(
            f"the token endpoint {url} answered a token of type '{shown}', not Bearer; {hint}",
            status=response.status,
        )
    lifetime = token_lifetime(
        expires_at=data.get("expires_at"),
        date_header=response.header("Date"),
        token=token,
        sent_at=sent_at,
    )
    return Token(token, obtained_at=sent_at, expires_at=sent_at + lifetime)


def retry_after(response: RawResponse, now: float) -> float | None:
    """Seconds the server asked us to wait, from ``Retry-After``, or ``None``.

    An HTTP date is compared with the answer's own ``Date`` header when there is one, so a
    server whose clock is off does not make us wait hours or not at all.
    """
    value = (response.header("Retry-After") or "").strip()
    if not value:
        return None
    if (
        value.isascii() and value.isdigit()
    ):  # isdigit() alone also says yes to "²" (superscript two)
        return float(value)  # a 400-digit value is inf, which the caller caps
    when = parse_http_date(value)
    if when is None:
        return None
    server_now = parse_http_date(response.header("Date"))
    reference = server_now.timestamp() if server_now is not None else now
    return max(0.0, when.timestamp() - reference)


def _rejected(response: RawResponse, api_key: ApiKey) -> KeyRejectedError:
    fp = api_key.fingerprint
    # Where the key came from: the place to fix it (a stale key in a keyring, an old export).
    source = api_key.source or "the key given"
    if response.status == 400:
        message = (
            f"the token endpoint refused the request as invalid (400) for key {fp}; "
            f"check the API key (from {source}) and expires_in"
        )
    else:
        message = (
            f"the API key {fp} from {source} was rejected ({response.status}): it is wrong, "
            "revoked or for another API; correct it there, or create a new key in the Memoram "
            "dashboard"
        )
    return KeyRejectedError(message, status=response.status)


def exchange_steps(
    base_url: str,
    api_key: str | ApiKey,
    *,
    expires_in: int | None = None,
    policy: RetryPolicy | None = None,
    until: float | None = None,
) -> Generator[Step, Answer, Token]:
    """The token exchange as steps (see ``steps.py``): requests to send, waits between them.

    Connection errors, timeouts and 429/500/502/503/504 are retried with exponential backoff
    and jitter, honouring ``Retry-After`` up to ``policy.retry_after_cap``, within
    ``policy.total_timeout``: one deadline on the monotonic clock for the whole call, and one
    per attempt (``policy.timeout``), which a transport enforces while reading. 400/401/403
    are final, and so are failures a retry cannot heal (a certificate that does not verify).
    *until*, a ``time.monotonic()`` value, ends the exchange sooner than the policy would: the
    deadline of the call the token is for (its timeout), which the token request must not
    outlast.

    Raises:
        KeyRejectedError: 400, 401 or 403.
        EndpointUnavailableError: no usable answer within the attempts or the time allowed.
        MalformedResponseError: a redirect (never followed), any other status, or a 2xx that
            is not a Bearer token.
        ConfigurationError: *expires_in* is not a positive integer.
    """
    # The key and the body that holds it stay out of this frame's locals (traceback
    # formatters print them): an ApiKey and a TokenRequest show neither.
    key = ApiKey.of(api_key)
    del api_key
    policy = policy or RetryPolicy()
    url = token_url(base_url)
    template = TokenRequest(url, *build_request(key, expires_in), timeout=0.0, deadline=0.0)
    fp = key.fingerprint
    deadline = time.monotonic() + policy.total_timeout
    # Whose deadline binds: the policy's, or the caller's, which the error then names.
    callers = until is not None and until < deadline
    if until is not None and callers:
        deadline = until
    problem = "no attempt was made"
    status: int | None = None
    attempt = 0
    while attempt < max(1, policy.attempts):
        attempt += 1
        now = time.monotonic()
        if deadline - now <= 0:
            break
        _log.debug("requesting a token for key %s from %s (attempt %d)", fp, url, attempt)
        sent_at = time.time()
        wait: float | None = None
        answer = yield template.attempt(
            timeout=min(policy.timeout, deadline - now),
            deadline=min(deadline, now + policy.timeout),
        )
        if isinstance(answer, TransportError):
            # A transport's message can carry what the server sent (a broken status line):
            # shown as printable ASCII only, and cut short.
            problem, status = _shown(str(answer), 800), None
            if not answer.retry:
                raise EndpointUnavailableError(
                    f"the token request to {url} failed: {problem}", status=None
                )
        else:
            response: RawResponse = answer
            status = response.status
            if 200 <= status < 300:
                token = parse_response(response, sent_at=sent_at, url=url)
                _log.debug("got a token for key %s, valid %.0f s", fp, token.lifetime)
                return token
            if status in _REJECT_STATUSES:
                raise _rejected(response, key)
            if status in REDIRECT_STATUSES:
                raise redirect_refused(url, status, response.header("Location"))
            if status not in RETRY_STATUSES:
                raise MalformedResponseError(
                    f"the token endpoint {url} answered {_describe(response)}; check that "
                    "MEMORAM_BASE_URL points at the Memoram API (it ends in /api/v1)",
                    status=status,
                )
            problem = f"it answered {status}"
            wait = retry_after(response, time.time())
        if attempt >= policy.attempts:
            break
        delay = policy.delay(attempt) if wait is None else min(wait, policy.retry_after_cap)
        if time.monotonic() + delay >= deadline:
            allowed = "the call's timeout" if callers else f"the {policy.total_timeout:g} s allowed"
            problem += f"; a retry in {delay:.1f} s would pass {allowed}"
            break
        _log.debug("token request failed (%s); retrying in %.2f s", problem, delay)
        yield Wait(delay)
    if callers and time.monotonic() >= deadline:
        problem += "; the call's timeout ended the token request"
    raise EndpointUnavailableError(
        f"the token endpoint {url} is unavailable after {attempt} attempt(s): {problem}; "
        "check your network and MEMORAM_BASE_URL, or try again later",
        status=status,
    )
