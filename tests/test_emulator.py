"""The emulator against the OpenAPI contract, over real loopback HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
import trustme

from memoram_auth import ConfigurationError
from memoram_auth.cache import MemoryOnlyCache
from memoram_auth.emulator import Emulator


def call(
    url: str,
    *,
    method: str = "GET",
    body: Any = None,
    raw: bytes | None = None,
    token: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers.items()), exc.read()


def get_token(emu: Emulator, **extra: Any) -> dict[str, Any]:
    status, _, body = call(
        f"{emu.base_url}/auth/token", method="POST", body={"api_key": emu.api_key, **extra}
    )
    assert status == 200
    return json.loads(body)


def test_token_answer_matches_the_contract(memoram_emulator: Emulator) -> None:
    status, headers, body = call(
        f"{memoram_emulator.base_url}/auth/token",
        method="POST",
        body={"api_key": memoram_emulator.api_key},
    )
    assert status == 200
    data = json.loads(body)
    assert set(data) == {"token", "expires_at", "token_type"}
    assert data["token_type"] == "Bearer"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["expires_at"])
    server_now = parsedate_to_datetime(headers["Date"])
    expires = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
    assert 3598 <= (expires - server_now).total_seconds() <= 3601


def test_token_is_a_real_hs256_jwt(memoram_emulator: Emulator) -> None:
    token = get_token(memoram_emulator)["token"]
    # Checked with PyJWT, an implementation independent of ours.
    claims = jwt.decode(token, memoram_emulator.state.secret, algorithms=["HS256"])
    assert set(claims) >= {"sub", "iat", "exp", "jti"}
    assert claims["exp"] - claims["iat"] == 3600
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_expires_in_is_honoured_up_to_the_maximum() -> None:
    with Emulator(max_lifetime=600) as emu:
        short = jwt.decode(
            get_token(emu, expires_in=60)["token"], options={"verify_signature": False}
        )
        long = jwt.decode(
            get_token(emu, expires_in=9999)["token"], options={"verify_signature": False}
        )
    assert short["exp"] - short["iat"] == 60
    assert long["exp"] - long["iat"] == 600


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="no-body"),
        pytest.param(b"api_key=mem_x", id="not-json"),
        pytest.param(b"[]", id="json-array"),
        pytest.param(b"{}", id="no-api-key"),
        pytest.param(b'{"api_key": 42}', id="api-key-not-a-string"),
        pytest.param(b'{"api_key": ""}', id="api-key-empty"),
        pytest.param(b'{"api_key": "KEY", "expires_in": 0}', id="expires-in-zero"),
        pytest.param(b'{"api_key": "KEY", "expires_in": -5}', id="expires-in-negative"),
        pytest.param(b'{"api_key": "KEY", "expires_in": "60"}', id="expires-in-string"),
        pytest.param(b'{"api_key": "KEY", "expires_in": true}', id="expires-in-bool"),
        pytest.param(b'{"api_key": "KEY", "expires_in": 1.5}', id="expires-in-float"),
    ],
)
def test_bad_token_requests_get_400(memoram_emulator: Emulator, raw: bytes) -> None:
    raw = raw.replace(b"KEY", memoram_emulator.api_key.encode())
    status, headers, body = call(f"{memoram_emulator.base_url}/auth/token", method="POST", raw=raw)
    assert status == 400
    assert "Date" in headers
    assert json.loads(body)["error"] == "invalid_request"
    assert memoram_emulator.counters.tokens_issued == 0


def test_unknown_key_gets_401(memoram_emulator: Emulator) -> None:
    status, headers, _ = call(
        f"{memoram_emulator.base_url}/auth/token", method="POST", body={"api_key": "mem_nope"}
    )
    assert status == 401
    assert "Date" in headers


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("GET", "/tags", None, 200),
        ("GET", "/tags/tag_1", None, 200),
        ("GET", "/tags/tag_99", None, 404),
        ("GET", "/memory-blobs?user_id=u1", None, 200),
        ("POST", "/memory-blobs", {"user_id": "u1", "content": "hello"}, 201),
    ],
    ids=["tags", "one-tag", "missing-tag", "list-blobs", "create-blob"],
)
def test_protected_endpoints_accept_a_valid_token(
    memoram_emulator: Emulator, method: str, path: str, body: Any, expected: int
) -> None:
    token = get_token(memoram_emulator)["token"]
    status, _, _ = call(memoram_emulator.base_url + path, method=method, body=body, token=token)
    assert status == expected
    assert memoram_emulator.counters.unauthorized == 0


def test_created_blob_can_be_read_back(memoram_emulator: Emulator) -> None:
    token = get_token(memoram_emulator)["token"]
    url = f"{memoram_emulator.base_url}/memory-blobs"
    _, _, created = call(url, method="POST", body={"user_id": "u1", "content": "x"}, token=token)
    blob_id = json.loads(created)["id"]
    status, _, body = call(f"{url}/{blob_id}", token=token)
    assert status == 200
    assert json.loads(body)["content"] == "x"
    _, _, listing = call(f"{url}?user_id=u1", token=token)
    assert [b["id"] for b in json.loads(listing)["memoryBlobs"]] == [blob_id]


def _expired_token(emu: Emulator) -> str:
    emu.clock_offset = -3600 - 5  # issue as if an hour ago: already expired now
    try:
        return str(get_token(emu)["token"])
    finally:
        emu.clock_offset = 0


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda emu: None, id="missing"),
        pytest.param(lambda emu: "not-a-jwt", id="malformed"),
        pytest.param(lambda emu: get_token(emu)["token"][:-2] + "xx", id="bad-signature"),
        pytest.param(_expired_token, id="expired"),
    ],
)
def test_protected_endpoints_refuse_bad_tokens(memoram_emulator: Emulator, make_token: Any) -> None:
    token = make_token(memoram_emulator)
    status, headers, _ = call(f"{memoram_emulator.base_url}/tags", token=token)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert memoram_emulator.counters.unauthorized == 1


def test_revoke_all_invalidates_earlier_tokens_only(memoram_emulator: Emulator) -> None:
    old = get_token(memoram_emulator)["token"]
    assert memoram_emulator.revoke_all() == 1
    new = get_token(memoram_emulator)["token"]
    assert call(f"{memoram_emulator.base_url}/tags", token=old)[0] == 401
    assert call(f"{memoram_emulator.base_url}/tags", token=new)[0] == 200


def test_counters_count_each_kind_of_request(memoram_emulator: Emulator) -> None:
    token = get_token(memoram_emulator)["token"]
    call(f"{memoram_emulator.base_url}/tags", token=token)
    call(f"{memoram_emulator.base_url}/tags")
    counters = memoram_emulator.counters
    assert (counters.token_requests, counters.tokens_issued) == (1, 1)
    assert (counters.api_requests, counters.unauthorized) == (2, 1)
    memoram_emulator.reset_counters()
    assert memoram_emulator.counters.api_requests == 0
    assert memoram_emulator.requests == []


@pytest.mark.parametrize("offset", [3 * 3600, -3 * 3600], ids=["ahead", "behind"])
def test_clock_offset_moves_date_and_claims_together(offset: int) -> None:
    with Emulator(clock_offset=offset) as emu:
        _, headers, body = call(
            f"{emu.base_url}/auth/token", method="POST", body={"api_key": emu.api_key}
        )
    claims = jwt.decode(json.loads(body)["token"], options={"verify_signature": False})
    server_date = parsedate_to_datetime(headers["Date"]).timestamp()
    assert abs(server_date - (time.time() + offset)) < 5
    assert abs(claims["iat"] - server_date) <= 1


def test_injected_faults_apply_in_order(memoram_emulator: Emulator) -> None:
    url = f"{memoram_emulator.base_url}/auth/token"
    body = {"api_key": memoram_emulator.api_key}
    memoram_emulator.fail_next(1, status=503, headers={"Retry-After": "7"})
    memoram_emulator.malformed_next(1, body=b"<html>oops</html>")
    status, headers, _ = call(url, method="POST", body=body)
    assert (status, headers["Retry-After"]) == (503, "7")
    assert call(url, method="POST", body=body)[2] == b"<html>oops</html>"
    assert call(url, method="POST", body=body)[0] == 200


def test_delay_and_drop_faults(memoram_emulator: Emulator) -> None:
    url = f"{memoram_emulator.base_url}/auth/token"
    memoram_emulator.delay_next(1, 0.3)
    start = time.monotonic()
    assert call(url, method="POST", body={"api_key": memoram_emulator.api_key})[0] == 200
    assert time.monotonic() - start >= 0.3
    memoram_emulator.drop_next(1)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        call(url, method="POST", body={"api_key": memoram_emulator.api_key})


@pytest.mark.parametrize("host", ["0.0.0.0", "evil.localhost", "localhost."])  # noqa: S104 - the point of the test
def test_emulator_refuses_non_loopback_hosts(host: str) -> None:
    with pytest.raises(ConfigurationError, match="loopback"):
        Emulator(host=host)


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_emulator_binds_ipv6_loopback_when_asked(host: str) -> None:
    from memoram_auth.provider import TokenProvider

    with Emulator(host=host) as emu:
        assert emu.base_url.startswith("http://[::1]:")
        provider = TokenProvider(emu.api_key, emu.base_url, cache=MemoryOnlyCache())
        assert provider.get_token().value.count(".") == 2
        assert emu.counters.token_requests == 1


@contextlib.contextmanager
def emulator_process(*args: str) -> Iterator[tuple[str, str]]:
    """Run ``python -m memoram_auth.emulator``; yields its first two output lines."""
    command = [sys.executable, "-m", "memoram_auth.emulator", "--port", "0", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            yield process.stdout.readline().strip(), process.stdout.readline().strip()
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_command_line_prints_url_and_generated_key() -> None:
    with emulator_process() as (first, second):
        base_url = re.search(r"(http://127\.0\.0\.1:\d+/api/v1)", first)
        key = re.fullmatch(r"accepted API key: (mem_[0-9a-f]{48})", second)
        assert base_url, first
        assert key, second
        status, _, _ = call(
            f"{base_url.group(1)}/auth/token", method="POST", body={"api_key": key.group(1)}
        )
        assert status == 200


def test_command_line_accepts_given_keys() -> None:
    with emulator_process("--api-key", "mem_a", "--api-key", "mem_b") as (_, second):
        assert second == "accepted API key: mem_a"


def test_command_line_refuses_non_loopback_host() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memoram_auth.emulator", "--host", "192.0.2.1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr
    assert "Traceback" not in result.stderr


def test_command_line_serves_https(tls_ca: trustme.CA, ca_bundle: str, tmp_path: Path) -> None:
    server = tls_ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "server.pem", tmp_path / "server.key"
    server.cert_chain_pems[0].write_to_path(str(certfile))
    server.private_key_pem.write_to_path(str(keyfile))
    with emulator_process("--certfile", str(certfile), "--keyfile", str(keyfile)) as lines:
        base_url = re.search(r"(https://127\.0\.0\.1:\d+/api/v1)", lines[0])
        assert base_url, lines[0]
        key = lines[1].rpartition(" ")[2]
        request = urllib.request.Request(
            f"{base_url.group(1)}/auth/token",
            data=json.dumps({"api_key": key}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        context = ssl.create_default_context(cafile=ca_bundle)
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            assert response.status == 200


@pytest.mark.parametrize(
    "args",
    [["--certfile", "/nonexistent/cert.pem"], ["--keyfile", "/nonexistent/key.pem"]],
    ids=["missing-certfile", "keyfile-without-certfile"],
)
def test_command_line_reports_bad_tls_options(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memoram_auth.emulator", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "cannot set up HTTPS" in result.stderr
    assert "Traceback" not in result.stderr


def test_pytest_fixture_reaches_user_test_suites(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import urllib.request, json

        def test_uses_fixture(memoram_emulator):
            body = json.dumps({"api_key": memoram_emulator.api_key}).encode()
            request = urllib.request.Request(
                memoram_emulator.base_url + "/auth/token", data=body, method="POST"
            )
            assert urllib.request.urlopen(request).status == 200
            assert memoram_emulator.counters.token_requests == 1
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_stopped_emulator_has_no_port() -> None:
    emu = Emulator()
    with pytest.raises(RuntimeError, match="not running"):
        _ = emu.port
    emu.start()
    emu.stop()
    emu.stop()  # twice is fine
    assert "stopped" in repr(emu)


def test_the_fixture_keeps_tokens_out_of_the_users_cache(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    pytester.makepyfile(
        """
        import os, subprocess, sys

        import requests

        from memoram_auth import MemoramAuth
        from memoram_auth.plugins._defaults import default_directory


        def test_the_default_would_be_the_users_cache():
            # What makes this suite able to fail: without the fixture, tokens go here.
            assert default_directory().startswith(os.environ["XDG_CACHE_HOME"])


        def test_python(memoram_emulator):
            assert os.environ["MEMORAM_AUTH_CACHE_DIR"] == memoram_emulator.cache_dir
            auth = MemoramAuth(memoram_emulator.api_key, base_url=memoram_emulator.base_url)
            url = memoram_emulator.base_url + "/tags"
            assert requests.get(url, auth=auth, timeout=10).status_code == 200
            assert any(name.endswith(".token") for name in os.listdir(memoram_emulator.cache_dir))


        def test_a_child_process(memoram_emulator):
            env = {**os.environ, "MEMORAM_BASE_URL": memoram_emulator.base_url,
                   "MEMORAM_API_KEY": memoram_emulator.api_key}
            subprocess.run([sys.executable, "-m", "memoram_auth", "token"], env=env,
                           check=True, stdout=subprocess.DEVNULL, timeout=60)


        def test_each_use_has_its_own_cache_and_it_is_restored_after(memoram_emulator):
            assert not os.listdir(memoram_emulator.cache_dir)


        def test_zz_restored():
            assert "MEMORAM_AUTH_CACHE_DIR" not in os.environ
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=5)
    created = [str(p.relative_to(home)) for p in home.rglob("*")]
    assert [p for p in created if "memoram" in p] == [], created


