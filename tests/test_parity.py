"""The parity table of the corporate-networks guide, executed: every cell names what one route
does, and a check per cell does it for real, over loopback (httpie and the command line as
real programs).

The table is parsed from docs/guides/corporate-networks.md; a row or column added there
without a check here fails, and so does a cell whose text differs from what its check proves.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from memoram_auth import MemoramAuth, MemoramAuthError, RetryPolicy
from memoram_auth.emulator import Emulator
from tests._hostile import FLOOD_BOUND, Flood, Recorder, Redirector, Trickle
from tests._proxy import ConnectProxy

PAGE = Path(__file__).resolve().parent.parent / "docs" / "guides" / "corporate-networks.md"
HEADING = "## The token request in each library"
COLUMNS = ["requests", "requests, `session=`", "httpx", "aiohttp", "httpie", "CLI"]
ONCE = RetryPolicy(attempts=1, timeout=10.0, total_timeout=20.0)
HTTP = (
    str(Path(sys.executable).with_name("http"))
    if Path(sys.executable).with_name("http").exists()
    else shutil.which("http")
)


def parity_table() -> dict[str, dict[str, str]]:
    """The table under HEADING: {row's first cell: {column: cell}}."""
    text = PAGE.read_text(encoding="utf-8")
    lines = text[text.index(HEADING) :].splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("|"))
    rows: list[str] = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break  # the table ends at the first line that is not a row
        rows.append(line)
    cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]
    header, body = cells[0], cells[2:]
    assert header[1:] == COLUMNS
    return {row[0]: dict(zip(header[1:], row[1:])) for row in body}


@dataclass
class Outcome:
    """What one call through a route came to: an exception, or a program's exit status."""

    error: BaseException | None = None
    status: int = 0
    stderr: str = ""


def _program(args: list[str], env: dict[str, str]) -> Outcome:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MEMORAM_", "HTTPIE_"))}
    done = subprocess.run(
        args, capture_output=True, text=True, env={**base, **env}, timeout=60, check=False
    )
    return Outcome(status=done.returncode, stderr=done.stderr)


def call(
    column: str,
    base_url: str,
    key: str,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    ca_bundle: str | None = None,
) -> Outcome:
    """One API call (or, for the CLI, one token) through *column*'s route."""
    env = env or {}
    program_env = {
        "MEMORAM_BASE_URL": base_url,
        "MEMORAM_API_KEY": key,
        "MEMORAM_AUTH_CACHE_DIR": str(tmp_path / "cache"),
        "HTTPIE_CONFIG_DIR": str(tmp_path / "httpie"),
        **env,
    }
    if column == "httpie":
        if ca_bundle:
            program_env["REQUESTS_CA_BUNDLE"] = ca_bundle
        assert HTTP, "the http program is not installed"
        return _program([HTTP, "--ignore-stdin", "-A", "memoram", f"{base_url}/tags"], program_env)
    if column == "CLI":
        args = [sys.executable, "-m", "memoram_auth", "token"]
        if ca_bundle:
            args += ["--ca-bundle", ca_bundle]
        return _program(args, program_env)
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        _in_process(column, base_url, key, tmp_path, ca_bundle)
    except Exception as exc:  # noqa: BLE001 - the outcome is judged by the check
        return Outcome(error=exc)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return Outcome()


def _in_process(column: str, base_url: str, key: str, tmp_path: Path, ca: str | None) -> None:
    options: dict[str, Any] = {"base_url": base_url, "cache_dir": tmp_path, "policy": ONCE}
    url = f"{base_url}/tags"
    if column == "requests":
        auth = MemoramAuth(key, verify=ca, **options)
        requests.get(url, auth=auth, timeout=10, verify=ca or True).raise_for_status()
    elif column == "requests, `session=`":
        session = requests.Session()
        session.verify = ca or True
        session.auth = MemoramAuth(key, session=session, **options)
        session.get(url, timeout=10).raise_for_status()
    elif column == "httpx":
        import ssl

        verify = ssl.create_default_context(cafile=ca) if ca else True
        auth = MemoramAuth(key, **options)
        with httpx.Client(auth=auth, verify=verify, follow_redirects=True) as client:
            client.get(url).raise_for_status()
    else:
        pytest.importorskip("aiohttp")
        import ssl

        from memoram_auth import MemoramMiddleware

        middleware = MemoramMiddleware(key, **options)
        context = ssl.create_default_context(cafile=ca) if ca else None

        from tests._sockets import tls_session

        async def main() -> None:
            async with (
                tls_session(middleware, ssl=context or True, trust_env=True) as session,
                session.get(url) as response,
            ):
                await response.read()  # a body left unread leaves its transport open
                response.raise_for_status()

        asyncio.run(main())


# -- the checks, one per row: each takes the column and proves the cell's text ----------------


