"""Cost of applying a cached token, per call, next to a bare header and to peer libraries.

requests: ``auth(prepared.copy())``; httpx: driving ``sync_auth_flow`` to its first request.
Every auth is driven the same way, the bare header included: "bare header" is the smallest auth
the library allows that sets the header (a ``requests.auth.AuthBase`` whose ``__call__`` sets
it; an ``httpx.Auth`` whose ``sync_auth_flow`` sets it and yields). The assignment alone, with
no auth around it, is shown too, for scale. Peers: requests-auth and httpx-auth OAuth2 client
credentials, with their memory cache and their JSON file cache, each holding a valid token (no
network). Targets: MemoramAuth at most 0.5x the best peer, and at most 1.3x (requests) / 1.5x
(httpx) the bare header.
"""

from __future__ import annotations

import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx
import requests
import requests.auth

from memoram_auth import MemoramAuth
from memoram_auth.emulator import Emulator

from ._common import interleaved, main, table, verdict

TOKEN = "header.payload.signature"  # noqa: S105 - a dummy, cached for every auth alike
ASSIGNMENT = "assignment alone"
BARE = "bare header"


class BareRequestsAuth(requests.auth.AuthBase):
    """The least a requests auth can do: set the header."""

    def __init__(self, header: str) -> None:
        self.header = header

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self.header
        return r


class BareHttpxAuth(httpx.Auth):
    """The least an httpx auth can do: set the header in a one-step flow."""

    def __init__(self, header: str) -> None:
        self.header = header

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, Any, None]:
        request.headers["Authorization"] = self.header
        yield request


def peers(kind: str, base_url: str, cache_file: Path) -> dict[str, Any]:
    """OAuth2 client-credentials auth objects of the peer library, with a valid cached token.

    Each comes with its cache and the class whose ``token_cache`` attribute selects it: the
    libraries keep one cache per process, so the benchmark sets it before each turn.
    """
    if kind == "requests":
        import requests_auth as lib
        from requests_auth._oauth2.common import OAuth2
    else:
        import httpx_auth as lib  # type: ignore[no-redef]
        from httpx_auth._oauth2.common import OAuth2  # type: ignore[no-redef]
    made: dict[str, Any] = {}
    for name, cache in (
        ("memory cache", lib.TokenMemoryCache()),
        ("JSON file cache", lib.JsonTokenFileCache(str(cache_file.with_suffix(f".{kind}.json")))),
    ):
        auth = lib.OAuth2ClientCredentials(f"{base_url}/oauth/token", "client", "secret")
        cache._add_access_token(auth.state, TOKEN, 3600)
        made[
            f"{kind.replace('requests', 'requests-auth').replace('httpx', 'httpx-auth')} ({name})"
        ] = (auth, cache, OAuth2)
    return made


def run(quick: bool) -> tuple[str, list[str]]:
    number, rounds = (2_000, 3) if quick else (20_000, 25)
    notes: list[str] = []
    rows: list[list[object]] = []
    with Emulator() as emu, tempfile.TemporaryDirectory() as tmp:
        auth = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp)
        auth.provider.get_token()  # warm: every measured call uses the cached token
        url = f"{emu.base_url}/tags"

        # requests
        prepared = requests.Request("GET", url).prepare()
        bare_requests = BareRequestsAuth("Bearer " + TOKEN)

        def assignment_requests() -> None:
            p = prepared.copy()
            p.headers["Authorization"] = "Bearer " + TOKEN

        actions: dict[str, Any] = {
            ASSIGNMENT: assignment_requests,
            BARE: lambda: bare_requests(prepared.copy()),
            "MemoramAuth": lambda: auth(prepared.copy()),
        }
        setup: dict[str, Any] = {}
        for name, (peer, cache, oauth2) in peers("requests", emu.base_url, Path(tmp) / "p").items():
            actions[name] = lambda peer=peer: peer(prepared.copy())
            setup[name] = lambda cache=cache, oauth2=oauth2: setattr(oauth2, "token_cache", cache)
        results = interleaved(actions, number=number, rounds=rounds, setup=setup)
        rows += _rows("requests", results, 1.3, notes, quick=quick)

        # httpx
        request = httpx.Request("GET", url)
        bare_httpx = BareHttpxAuth("Bearer " + TOKEN)

        def assignment_httpx() -> None:
            request.headers["Authorization"] = "Bearer " + TOKEN

        actions = {
            ASSIGNMENT: assignment_httpx,
            BARE: lambda: next(bare_httpx.sync_auth_flow(request)),
            "MemoramAuth": lambda: next(auth.sync_auth_flow(request)),
        }
        setup = {}
        for name, (peer, cache, oauth2) in peers("httpx", emu.base_url, Path(tmp) / "p").items():
            actions[name] = lambda peer=peer: next(peer.sync_auth_flow(request))
            setup[name] = lambda cache=cache, oauth2=oauth2: setattr(oauth2, "token_cache", cache)
        results = interleaved(actions, number=number, rounds=rounds, setup=setup)
        rows += _rows("httpx", results, 1.5, notes, quick=quick)
    header = ["library", "auth", "µs per call", "µs over bare", "vs bare header", "vs best peer"]
    return table(header, rows), notes


def _rows(
    library: str, results: dict[str, float], bare_target: float, notes: list[str], *, quick: bool
) -> list[list[object]]:
    bare = results[BARE]
    ours = results["MemoramAuth"]
    best_peer = min(v for k, v in results.items() if k not in (ASSIGNMENT, BARE, "MemoramAuth"))
    rows: list[list[object]] = []
    for name, seconds in results.items():
        rows.append(
            [
                library,
                name,
                f"{seconds * 1e6:.2f}",
                f"{(seconds - bare) * 1e6:+.2f}",
                f"{seconds / bare:.2f}x",
                f"{seconds / best_peer:.2f}x",
            ]
        )
    vs_bare = verdict(ours / bare, bare_target, quick=quick)
    vs_peer = verdict(ours / best_peer, 0.5, quick=quick)
    notes.append(
        f"{library}: MemoramAuth {ours / bare:.2f}x bare (target ≤ {bare_target}x: "
        f"{vs_bare}), {ours / best_peer:.2f}x best peer "
        f"(target ≤ 0.5x: {vs_peer}); what it adds to the bare header "
        f"is {(ours - bare) / (best_peer - bare):.2f}x what the best peer adds"
    )
    return rows


if __name__ == "__main__":
    main(run, __doc__)
