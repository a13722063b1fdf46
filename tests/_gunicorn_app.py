"""A WSGI app for the preforking-server test: gunicorn ``--preload`` imports it in the master,
which gets a token before forking the workers; each request to it calls the emulator's API
with :class:`memoram_auth.MemoramAuth` and answers, as JSON, which worker served it, a digest
of the token it sent, the API's status, and whether the token in memory could not be used when
the request began (the one case where a request waits for a token).

Configured by the environment: ``MEMORAM_BASE_URL``, ``MEMORAM_API_KEY``,
``MEMORAM_AUTH_CACHE_DIR`` and ``TEST_EXPIRES_IN`` (the token lifetime to ask for).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests

from memoram_auth import MemoramAuth
from memoram_auth.provider import TokenProvider
from memoram_auth.token import token_digest

auth = MemoramAuth(expires_in=int(os.environ["TEST_EXPIRES_IN"]), background_refresh=True)
provider = auth.provider
assert isinstance(provider, TokenProvider)
API = f"{os.environ['MEMORAM_BASE_URL'].rstrip('/')}/tags"
# The master's token, before the fork: the workers start with it. A session of its own,
# closed: a worker that sent on a connection it inherited would share its socket.
with requests.Session() as preload:
    preload.get(API, auth=auth, timeout=10).raise_for_status()
_sessions: dict[int, requests.Session] = {}


def _session() -> requests.Session:
    """This worker's session (gunicorn's sync workers serve one request at a time)."""
    pid = os.getpid()
    if pid not in _sessions:
        _sessions[pid] = requests.Session()
    return _sessions[pid]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """One API call, and what it used."""
    entry, now = provider.header.entry, time.time()
    unusable = entry is None or (now >= entry.usable_until and not provider._holds_over(entry, now))
    response = _session().get(API, auth=auth, timeout=10)
    sent = response.request.headers["Authorization"].removeprefix("Bearer ")
    body = json.dumps(
        {
            "pid": os.getpid(),
            "token": token_digest(sent),
            "status": response.status_code,
            "unusable": unusable,
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