def redirects(column: str, tmp_path: Path, **_: Any) -> str:
    with Recorder() as attacker, Redirector(307, attacker.origin) as endpoint:
        outcome = call(column, f"{endpoint.origin}/api/v1", "mem_parity_key", tmp_path)
        assert endpoint.requests == 1
        assert attacker.received == []
    if column == "CLI":
        assert outcome.status == 5, outcome.stderr
        return "never: exit 5"
    if column == "httpie":
        assert outcome.status == 1
        assert f"a redirect to {attacker.origin}" in outcome.stderr
        return "never: exit 1"
    assert isinstance(outcome.error, MemoramAuthError), outcome.error
    assert f"307, a redirect to {attacker.origin}" in str(outcome.error)
    return "never: an error naming it"


def answer_size(column: str, tmp_path: Path, **_: Any) -> str:
    with Flood() as flood:
        outcome = call(column, f"{flood.origin}/api/v1", "mem_parity_key", tmp_path)
    assert outcome.error is not None or outcome.status != 0
    assert 0 < flood.sent < FLOOD_BOUND
    return "64 KiB at most"


def plain_http_proxy(column: str, tmp_path: Path, connect_proxy: ConnectProxy, **_: Any) -> str:
    proxy = {"HTTP_PROXY": connect_proxy.url, "http_proxy": connect_proxy.url}
    with Emulator() as emu:
        outcome = call(column, emu.base_url, emu.api_key, tmp_path, env=proxy)
        token_requests = emu.counters.token_requests
    assert [url for _, url in connect_proxy.requests if url.endswith("/auth/token")] == []
    if column == "httpx":
        # The user's client would proxy it: refused, with what to do.
        assert isinstance(outcome.error, MemoramAuthError)
        assert "NO_PROXY" in str(outcome.error)
        return "never: refused, names `NO_PROXY`"
    assert (outcome.error, outcome.status) == (None, 0), (outcome.error, outcome.stderr)
    assert token_requests == 1
    return "never: sent direct"


def failure_type(column: str, tmp_path: Path, **_: Any) -> str:
    with Emulator() as emu:
        outcome = call(column, emu.base_url, "mem_not_a_key_it_knows", tmp_path)
    if column == "CLI":
        assert outcome.status == 3, outcome.stderr
        return "exit 3"
    if column == "httpie":
        assert outcome.status == 1
        assert len(outcome.stderr.strip().splitlines()) == 1
        return "exit 1, one line"
    assert isinstance(outcome.error, MemoramAuthError), outcome.error
    if column.startswith("requests"):
        assert isinstance(outcome.error, requests.RequestException)
        return "`MemoramAuthError`, `requests.RequestException`"
    if column == "aiohttp":
        aiohttp = pytest.importorskip("aiohttp")
        assert isinstance(outcome.error, aiohttp.ClientError)
        return "`MemoramAuthError`, `aiohttp.ClientError`"
    return "`MemoramAuthError`"


def private_ca(
    column: str, tmp_path: Path, tls_emulator: Emulator, ca_bundle: str, **_: Any
) -> str:
    outcome = call(
        column, tls_emulator.base_url, tls_emulator.api_key, tmp_path, ca_bundle=ca_bundle
    )
    assert (outcome.error, outcome.status) == (None, 0), (outcome.error, outcome.stderr)
    assert tls_emulator.counters.token_requests == 1
    return {
        "requests": "`verify=`",
        "requests, `session=`": "`Session.verify`",
        "httpx": "the client's `verify`",
        "aiohttp": "the session's connector",
        "httpie": "`REQUESTS_CA_BUNDLE`",
        "CLI": "`--ca-bundle`",
    }[column]


#: Ten minutes per attempt and in all: a token request that ends sooner was ended by the call.
PATIENT = RetryPolicy(attempts=3, timeout=600.0, total_timeout=600.0, backoff=0.01)
CALLS = "the call's timeout"


def _trickled(column: str, prompt: int, tmp_path: Path, **per_call: Any) -> tuple[Outcome, Trickle]:
    """One call through *column* to a token endpoint that trickles after *prompt* tokens."""
    with Trickle(prompt=prompt) as endpoint:
        base_url = f"{endpoint.origin}/api/v1"
        if column == "httpie":
            env = {
                "MEMORAM_BASE_URL": base_url,
                "MEMORAM_API_KEY": "mem_parity_key",
                "MEMORAM_AUTH_CACHE_DIR": str(tmp_path / "cache"),
                "HTTPIE_CONFIG_DIR": str(tmp_path / "httpie"),
            }
            assert HTTP, "the http program is not installed"
            args = [HTTP, "--ignore-stdin", "-A", "memoram", *per_call["args"], f"{base_url}/tags"]
            return _program(args, env), endpoint
        try:
            per_call["run"](base_url)
        except Exception as exc:  # noqa: BLE001 - the outcome is judged by the check
            return Outcome(error=exc), endpoint
        return Outcome(), endpoint