def test_sixty_concurrent_connections_all_get_answers() -> None:
    import socket
    import threading

    from memoram_auth.emulator._handler import EmulatorServer
    from memoram_auth.emulator._state import State

    state = State(["mem_x"], max_lifetime=60, default_lifetime=60, clock_offset=0, token_delay=0)
    server = EmulatorServer(("127.0.0.1", 0), state)
    thread = None
    sockets: list[socket.socket] = []
    try:
        # All 60 connect while nothing accepts: each waits in the listen backlog. With the
        # old backlog of 5, the kernel dropped the rest and their connects timed out.
        for _ in range(60):
            sockets.append(socket.create_connection(server.server_address[:2], timeout=3))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        for sock in sockets:
            sock.sendall(b"GET /api/v1/tags HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = [sock.makefile("rb").readline() for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
        server.shutdown() if thread is not None else None
        server.server_close()
        if thread is not None:
            thread.join(timeout=10)
    assert answers == [b"HTTP/1.1 401 Unauthorized\r\n"] * 60


def test_the_lines_it_prints_paste_into_a_shell_as_they_are(tmp_path: Path) -> None:
    key = "mem_paste$HOME'x"  # a key that a shell would expand or choke on, unquoted
    command = [sys.executable, "-m", "memoram_auth.emulator", "--port", "0", "--api-key", key]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline().rstrip("\n") for _ in range(7)]
            export = next(line for line in lines if line.startswith("export "))
            revoke = next(line for line in lines if line.startswith("python -m"))
            script = (
                f"{export}\n"
                f'test "$MEMORAM_API_KEY" = {shlex_quote(key)}\n'
                f"{sys.executable} -m memoram_auth token --cache-dir {tmp_path / 'c'}\n"
                f"{revoke}\n"
            )
            # "python" as the user's shell finds it: this environment's.
            path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
            result = subprocess.run(
                ["sh", "-ec", script],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "PATH": path},
            )
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    token, revoked = result.stdout.splitlines()
    assert token.count(".") == 2
    assert revoked.startswith("revoked 1 token(s)")
    assert lines[-1] == "Ctrl-C to stop"


