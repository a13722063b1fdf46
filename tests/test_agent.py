"""memoram-auth agent: the server, its protocol and trust, and every client through it.

Servers run in this process (a thread) against the emulator over loopback; the command-line
tests run the real ``memoram-auth agent`` and ``agent exec`` processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

from memoram_auth import MemoramAuth
from memoram_auth.agent import protocol
from memoram_auth.agent.client import CONNECT_TIMEOUT, AgentProvider, request
from memoram_auth.agent.server import AgentServer, prepare_directory
from memoram_auth.cache import FileCache
from memoram_auth.emulator import Emulator
from memoram_auth.exceptions import (
    ConfigurationError,
    EndpointUnavailableError,
    MalformedResponseError,
    MemoramAuthError,
)
from memoram_auth.provider import TokenProvider

SCRIPT = Path(sys.executable).with_name("memoram-auth")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "memoram_auth"]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # A Unix socket's path has ~100 bytes: pytest's tmp_path can be longer.
    directory = Path(tempfile.mkdtemp(prefix="ma-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


class Running:
    def __init__(self, server: AgentServer, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread
        self.path = server.path

    def get(self, target: str, **headers: str) -> tuple[int, dict[str, object]]:
        status, body = request(self.path, "GET", target, headers=headers)
        return status, json.loads(body)


def start_agent(emu: Emulator, path: Path, cache: Path, **options: float) -> Running:
    provider = TokenProvider(emu.api_key, emu.base_url, cache=FileCache(cache))
    server = AgentServer(provider, str(path), log=lambda line: None, **options)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return Running(server, thread)


@pytest.fixture
def agent(emu: Emulator, short_dir: Path) -> Iterator[Running]:
    running = start_agent(emu, short_dir / "s" / "agent.sock", short_dir / "cache")
    try:
        yield running
    finally:
        running.server.stop()
        running.thread.join(5)


# -- the server and its protocol ------------------------------------------------------------


def test_token_status_and_the_socket_files(agent: Running, emu: Emulator) -> None:
    status, data = agent.get(protocol.TOKEN_PATH)
    assert status == 200
    assert data["token_type"] == "Bearer"
    assert isinstance(data["token"], str)
    assert data["token"].count(".") == 2
    assert str(data["expires_at"]).endswith("Z")
    assert data["base_url"] == emu.base_url
    status, info = agent.get(protocol.STATUS_PATH)
    assert status == 200
    assert info["base_url"] == emu.base_url
    assert info["pid"] == os.getpid()
    assert str(info["key"]).startswith("sha256:")
    assert emu.api_key not in json.dumps(info)
    assert str(data["token"]) not in json.dumps(info)
    assert stat.S_IMODE(os.lstat(agent.path).st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(os.path.dirname(agent.path)).st_mode) == 0o700
    assert emu.counters.token_requests == 1


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_curl_gets_a_token(agent: Running, emu: Emulator) -> None:
    out = subprocess.run(
        ["curl", "-s", "--unix-socket", agent.path, "http://localhost/v1/token"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    assert json.loads(out)["token_type"] == "Bearer"


def test_another_base_url_is_refused_never_served(agent: Running, emu: Emulator) -> None:
    status, data = agent.get(protocol.TOKEN_PATH, **{protocol.BASE_URL_HEADER: "https://x.test"})
    assert status == 421
    assert "token" not in data
    with pytest.raises(ConfigurationError, match="MEMORAM_AUTH_SOCK"):
        AgentProvider(agent.path, "https://other.example/api/v1").get_token()
    assert emu.counters.token_requests == 0


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"garbage\r\n\r\n", id="not-http"),
        pytest.param(
            b"GET /v1/token HTTP/1.1\r\nHost: " + b"x" * 10000 + b"\r\n\r\n", id="long-header"
        ),
        pytest.param(b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n", id="long-line"),
        pytest.param(
            b"GET /v1/token HTTP/1.1\r\n" + b"X-A: b\r\n" * 100 + b"\r\n", id="many-headers"
        ),
        pytest.param(
            b"POST /v1/token/rejected HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", id="huge-body"
        ),
        pytest.param(
            b"POST /v1/token/rejected HTTP/1.1\r\nContent-Length: 5\r\n\r\nnope!", id="not-json"
        ),
        pytest.param(
            b"POST /v1/token/rejected HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            id="chunked",
        ),
        pytest.param(b"GET /v1/token HTTP/1.1\r\nno colon\r\n\r\n", id="bad-header"),
    ],
)
def test_malformed_and_oversized_requests_get_a_400_only(
    agent: Running, emu: Emulator, raw: bytes
) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(agent.path)
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"eyJ" not in answer
    assert emu.api_key.encode() not in answer
    assert emu.counters.token_requests == 0


def test_unknown_paths_and_methods(agent: Running) -> None:
    assert request(agent.path, "GET", "/v2/token")[0] == 404
    assert request(agent.path, "POST", protocol.TOKEN_PATH)[0] == 405


def test_a_second_agent_refuses_and_a_dead_ones_socket_is_taken_over(
    emu: Emulator, agent: Running, short_dir: Path
) -> None:
    with pytest.raises(ConfigurationError, match="another agent is already serving"):
        start_agent(emu, Path(agent.path), short_dir / "cache")
    agent.server.stop()
    agent.thread.join(5)
    # A dead agent's socket: bound, never removed, nobody listening.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(agent.path)
    stale.close()
    taken = start_agent(emu, Path(agent.path), short_dir / "cache")
    try:
        assert taken.get(protocol.TOKEN_PATH)[0] == 200
    finally:
        taken.server.stop()
        taken.thread.join(5)
    assert not os.path.exists(agent.path)


def test_a_socket_that_cannot_be_set_up_is_closed_not_left_to_the_collector(
    emu: Emulator, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc
    import warnings

    def refuse(path: object, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")  # as a chmod on a odd filesystem

    provider = TokenProvider(emu.api_key, emu.base_url, cache=FileCache(short_dir / "cache"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        monkeypatch.setattr(os, "chmod", refuse)  # after the bind: the socket exists
        with pytest.raises(PermissionError):
            AgentServer(provider, str(short_dir / "s" / "agent.sock"), log=lambda line: None)
        monkeypatch.undo()
        gc.collect()  # an unclosed socket would say so now
    assert [str(w.message) for w in seen if w.category is ResourceWarning] == []


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o1777])
def test_a_directory_open_to_others_is_refused(short_dir: Path, mode: int) -> None:
    directory = short_dir / "open"
    directory.mkdir()
    directory.chmod(mode)
    with pytest.raises(ConfigurationError, match="open to other users"):
        prepare_directory(str(directory))


def test_a_symlinked_or_foreign_directory_is_refused(short_dir: Path) -> None:
    (short_dir / "real").mkdir(mode=0o700)
    (short_dir / "link").symlink_to(short_dir / "real")
    with pytest.raises(ConfigurationError, match="not a directory"):
        prepare_directory(str(short_dir / "link"))
    if os.geteuid() == 0:
        os.chown(short_dir / "real", 65534, 65534)
        with pytest.raises(ConfigurationError, match="owned by another user"):
            prepare_directory(str(short_dir / "real"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another uid")
def test_another_uid_is_refused_even_with_the_socket_mode_loosened(
    agent: Running, emu: Emulator
) -> None:
    # Loosened all the way: traversable directories, a socket anyone may connect to.
    os.chmod(os.path.dirname(os.path.dirname(agent.path)), 0o711)  # noqa: S103 - the point
    os.chmod(os.path.dirname(agent.path), 0o711)  # noqa: S103 - the point
    os.chmod(agent.path, 0o666)  # noqa: S103 - the point
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: another user, asking for a token
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            try:
                status, body = request(agent.path, "GET", protocol.TOKEN_PATH)
                os.write(write, f"{status} {body[:200]!r}".encode())
            except MemoramAuthError as exc:
                os.write(write, f"error {exc}".encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode()
    # A 403, or the connection closed under the client (it may not have finished sending
    # when the agent closed it): never a token, and no token request for it.
    assert said.startswith("403 ") or "reset" in said or "closed" in said, said
    assert "eyJ" not in said
    assert emu.counters.token_requests == 0
    # The agent's own user is still served.
    assert request(agent.path, "GET", protocol.TOKEN_PATH)[0] == 200


def test_many_idle_connections_cannot_exhaust_the_agent(emu: Emulator, short_dir: Path) -> None:
    running = start_agent(
        emu, short_dir / "s" / "agent.sock", short_dir / "cache", workers=4, request_timeout=0.3
    )
    idle = []
    try:
        for _ in range(40):  # ten times the workers, sending nothing
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(running.path)
            idle.append(sock)
        status, data = running.get(protocol.TOKEN_PATH)
        assert status == 200
        assert data["token_type"] == "Bearer"
        workers = [t for t in threading.enumerate() if t.name.startswith("memoram-auth-agent-")]
        assert len(workers) == 4  # a thread per worker, not per connection
    finally:
        for sock in idle:
            sock.close()
        running.server.stop()
        running.thread.join(5)


# -- compare-and-invalidate ------------------------------------------------------------------


def test_n_reports_of_one_rejected_token_make_one_token_request(
    agent: Running, emu: Emulator
) -> None:
    old = agent.get(protocol.TOKEN_PATH)[1]["token"]
    emu.revoke_all()
    emu.reset_counters()
    body = json.dumps({"token": old}).encode()
    answers = [request(agent.path, "POST", protocol.REJECTED_PATH, body) for _ in range(10)]
    tokens = {json.loads(payload)["token"] for _, payload in answers}
    assert {status for status, _ in answers} == {200}
    assert len(tokens) == 1
    assert old not in tokens
    assert emu.counters.token_requests == 1


def test_a_report_of_another_token_keeps_the_current_one(agent: Running, emu: Emulator) -> None:
    current = agent.get(protocol.TOKEN_PATH)[1]["token"]
    body = json.dumps({"token": "eyJ.not.current"}).encode()
    status, payload = request(agent.path, "POST", protocol.REJECTED_PATH, body)
    assert status == 200
    assert json.loads(payload)["token"] == current
    assert emu.counters.token_requests == 1


# -- clients ----------------------------------------------------------------------------------


@pytest.fixture
def via_agent(agent: Running, emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Running:
    monkeypatch.setenv("MEMORAM_AUTH_SOCK", agent.path)
    monkeypatch.setenv("MEMORAM_BASE_URL", emu.base_url)
    return agent


def test_requests_and_httpx_use_the_agent_and_replay_after_a_revocation(
    via_agent: Running, emu: Emulator
) -> None:
    auth = MemoramAuth()
    assert isinstance(auth.provider, AgentProvider)
    assert requests.get(f"{emu.base_url}/tags", auth=auth, timeout=10).status_code == 200
    with httpx.Client(auth=MemoramAuth()) as client:
        assert client.get(f"{emu.base_url}/tags").status_code == 200
    assert emu.counters.token_requests == 1
    emu.revoke_all()
    assert requests.get(f"{emu.base_url}/tags", auth=auth, timeout=10).status_code == 200
    with httpx.Client(auth=MemoramAuth()) as client:
        assert client.get(f"{emu.base_url}/tags").status_code == 200
    assert emu.counters.token_requests == 2


def test_httpx_async_uses_the_agent(via_agent: Running, emu: Emulator) -> None:
    import anyio

    async def main() -> list[int]:
        async with httpx.AsyncClient(auth=MemoramAuth()) as client:
            responses = [await client.get(f"{emu.base_url}/tags") for _ in range(3)]
            emu.revoke_all()
            responses.append(await client.get(f"{emu.base_url}/tags"))
        return [r.status_code for r in responses]

    assert anyio.run(main) == [200, 200, 200, 200]
    assert emu.counters.token_requests == 2


def test_aiohttp_middleware_uses_the_agent(via_agent: Running, emu: Emulator) -> None:
    aiohttp = pytest.importorskip("aiohttp")
    import asyncio

    from memoram_auth import MemoramMiddleware

    async def main() -> int:
        session = aiohttp.ClientSession(middlewares=(MemoramMiddleware(),))
        async with session, session.get(f"{emu.base_url}/tags") as response:
            await response.read()  # a body left unread leaves its transport open past the loop
            return int(response.status)

    assert asyncio.run(main()) == 200
    assert emu.counters.token_requests == 1


def test_an_explicit_key_wins_over_the_socket(
    emu: Emulator, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMORAM_AUTH_SOCK", str(short_dir / "nothing-here.sock"))
    auth = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=False)
    assert requests.get(f"{emu.base_url}/tags", auth=auth, timeout=10).status_code == 200


def test_the_socket_wins_over_the_environment_key_and_never_falls_back(
    emu: Emulator, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(short_dir / "nothing-here.sock")
    monkeypatch.setenv("MEMORAM_AUTH_SOCK", path)
    monkeypatch.setenv("MEMORAM_API_KEY", emu.api_key)
    auth = MemoramAuth(base_url=emu.base_url)
    with pytest.raises(EndpointUnavailableError, match="MEMORAM_AUTH_SOCK") as caught:
        requests.get(f"{emu.base_url}/tags", auth=auth, timeout=10)
    assert path in str(caught.value)
    assert "agent" in str(caught.value)
    assert emu.counters.token_requests == 0


def _fake_agent(
    path: str, answer: bytes | None, *, hold: bool = False, trickle: bool = False
) -> threading.Thread:
    """An agent that reads the request, sends *answer* (all at once, or with *trickle* a byte
    at a time for as long as the client listens), then closes, or with *hold* waits for the
    client to close first."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            conn.recv(65536)
            if trickle:
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                with contextlib.suppress(OSError):
                    while True:  # until the client gives up and closes
                        conn.sendall(b"X")
                        time.sleep(0.05)
            elif answer is not None:
                conn.sendall(answer)
            if hold:
                conn.recv(1)  # returns when the client closes
        finally:
            conn.close()
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param(b"\x00\x01garbage", MalformedResponseError, id="garbage"),
        pytest.param(None, EndpointUnavailableError, id="dies"),
        # Garbage from a connection left open is said at once, not after a read times out.
        pytest.param(b"SSH-2.0-garbage\r\n", MalformedResponseError, id="garbage-kept-open"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", MalformedResponseError, id="no-token"
        ),
    ],
)
def test_a_broken_agent_is_a_clear_error(
    short_dir: Path, answer: bytes | None, error: type[Exception]
) -> None:
    path = str(short_dir / "fake.sock")
    thread = _fake_agent(path, answer, hold=answer is not None and answer.startswith(b"SSH"))
    with pytest.raises(error, match="MEMORAM_AUTH_SOCK"):
        AgentProvider(path, "http://127.0.0.1:1/api/v1").get_token()
    thread.join(5)