def call_timeout(column: str, tmp_path: Path, **_: Any) -> str:
    options: dict[str, Any] = {"cache_dir": tmp_path, "policy": PATIENT}
    if column == "CLI":
        # Nothing to give: the command's token request is bounded by the default policy.
        done = _program([sys.executable, "-m", "memoram_auth", "token", "--timeout", "1"], {})
        assert done.status == 2
        assert "--timeout" in done.stderr
        return "the policy's (no option)"
    if column == "httpie":
        outcome, endpoint = _trickled(column, 0, tmp_path, args=["--timeout", "0.5"])
        assert (outcome.status, endpoint.token_requests) == (1, 1), outcome.stderr
        assert CALLS in outcome.stderr
        return "`--timeout`"
    if column.startswith("requests"):

        def replayed(base_url: str) -> None:
            with requests.Session() as session:
                own = {"session": session} if column != "requests" else {}
                auth = MemoramAuth("mem_parity_key", base_url=base_url, **options, **own)
                session.get(f"{base_url}/tags", auth=auth, timeout=(0.5, 0.5))

        outcome, endpoint = _trickled(column, 1, tmp_path, run=replayed)
        assert isinstance(outcome.error, MemoramAuthError), outcome.error
        assert CALLS in str(outcome.error)
        assert (endpoint.token_requests, endpoint.unauthorized) == (2, 1)

        # Before the first request requests gives the auth no way to the call's timeout.
        def first(base_url: str) -> None:
            policy = RetryPolicy(attempts=1, timeout=1.0, total_timeout=1.0)
            with requests.Session() as session:
                own = {"session": session} if column != "requests" else {}
                auth = MemoramAuth(
                    "mem_parity_key", base_url=base_url, cache_dir=tmp_path, policy=policy, **own
                )
                session.get(f"{base_url}/tags", auth=auth, timeout=0.1)

        outcome, endpoint = _trickled(column, 0, tmp_path / "first", run=first)
        assert isinstance(outcome.error, MemoramAuthError), outcome.error
        assert CALLS not in str(outcome.error)
        return "after a 401; before it, `policy=`"
    if column == "httpx":
        for where in ("client", "request"):

            def through(base_url: str, where: str = where) -> None:
                auth = MemoramAuth("mem_parity_key", base_url=base_url, **options)
                if where == "client":
                    with httpx.Client(auth=auth, timeout=0.5) as client:
                        client.get(f"{base_url}/tags")
                    return
                with httpx.Client(auth=auth, timeout=None) as client:  # noqa: S113 - the request's
                    client.get(f"{base_url}/tags", timeout=0.5)

            outcome, endpoint = _trickled(column, 0, tmp_path / where, run=through)
            assert isinstance(outcome.error, MemoramAuthError), (where, outcome.error)
            assert CALLS in str(outcome.error)
            assert endpoint.token_requests == 1
        return "the client's or the request's"
    aiohttp = pytest.importorskip("aiohttp")
    from memoram_auth import MemoramMiddleware

    for bound in ("total", "sock_read"):

        def session_call(base_url: str, bound: str = bound) -> None:
            middleware = MemoramMiddleware("mem_parity_key", base_url=base_url, **options)
            session_timeout = aiohttp.ClientTimeout(total=None, sock_read=0.2)
            call_timeout = aiohttp.ClientTimeout(total=1.0)

            async def main() -> None:
                async with (
                    aiohttp.ClientSession(
                        middlewares=(middleware,),
                        timeout=session_timeout
                        if bound == "sock_read"
                        else aiohttp.ClientTimeout(),
                    ) as session,
                    session.get(
                        f"{base_url}/tags",
                        **({"timeout": call_timeout} if bound == "total" else {}),
                    ) as response,
                ):
                    await response.read()

            asyncio.run(main())

        outcome, endpoint = _trickled(column, 0, tmp_path / bound, run=session_call)
        if bound == "total":
            # The call's total ends the call, token request included, as aiohttp's timeout.
            assert isinstance(outcome.error, asyncio.TimeoutError), outcome.error
            assert endpoint.token_requests == 1
        else:
            # Each of the policy's three attempts ends at sock_read, not after ten minutes.
            assert isinstance(outcome.error, MemoramAuthError), outcome.error
            assert "Timeout" in str(outcome.error)
            assert endpoint.token_requests == PATIENT.attempts
    return "the call's total, the session's `sock_read`"


CHECKS: dict[str, Callable[..., str]] = {
    "a redirect of the token request is followed": redirects,
    "the token answer is read": answer_size,
    "a plain-http (loopback) base URL through `HTTP_PROXY`": plain_http_proxy,
    "a failed token request raises": failure_type,
    "a private CA for the token request": private_ca,
    "the call's timeout bounds the token request": call_timeout,
}


FIXTURES = {"connect_proxy", "tls_emulator", "ca_bundle"}


def test_the_table_has_a_check_for_every_row() -> None:
    assert set(parity_table()) == set(CHECKS)


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("row", list(CHECKS))
def test_each_cell_is_true(
    row: str, column: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if column == "httpie":
        pytest.importorskip("httpie")
    if column == "aiohttp":
        pytest.importorskip("aiohttp")
    check = CHECKS[row]
    # The fixtures a check names after the column and tmp_path (a proxy, the TLS emulator).
    wanted = [name for name in inspect.signature(check).parameters if name in FIXTURES]
    fixtures = {name: request.getfixturevalue(name) for name in wanted}
    proved = check(column, tmp_path, **fixtures)
    assert parity_table()[row][column] == proved
