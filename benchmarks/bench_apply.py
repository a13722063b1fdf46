"""Cost of applying a cached token, per call, next to a bare header and to peer libraries.

requests: ``auth(prepared.copy())``; httpx: driving ``sync_auth_flow`` to its first request.
Peers: requests-auth and httpx-auth OAuth2 client credentials, with their memory cache and their
JSON file cache, each holding a valid token (no network). Targets: MemoramAuth at most 0.5x the
best peer, and at most 1.3x (requests) / 1.5x (httpx) the bare header assignment.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import httpx
import requests

from memoram_auth import MemoramAuth
from memoram_auth.emulator import Emulator

from ._common import interleaved, main, table, verdict

TOKEN = "header.payload.signature"  # noqa: S105 - a dummy, cached for every auth alike


def peers(kind: str, base_url: str, cache_file: Path) -> dict[str, Any]:
    """OAuth2 client-credentials auth objects of the peer library, with a valid cached token."""
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
    number, rounds = (2_000, 3) if quick else (20_000, 9)
    notes: list[str] = []
    rows: list[list[object]] = []
    with Emulator() as emu, tempfile.TemporaryDirectory() as tmp:
        auth = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp)
        auth.provider.get_token()  # warm: every measured call uses the cached token
        url = f"{emu.base_url}/tags"

        # requests
        prepared = requests.Request("GET", url).prepare()

        def bare_requests() -> None:
            p = prepared.copy()
            p.headers["Authorization"] = "Bearer " + TOKEN

        actions: dict[str, Any] = {
            "bare header": bare_requests,
            "MemoramAuth": lambda: auth(prepared.copy()),
        }
        peer_auths = peers("requests", emu.base_url, Path(tmp) / "peer")
        for name, (peer, cache, oauth2) in peer_auths.items():

            def call(peer: Any = peer, cache: Any = cache, oauth2: Any = oauth2) -> None:  # noqa: ANN401
                oauth2.token_cache = cache
                peer(prepared.copy())

            actions[name] = call
        rows += _rows("requests", interleaved(actions, number=number, rounds=rounds), 1.3, notes)

        # httpx
        request = httpx.Request("GET", url)

        def bare_httpx() -> None:
            request.headers["Authorization"] = "Bearer " + TOKEN

        actions = {
            "bare header": bare_httpx,
            "MemoramAuth": lambda: next(auth.sync_auth_flow(request)),
        }
        for name, (peer, cache, oauth2) in peers("httpx", emu.base_url, Path(tmp) / "peer").items():

            def flow(peer: Any = peer, cache: Any = cache, oauth2: Any = oauth2) -> None:  # noqa: ANN401
                oauth2.token_cache = cache
                next(peer.sync_auth_flow(request))

            actions[name] = flow
        rows += _rows("httpx", interleaved(actions, number=number, rounds=rounds), 1.5, notes)
    header = ["library", "auth", "µs per call", "vs bare header", "vs best peer"]
    return table(header, rows), notes


def _rows(
    library: str, results: dict[str, float], bare_target: float, notes: list[str]
) -> list[list[object]]:
    bare = results["bare header"]
    ours = results["MemoramAuth"]
    best_peer = min(v for k, v in results.items() if k not in ("bare header", "MemoramAuth"))
    rows: list[list[object]] = []
    for name, seconds in results.items():
        rows.append(
            [
                library,
                name,
                f"{seconds * 1e6:.2f}",
                f"{seconds / bare:.2f}x",
                f"{seconds / best_peer:.2f}x",
            ]
        )
    notes.append(
        f"{library}: MemoramAuth {ours / bare:.2f}x bare (target ≤ {bare_target}x: "
        f"{verdict(ours / bare, bare_target)}), {ours / best_peer:.2f}x best peer "
        f"(target ≤ 0.5x: {verdict(ours / best_peer, 0.5)})"
    )
    return rows


if __name__ == "__main__":
    main(run, __doc__)