def shlex_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


MEMORAM_AUTH = Path(sys.executable).with_name("memoram-auth")


def emulator_command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = (
        [str(MEMORAM_AUTH)] if MEMORAM_AUTH.exists() else [sys.executable, "-m", "memoram_auth"]
    )
    return subprocess.run(
        [*command, "emulator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_revoke_from_the_command_line_and_the_replay_recovers(memoram_emulator: Emulator) -> None:
    import requests

    from memoram_auth import MemoramAuth

    emu = memoram_emulator
    auth = MemoramAuth(emu.api_key, base_url=emu.base_url)
    with requests.Session() as session:
        session.auth = auth
        assert session.get(f"{emu.base_url}/tags", timeout=10).status_code == 200
        result = emulator_command("revoke", "--port", str(emu.port))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("revoked 1 token(s)")
        response = session.get(f"{emu.base_url}/tags", timeout=10)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]  # the 401, then the replay
    assert (emu.counters.unauthorized, emu.counters.token_requests) == (1, 2)


def test_reject_key_and_accept_key_from_the_command_line(memoram_emulator: Emulator) -> None:
    emu = memoram_emulator
    # From MEMORAM_BASE_URL, as after pasting the emulator's export line.
    rejected = emulator_command("reject-key", MEMORAM_BASE_URL=emu.base_url)
    assert rejected.returncode == 0, rejected.stderr
    assert rejected.stdout.startswith("rejected 1 key(s)")
    status, _, _ = call(f"{emu.base_url}/auth/token", method="POST", body={"api_key": emu.api_key})
    assert status == 401
    accepted = emulator_command("accept-key", emu.api_key, "--base-url", emu.base_url)
    assert accepted.returncode == 0, accepted.stderr
    assert get_token(emu)["token_type"] == "Bearer"
    assert emu.counters.api_requests == 0  # the controls are not API traffic


@pytest.mark.parametrize(
    ("args", "words"),
    [
        pytest.param(["--base-url", "https://api.memoram.app/api/v1"], "loopback", id="remote"),
        pytest.param(["--port", "1"], "no emulator answered at http://127.0.0.1:1", id="none"),
    ],
)
def test_the_controls_reach_only_a_loopback_emulator(args: list[str], words: str) -> None:
    result = emulator_command("revoke", *args)
    assert result.returncode in (1, 2)
    assert words in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("method", "content_type", "path", "status"),
    [
        pytest.param("POST", "text/plain", "revoke", 415, id="form-or-text-post"),
        pytest.param("GET", "application/json", "revoke", 405, id="get"),
        pytest.param("POST", "application/json", "bogus", 404, id="unknown"),
        pytest.param("POST", "application/json", "accept-key", 400, id="accept-without-key"),
    ],
)
def test_the_control_endpoints_refuse_what_a_web_page_could_send(
    memoram_emulator: Emulator, method: str, content_type: str, path: str, status: int
) -> None:
    memoram_emulator.revoke_all()
    token = get_token(memoram_emulator)["token"]
    request = urllib.request.Request(
        f"{memoram_emulator.origin}/_emulator/{path}",
        data=b"{}" if method == "POST" else None,
        headers={"Content-Type": content_type},
        method=method,
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    info.value.close()
    assert info.value.code == status
    assert call(f"{memoram_emulator.base_url}/tags", token=token)[0] == 200  # nothing revoked
