"""The real ``http`` program with ``--auth-type=memoram``, against the emulator."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoram_auth.core.steps import TransportError
from memoram_auth.emulator import Emulator
from tests._proxy import ConnectProxy

pytest.importorskip("httpie", reason="the httpie extra is not installed")

HTTP = (
    str(Path(sys.executable).with_name("http"))
    if Path(sys.executable).with_name("http").exists()
    else shutil.which("http")
)


class Http:
    """Runs ``http`` the way a user would, with its config, sessions and our cache in tmp."""

    def __init__(self, emu: Emulator, tmp_path: Path) -> None:
        self.emu = emu
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MEMORAM_", "HTTPIE_"))},
            "MEMORAM_BASE_URL": emu.base_url,
            "MEMORAM_AUTH_CACHE_DIR": str(tmp_path / "cache"),
            "HTTPIE_CONFIG_DIR": str(tmp_path / "httpie"),
        }
        self.config_dir = tmp_path / "httpie"

    def __call__(self, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if key is not None:
            env["MEMORAM_API_KEY"] = key
        assert HTTP, "the http program is not installed"
        # --ignore-stdin: without a terminal, httpie would read stdin as the request body.
        return subprocess.run(
            [HTTP, "--ignore-stdin", *args], capture_output=True, text=True, env=env, timeout=60
        )


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def http(emu: Emulator, tmp_path: Path) -> Http:
    return Http(emu, tmp_path)


def test_key_from_the_auth_option(emu: Emulator, http: Http) -> None:
    result = http(
        "--check-status",
        "-b",
        "--auth-type=memoram",
        "--auth",
        emu.api_key,
        f"{emu.base_url}/tags/tag_1",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"] == "tag_1"
    assert emu.counters.token_requests == 1


def test_key_from_the_environment_and_one_token_for_many_calls(emu: Emulator, http: Http) -> None:
    for tag in ("tag_1", "tag_2", "tag_3"):
        result = http(
            "--check-status", "-b", "-A", "memoram", f"{emu.base_url}/tags/{tag}", key=emu.api_key
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["id"] == tag
    assert emu.counters.token_requests == 1  # the disk cache is shared by the three processes


@pytest.mark.parametrize("with_auth", [True, False], ids=["auth-option", "environment"])
def test_sessions_work_on_repeated_calls(emu: Emulator, http: Http, with_auth: bool) -> None:
    auth = ["-a", emu.api_key] if with_auth else []
    key = None if with_auth else emu.api_key
    first = http(
        "--check-status", "--session=work", "-A", "memoram", *auth, f"{emu.base_url}/tags", key=key
    )
    again = http("--check-status", "--session=work", f"{emu.base_url}/tags/tag_2", key=key)
    assert (first.returncode, again.returncode) == (0, 0), first.stderr + again.stderr
    assert emu.counters.token_requests == 1
    session_file = next(http.config_dir.glob("sessions/*/work.json"))
    stored = session_file.read_text()
    token_header = next(
        r.headers["Authorization"] for r in emu.requests if "Authorization" in r.headers
    )
    assert token_header.split()[1] not in stored, "the token must not be saved in the session"
    assert (emu.api_key in stored) is with_auth  # the README warns about exactly this


def test_a_rejected_key_is_one_clear_line(emu: Emulator, http: Http) -> None:
    bad_key = "mem_" + "0" * 48
    result = http("-A", "memoram", "-a", bad_key, f"{emu.base_url}/tags")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "KeyRejectedError" in lines[0]
    assert "from --auth KEY (-a KEY) was rejected" in lines[0]  # where the key came from
    assert bad_key not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_an_unreachable_endpoint_is_one_clear_line(http: Http, tmp_path: Path) -> None:
    with Emulator() as gone:
        base_url, key = gone.base_url, gone.api_key
    http.env["MEMORAM_BASE_URL"] = base_url
    result = http("-A", "memoram", f"{base_url}/tags", key=key)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    # The API and its token endpoint share an origin: without a cached token, the request
    # itself goes first (the token then follows its 401, with httpie's settings), so httpie
    # reports its own connection error.
    assert "ConnectionError" in lines[0] or "EndpointUnavailableError" in lines[0]
    assert "Traceback" not in result.stderr


def test_no_key_anywhere_names_the_variable(emu: Emulator, http: Http) -> None:
    result = http("-A", "memoram", f"{emu.base_url}/tags")
    assert result.returncode == 1
    assert "MEMORAM_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_token_goes_only_to_the_api_origin(emu: Emulator, http: Http) -> None:
    with Emulator(host="127.0.0.2") as other:
        result = http("-A", "memoram", f"{other.base_url}/tags", key=emu.api_key)
        assert result.returncode == 0
        assert all("Authorization" not in r.headers for r in other.requests)
    assert emu.counters.token_requests == 0


@pytest.mark.slow
@pytest.mark.network
# Two installs from the index (httpie, then our checkout with its dependencies): a budget for a
# slow index, not the suite's 120 s default.
@pytest.mark.timeout(900)
def test_httpies_own_plugin_installer(emu: Emulator, tmp_path: Path) -> None:
    """``httpie cli plugins install`` puts us in httpie's plugin directory, off ``sys.path``."""
    root = Path(__file__).resolve().parents[1]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    pip = [
        str(bin_dir / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, "httpie"], check=True, timeout=600)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MEMORAM_", "HTTPIE_"))},
        "HTTPIE_CONFIG_DIR": str(tmp_path / "httpie"),
        "MEMORAM_BASE_URL": emu.base_url,
        "MEMORAM_API_KEY": emu.api_key,
        "MEMORAM_AUTH_CACHE_DIR": str(tmp_path / "cache"),
    }
    subprocess.run(
        [str(bin_dir / "httpie"), "cli", "plugins", "install", str(root)],
        check=True,
        env=env,
        timeout=600,
        capture_output=True,
    )
    # cwd elsewhere: run from the checkout, "python -c" would import the source folder.
    plain = subprocess.run(
        [str(bin_dir / "python"), "-c", "import memoram_auth"], capture_output=True, cwd=tmp_path
    )
    assert plain.returncode != 0, "memoram_auth must live only in httpie's plugin directory"
    result = subprocess.run(
        [
            str(bin_dir / "http"),
            "--ignore-stdin",
            "--check-status",
            "-b",
            "-A",
            "memoram",
            f"{emu.base_url}/tags/tag_1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"] == "tag_1"
    assert emu.counters.token_requests == 1


def test_no_key_names_httpies_auth_option(emu: Emulator, http: Http) -> None:
    http.env["MEMORAM_AUTH_DISABLE_PLUGINS"] = "1"
    result = http("-A", "memoram", f"{emu.base_url}/tags")
    assert result.returncode == 1
    assert "pass --auth KEY (-a KEY)" in result.stderr
    assert "api_key=" not in result.stderr
    assert "--api-key" not in result.stderr


def test_a_bad_base_url_says_where_it_came_from(emu: Emulator, http: Http) -> None:
    http.env["MEMORAM_BASE_URL"] = "api.memoram.app/api/v1"
    result = http("-A", "memoram", f"{emu.base_url}/tags", key=emu.api_key)
    assert result.returncode == 1
    assert "(from MEMORAM_BASE_URL: 'api.memoram.app/api/v1')" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_cache_warning_is_one_line_without_source(emu: Emulator, http: Http) -> None:
    assert http("--check-status", "-A", "memoram", f"{emu.base_url}/tags", key=emu.api_key)
    (cache_file,) = Path(http.env["MEMORAM_AUTH_CACHE_DIR"]).glob("*.token")
    cache_file.write_bytes(b"\x00garbage")
    result = http("--check-status", "-b", "-A", "memoram", f"{emu.base_url}/tags", key=emu.api_key)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("http: warning: memoram-auth: the cached token file ")
    assert ".py" not in result.stderr
    assert "garbage" not in result.stderr


# -- httpie's own network options reach the token request ---------------------------------------


def test_offline_sends_nothing(emu: Emulator, http: Http) -> None:
    result = http("--offline", "-A", "memoram", f"{emu.base_url}/tags", key=emu.api_key)
    assert result.returncode == 0, result.stderr
    assert "GET /api/v1/tags" in result.stdout
    assert emu.counters.token_requests == 0
    assert emu.counters.api_requests == 0


@pytest.mark.parametrize("option", ["--verify", "--cert", "--proxy"])
def test_httpies_network_options_apply_to_the_token_request(
    option: str,
    tls_emulator: Emulator,
    ca_bundle: str,
    tls_client_cert: tuple[str, str],
    connect_proxy: ConnectProxy,
    tmp_path: Path,
) -> None:
    emu = tls_emulator
    http = Http(emu, tmp_path)
    args = ["--verify", ca_bundle]  # no REQUESTS_CA_BUNDLE: only httpie's option names the CA
    if option == "--cert":
        context = emu.ssl_context
        assert context is not None
        context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS, on the token endpoint too
        context.load_verify_locations(ca_bundle)
        args += ["--cert", tls_client_cert[0], "--cert-key", tls_client_cert[1]]
    if option == "--proxy":
        # The environment's proxy is not there: only --proxy reaches the emulator.
        http.env["HTTPS_PROXY"] = "http://127.0.0.1:9"
        args += ["--proxy", f"https:{connect_proxy.url}"]
    result = http(*args, "-A", "memoram", f"{emu.base_url}/tags", key=emu.api_key)
    assert result.returncode == 0, result.stderr
    assert emu.counters.token_requests == 1
    if option == "--proxy":
        assert connect_proxy.tunnels


def test_httpies_timeout_caps_the_token_requests() -> None:
    import requests

    from memoram_auth.core.steps import TokenRequest
    from memoram_auth.transports.requests import AdapterTransport

    given: list[object] = []

    class Adapter(requests.adapters.BaseAdapter):
        def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
            given.append(kwargs["timeout"])
            raise requests.exceptions.ConnectTimeout("stalled")

        def close(self) -> None:
            pass

    transport = AdapterTransport(Adapter(), {"timeout": 2, "verify": True})
    step = TokenRequest("https://api.example/auth/token", {}, b"{}", 10.0, time.monotonic() + 30)
    with pytest.raises(TransportError):
        transport(step)
    assert given == [2]


def test_a_streamed_body_on_a_cold_cache_goes_out_once_with_a_token(
    emu: Emulator, http: Http
) -> None:
    # Without a cached token the request usually goes out first without one (so that the
    # token request can use httpie's --verify/--proxy from the 401's hook); a body read from
    # stdin with --chunked cannot be replayed, so the token must come first.
    env = {**http.env, "MEMORAM_API_KEY": emu.api_key}
    result = subprocess.run(
        [
            HTTP,
            "--check-status",
            "-b",
            "--chunked",
            "-A",
            "memoram",
            "POST",
            f"{emu.base_url}/memory-blobs",
        ],
        input='{"user_id": "u1", "content": "streamed"}',
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["content"] == "streamed"
    assert emu.counters.token_requests == 1
    api_requests = [r for r in emu.requests if "/memory-blobs" in r.path]
    assert len(api_requests) == 1
    assert api_requests[0].headers.get("Authorization", "").startswith("Bearer ")