# About a bound: pytest-timeout ends a hang (the default bound, 32 s, would outlast it).
@pytest.mark.timeout(30)
@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "trickling"])
def test_a_hung_agent_is_a_clear_error_bounded_by_the_policy(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch, trickle: bool
) -> None:
    from memoram_auth import RetryPolicy

    path = str(short_dir / "hung.sock")
    thread = _fake_agent(path, None, hold=True, trickle=trickle)
    monkeypatch.setenv("MEMORAM_AUTH_SOCK", path)
    auth = MemoramAuth(base_url="http://127.0.0.1:1/api/v1", policy=RetryPolicy(total_timeout=0.5))
    with pytest.raises(EndpointUnavailableError, match="MEMORAM_AUTH_SOCK") as caught:
        auth.provider.get_token()
    message = str(caught.value)
    assert "agent" in message
    assert f"within {0.5 + CONNECT_TIMEOUT:g} s" in message  # the policy's bound, and time to relay
    assert ("did not finish" if trickle else "did not answer") in message
    thread.join(5)
    assert not thread.is_alive()  # the client closed the connection when it gave up


def test_a_socket_with_no_agent_behind_it(short_dir: Path) -> None:
    path = str(short_dir / "dead.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()
    with pytest.raises(EndpointUnavailableError, match="no agent is listening"):
        AgentProvider(path, "http://127.0.0.1:1/api/v1").get_token()


def test_the_agent_relays_a_rejected_key(emu: Emulator, short_dir: Path) -> None:
    from memoram_auth.exceptions import KeyRejectedError

    running = start_agent(emu, short_dir / "s" / "agent.sock", short_dir / "cache")
    try:
        emu.remove_key(emu.api_key)
        with pytest.raises(KeyRejectedError, match="MEMORAM_AUTH_SOCK") as caught:
            AgentProvider(running.path, emu.base_url).get_token()
        assert caught.value.status == 401
    finally:
        running.server.stop()
        running.thread.join(5)


# -- the command line ------------------------------------------------------------------------


def _env(emu: Emulator, cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")}
    env.update(MEMORAM_BASE_URL=emu.base_url, MEMORAM_AUTH_CACHE_DIR=str(cache), **extra)
    return env


def _wait_for(path: str) -> None:
    for _ in range(500):
        if os.path.exists(path):
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def test_token_and_header_commands_through_the_agent(via_agent: Running, emu: Emulator) -> None:
    env = _env(emu, Path(via_agent.path).parent, MEMORAM_AUTH_SOCK=via_agent.path)
    token = subprocess.run(
        [*COMMAND, "token"], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    assert token == via_agent.get(protocol.TOKEN_PATH)[1]["token"]
    header = subprocess.run(
        [*COMMAND, "header"], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    assert header == f"Authorization: Bearer {token}"
    env["MEMORAM_AUTH_SOCK"] = via_agent.path + ".gone"
    failed = subprocess.run(
        [*COMMAND, "token"], env=env, capture_output=True, text=True, timeout=60
    )
    assert failed.returncode == 4
    assert "MEMORAM_AUTH_SOCK" in failed.stderr
    assert emu.counters.token_requests == 1


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], env=env, capture_output=True, text=True, timeout=60)


def test_status_with_the_socket_shows_the_agent_s_token(via_agent: Running, emu: Emulator) -> None:
    env = _env(emu, Path(via_agent.path).parent / "local", MEMORAM_AUTH_SOCK=via_agent.path)
    empty = _cli(env, "status")
    assert empty.returncode == 0, empty.stderr
    assert via_agent.path in empty.stdout
    assert "none held" in empty.stdout
    via_agent.get(protocol.TOKEN_PATH)
    shown = _cli(env, "status")
    assert shown.returncode == 0, shown.stderr
    assert emu.base_url in shown.stdout
    assert "sha256:" in shown.stdout
    assert "token      valid, expires in" in shown.stdout
    assert "lifetime" in shown.stdout
    data = json.loads(_cli(env, "status", "--json").stdout)
    assert data["agent"] == via_agent.path
    assert data["cached"] is True
    assert data["state"] == "valid"
    assert 0 < data["expires_in"] <= data["lifetime"]
    assert emu.counters.token_requests == 1  # status asked the agent, which asked nobody
    assert not (Path(via_agent.path).parent / "local").exists()  # no local cache touched


def test_status_with_the_socket_fails_clearly_for_another_base_url_or_no_agent(
    via_agent: Running, emu: Emulator
) -> None:
    other = "http://127.0.0.1:1/api/v1"
    env = _env(emu, Path(via_agent.path).parent, MEMORAM_AUTH_SOCK=via_agent.path)
    env["MEMORAM_BASE_URL"] = other
    wrong = _cli(env, "status")
    assert wrong.returncode == 2
    assert f"serves {emu.base_url}, not {other}" in wrong.stderr
    assert "MEMORAM_AUTH_SOCK" in wrong.stderr
    env["MEMORAM_AUTH_SOCK"] = via_agent.path + ".gone"
    gone = _cli(env, "status")
    assert gone.returncode == 4
    assert "MEMORAM_AUTH_SOCK" in gone.stderr


def test_clear_with_the_socket_refuses_and_its_advice_replaces_the_agent_s_token(
    via_agent: Running, emu: Emulator
) -> None:
    env = _env(emu, Path(via_agent.path).parent, MEMORAM_AUTH_SOCK=via_agent.path)
    first = str(via_agent.get(protocol.TOKEN_PATH)[1]["token"])
    refused = _cli(env, "clear")
    assert refused.returncode == 2
    assert "holds its own" in refused.stderr
    assert first not in refused.stderr
    advice = refused.stderr.split("report it as rejected: ", 1)[1].split(" (restarting", 1)[0]
    assert advice.startswith("memoram-auth token --rejected")
    # The advice, run as printed, in a shell where memoram-auth is the command under test.
    env["PATH"] = f"{SCRIPT.parent}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run(["sh", "-c", advice], env=env, capture_output=True, timeout=60, check=True)
    assert via_agent.get(protocol.TOKEN_PATH)[1]["token"] != first
    assert emu.counters.token_requests == 2


def test_the_agent_command_prints_the_export_line_and_stops_on_sigterm(
    emu: Emulator, short_dir: Path
) -> None:
    path = str(short_dir / "s" / "agent.sock")
    env = _env(emu, short_dir / "cache", MEMORAM_API_KEY=emu.api_key)
    process = subprocess.Popen(
        [*COMMAND, "agent", "--socket", path],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first == f"MEMORAM_AUTH_SOCK={path}; export MEMORAM_AUTH_SOCK;\n"
        _wait_for(path)
        second = subprocess.run(
            [*COMMAND, "agent", "--socket", path],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert "another agent is already serving" in second.stderr
        token = request(path, "GET", protocol.TOKEN_PATH)[1]
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert not os.path.exists(path)
    said = first + out + err + second.stdout + second.stderr
    assert emu.api_key not in said
    assert json.loads(token)["token"] not in said


def _stop_agent(path: str) -> None:
    _status, body = request(path, "GET", protocol.STATUS_PATH)
    pid = json.loads(body)["pid"]
    os.kill(pid, signal.SIGTERM)
    for _ in range(500):
        if not os.path.exists(path):
            return
        time.sleep(0.02)


PROBE = """
import os, sys, requests
from memoram_auth import MemoramAuth
environ = open(f"/proc/{os.getpid()}/environ", "rb").read()
cmdline = open(f"/proc/{os.getpid()}/cmdline", "rb").read()
key = open(sys.argv[1], "rb").read()
status = requests.get(os.environ["MEMORAM_BASE_URL"] + "/tags", auth=MemoramAuth(), timeout=10)
print(status.status_code, key in environ, key in cmdline, "MEMORAM_API_KEY" in os.environ)
sys.exit(7)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="needs /proc")
def test_exec_runs_the_command_without_the_key_and_shares_one_agent(
    emu: Emulator, short_dir: Path
) -> None:
    path = str(short_dir / "s" / "agent.sock")
    env = _env(emu, short_dir / "cache", MEMORAM_API_KEY=emu.api_key)
    # The probe reads what to look for from a file: on its command line it would be found.
    needle = str(short_dir / "needle")
    Path(needle).write_text(emu.api_key[-16:])
    try:
        runs = [
            subprocess.run(
                [
                    *COMMAND,
                    "agent",
                    "exec",
                    "--socket",
                    path,
                    "--",
                    sys.executable,
                    "-c",
                    PROBE,
                    needle,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            for _ in range(2)
        ]
        for run in runs:
            assert run.returncode == 7, run.stderr
            assert run.stdout.split() == ["200", "False", "False", "False"]
        pid = json.loads(request(path, "GET", protocol.STATUS_PATH)[1])["pid"]
        assert pid != os.getpid()
        assert emu.counters.token_requests == 1  # two execs, one agent, one token
    finally:
        if os.path.exists(path):
            _stop_agent(path)
    assert not os.path.exists(path)


HTTP = Path(sys.executable).with_name("http")


@pytest.mark.skipif(not HTTP.exists(), reason="httpie is not installed")
def test_httpie_uses_the_agent_and_replays_after_a_revocation(
    via_agent: Running, emu: Emulator, tmp_path: Path
) -> None:
    env = _env(emu, tmp_path / "cache", MEMORAM_AUTH_SOCK=via_agent.path)
    env["HTTPIE_CONFIG_DIR"] = str(tmp_path / "httpie")
    command = [str(HTTP), "--ignore-stdin", "--check-status", "-b", "-A", "memoram"]
    first = subprocess.run(
        [*command, f"{emu.base_url}/tags"], env=env, capture_output=True, text=True, timeout=60
    )
    assert first.returncode == 0, first.stderr
    emu.revoke_all()
    second = subprocess.run(
        [*command, f"{emu.base_url}/tags"], env=env, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 0, second.stderr
    assert emu.counters.token_requests == 2


CONTAINER_CLIENT = """
import os, requests
from memoram_auth import MemoramAuth
response = requests.get(os.environ["MEMORAM_BASE_URL"] + "/tags", auth=MemoramAuth(), timeout=10)
print(response.status_code, "MEMORAM_API_KEY" in os.environ)
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("mount") is None,
    reason="needs root, unshare and mount for a mount namespace",
)
def test_a_client_in_another_mount_namespace_uses_a_bind_mounted_socket(
    agent: Running, emu: Emulator, short_dir: Path
) -> None:
    # As with ssh-agent in a container: the agent's directory is bind-mounted at another path
    # in a namespace of its own; the client there has the socket and no key.
    inside = short_dir / "container-run"
    inside.mkdir()
    script = (
        f"mount --bind {os.path.dirname(agent.path)} {inside} && "
        f"exec {sys.executable} -c '{CONTAINER_CLIENT}'"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")}
    env.update(MEMORAM_AUTH_SOCK=str(inside / "agent.sock"), MEMORAM_BASE_URL=emu.base_url)
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0 and "mount" in result.stderr and "200" not in result.stdout:
        pytest.skip(f"no mount namespace here: {result.stderr.strip()[:200]}")
    assert result.stdout.split() == ["200", "False"], result.stderr
    assert not (inside / "agent.sock").exists()  # the bind mount stayed in its namespace
    assert emu.counters.token_requests == 1
