"""The token exchange: ``POST {base_url}/auth/token`` with the API key, and what the answer means.

The rules live in :mod:`memoram_auth.core.exchange`, as steps that send nothing themselves;
:func:`request_token` runs them with a transport (the stdlib one unless given another).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ._policy import RetryPolicy
from .core.exchange import (
    RETRY_STATUSES,
    USER_AGENT,
    build_request,
    exchange_steps,
    parse_response,
    retry_after,
    token_url,
)
from .core.steps import Transport, drive
from .keys import ApiKey
from .token import Token

__all__ = [
    "RETRY_STATUSES",
    "USER_AGENT",
    "build_request",
    "exchange_steps",
    "parse_response",
    "request_token",
    "retry_after",
    "token_url",
]


def request_token(
    base_url: str,
    api_key: str | ApiKey,
    *,
    expires_in: int | None = None,
    policy: RetryPolicy | None = None,
    transport: Transport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Token:
    """Exchange *api_key* for a token at *base_url* (already validated), with retries.

    *transport* sends each request (default: the stdlib one, with the environment's CA bundle
    and proxy); see :func:`exchange_steps` for the retry rules and the errors raised.
    """
    from .transport import urllib_transport

    steps = exchange_steps(
        base_url, ApiKey.of(api_key, "api_key="), expires_in=expires_in, policy=policy
    )
    del api_key  # see exchange_steps
    token: Token = drive(steps, transport or urllib_transport, sleep)
    return token
