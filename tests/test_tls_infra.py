"""The TLS test infrastructure itself: the HTTPS emulator, client certificates and the proxy.

Tests of memoram-auth's own TLS and proxy behaviour build on these fixtures; if these fail,
those would prove nothing.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
from typing import Any

import pytest
import requests
import trustme

from memoram_auth import ConfigurationError
from memoram_auth.emulator import Emulator

from ._proxy import ConnectProxy


def token_body(emu: Emulator) -> bytes:
    return json.dumps({"api_key": emu.api_key}).encode()


def stdlib_token(emu: Emulator, context: ssl.SSLContext) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{emu.base_url}/auth/token",
        data=token_body(emu),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5, context=context) as response:
        assert response.status == 200
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def requests_token(emu: Emulator, *, timeout: float = 5, **kwargs: Any) -> requests.Response:
    url = f"{emu.base_url}/auth/token"
    return requests.post(url, json={"api_key": emu.api_key}, timeout=timeout, **kwargs)


def assert_issues_tokens(emu: Emulator, ca_bundle: str) -> None:
    """The emulator still answers a trusting client: failed handshakes did not break it."""
    before = emu.counters.tokens_issued
    response = requests_token(emu, verify=ca_bundle)
    assert response.status_code == 200
    assert response.json()["token"]
    assert emu.counters.tokens_issued == before + 1


# -- the HTTPS emulator ------------------------------------------------------------------------


def test_tls_emulator_urls_say_https(tls_emulator: Emulator) -> None:
    assert tls_emulator.origin == f"https://127.0.0.1:{tls_emulator.port}"
    assert tls_emulator.base_url == f"https://127.0.0.1:{tls_emulator.port}/api/v1"
    assert tls_emulator.ssl_context is not None


def test_plain_emulator_urls_are_unchanged() -> None:
    with Emulator() as emu:
        assert emu.base_url == f"http://127.0.0.1:{emu.port}/api/v1"
        assert emu.ssl_context is None


def test_stdlib_client_trusting_the_ca_gets_a_token(tls_emulator: Emulator, ca_bundle: str) -> None:
    context = ssl.create_default_context(cafile=ca_bundle)
    answer = stdlib_token(tls_emulator, context)
    assert answer["token"].count(".") == 2
    assert tls_emulator.counters.tokens_issued == 1
    assert tls_emulator.requests[-1].path == "/api/v1/auth/token"


def test_requests_client_trusting_the_ca_gets_a_token(
    tls_emulator: Emulator, ca_bundle: str
) -> None:
    assert_issues_tokens(tls_emulator, ca_bundle)


def test_untrusted_ca_fails_and_the_server_keeps_serving(
    tls_emulator: Emulator, ca_bundle: str
) -> None:
    # The system store does not hold the throwaway CA, so both clients must refuse the server.
    with pytest.raises(urllib.error.URLError) as caught:
        stdlib_token(tls_emulator, ssl.create_default_context())
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)
    with pytest.raises(requests.exceptions.SSLError):
        requests_token(tls_emulator)
    assert tls_emulator.counters.token_requests == 0
    assert_issues_tokens(tls_emulator, ca_bundle)


def test_other_ca_fails(tls_emulator: Emulator, tmp_path: Any) -> None:
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(requests.exceptions.SSLError):
        requests_token(tls_emulator, verify=str(other))


def test_plain_http_to_the_https_server_fails_cleanly(
    tls_emulator: Emulator, ca_bundle: str
) -> None:
    plain = tls_emulator.base_url.replace("https://", "http://", 1)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(f"{plain}/auth/token", json={"api_key": tls_emulator.api_key}, timeout=5)
    assert tls_emulator.counters.token_requests == 0
    assert_issues_tokens(tls_emulator, ca_bundle)


def test_a_silent_client_does_not_block_others(tls_emulator: Emulator, ca_bundle: str) -> None:
    # A client that connects and never starts its handshake holds only its own thread: were the
    # handshake done in the accept loop, the next client would wait for the handshake timeout.
    with socket.create_connection(("127.0.0.1", tls_emulator.port), timeout=5):
        response = requests_token(tls_emulator, verify=ca_bundle, timeout=2)
        assert response.status_code == 200


def test_host_name_names_localhost_and_matches_the_certificate(
    tls_server_context: ssl.SSLContext, ca_bundle: str
) -> None:
    with Emulator(ssl_context=tls_server_context, host_name="localhost") as emu:
        assert emu.base_url == f"https://localhost:{emu.port}/api/v1"
        assert_issues_tokens(emu, ca_bundle)


def test_host_name_must_be_loopback() -> None:
    with pytest.raises(ConfigurationError):
        Emulator(host_name="example.com")


# -- client certificates (mTLS) ----------------------------------------------------------------


@pytest.fixture
def mtls_emulator(tls_emulator: Emulator, tls_ca: trustme.CA) -> Emulator:
    context = tls_emulator.ssl_context
    assert context is not None
    context.verify_mode = ssl.CERT_REQUIRED
    tls_ca.configure_trust(context)
    return tls_emulator


def test_mtls_refuses_a_client_without_a_certificate(
    mtls_emulator: Emulator, ca_bundle: str, tls_client_cert: tuple[str, str]
) -> None:
    # Under TLS 1.3 the client learns of the refusal only when it reads: an SSLError or a
    # reset connection, both ConnectionErrors to requests.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests_token(mtls_emulator, verify=ca_bundle)
    assert mtls_emulator.counters.token_requests == 0
    response = requests_token(mtls_emulator, verify=ca_bundle, cert=tls_client_cert)
    assert response.status_code == 200


def test_mtls_refuses_a_certificate_from_another_ca(
    mtls_emulator: Emulator, ca_bundle: str, tmp_path: Any
) -> None:
    issued = trustme.CA().issue_cert("client@example")
    certfile, keyfile = tmp_path / "c.pem", tmp_path / "c.key"
    issued.cert_chain_pems[0].write_to_path(str(certfile))
    issued.private_key_pem.write_to_path(str(keyfile))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests_token(mtls_emulator, verify=ca_bundle, cert=(str(certfile), str(keyfile)))
    assert mtls_emulator.counters.token_requests == 0


def test_mtls_accepts_a_certificate_from_the_ca(
    mtls_emulator: Emulator, ca_bundle: str, tls_client_cert: tuple[str, str]
) -> None:
    context = ssl.create_default_context(cafile=ca_bundle)
    context.load_cert_chain(*tls_client_cert)
    assert stdlib_token(mtls_emulator, context)["token"]
    assert mtls_emulator.counters.tokens_issued == 1


# -- the proxy ---------------------------------------------------------------------------------


def raw_proxy_request(proxy: ConnectProxy, head: str) -> tuple[socket.socket, bytes]:
    """Send *head* to the proxy; returns the open socket and the status line it answered."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.sendall(head.encode())
    answer = b""
    while b"\r\n" not in answer:
        data = sock.recv(1024)
        if not data:
            break
        answer += data
    return sock, answer.split(b"\r\n", 1)[0]


def test_https_through_the_proxy_uses_a_tunnel(
    tls_emulator: Emulator, ca_bundle: str, connect_proxy: ConnectProxy
) -> None:
    response = requests_token(tls_emulator, verify=ca_bundle, proxies={"https": connect_proxy.url})
    assert response.status_code == 200
    assert connect_proxy.tunnels == [f"127.0.0.1:{tls_emulator.port}"]
    assert connect_proxy.requests == []
    assert tls_emulator.counters.tokens_issued == 1


def test_https_without_the_proxy_opens_no_tunnel(
    tls_emulator: Emulator, ca_bundle: str, connect_proxy: ConnectProxy
) -> None:
    # The counterpart of the test above: the proxy counts only what goes through it.
    assert requests_token(tls_emulator, verify=ca_bundle).status_code == 200
    assert connect_proxy.tunnels == []


def test_the_tunnel_does_not_weaken_verification(
    tls_emulator: Emulator, connect_proxy: ConnectProxy
) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests_token(tls_emulator, proxies={"https": connect_proxy.url})
    assert connect_proxy.tunnels == [f"127.0.0.1:{tls_emulator.port}"]


def test_https_proxy_from_the_environment(
    tls_emulator: Emulator,
    ca_bundle: str,
    connect_proxy: ConnectProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url)
    assert requests_token(tls_emulator, verify=ca_bundle).status_code == 200
    assert connect_proxy.tunnels == [f"127.0.0.1:{tls_emulator.port}"]


def test_plain_http_through_the_proxy_is_forwarded(connect_proxy: ConnectProxy) -> None:
    with Emulator() as emu:
        response = requests_token(emu, proxies={"http": connect_proxy.url})
        assert response.status_code == 200
        assert response.json()["token"]
        assert connect_proxy.requests == [("POST", f"{emu.base_url}/auth/token")]
        assert connect_proxy.tunnels == []
        # The emulator saw an origin-form request without the proxy's own headers.
        seen = emu.requests[-1]
        assert seen.path == "/api/v1/auth/token"
        assert not any(name.lower().startswith("proxy-") for name in seen.headers)


@pytest.mark.parametrize(
    "target",
    ["example.com:443", "10.0.0.1:443", "[2001:db8::1]:443", "127.0.0.1.example.com:443"],
    ids=["name", "private-ipv4", "ipv6", "loopback-lookalike"],
)
def test_non_loopback_connect_is_refused(connect_proxy: ConnectProxy, target: str) -> None:
    sock, status = raw_proxy_request(connect_proxy, f"CONNECT {target} HTTP/1.1\r\n\r\n")
    with sock:
        assert status.startswith(b"HTTP/1.1 403")
    assert connect_proxy.refused == [target]
    assert connect_proxy.tunnels == []


def test_non_loopback_connect_is_a_proxy_error_to_requests(connect_proxy: ConnectProxy) -> None:
    with pytest.raises(requests.exceptions.ProxyError):
        requests.get("https://example.com/", proxies={"https": connect_proxy.url}, timeout=5)
    assert connect_proxy.refused == ["example.com:443"]


def test_non_loopback_forwarding_is_refused(connect_proxy: ConnectProxy) -> None:
    response = requests.get(
        "http://example.com/api", proxies={"http": connect_proxy.url}, timeout=5
    )
    assert response.status_code == 403
    assert connect_proxy.refused == ["example.com:80"]
    assert connect_proxy.requests == []


def test_connect_to_a_closed_port_is_bad_gateway(connect_proxy: ConnectProxy) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections are refused
        sock, status = raw_proxy_request(
            connect_proxy, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"
        )
        with sock:
            assert status.startswith(b"HTTP/1.1 502")


def test_proxy_auth_is_required_when_asked(tls_emulator: Emulator, ca_bundle: str) -> None:
    with ConnectProxy(require_auth=("alice", "s3cret")) as proxy:
        with pytest.raises(requests.exceptions.ProxyError):
            requests_token(tls_emulator, verify=ca_bundle, proxies={"https": proxy.url})
        wrong = proxy.auth_url.replace("s3cret", "wrong")
        with pytest.raises(requests.exceptions.ProxyError):
            requests_token(tls_emulator, verify=ca_bundle, proxies={"https": wrong})
        assert proxy.auth_failures == 2
        assert proxy.tunnels == []
        response = requests_token(tls_emulator, verify=ca_bundle, proxies={"https": proxy.auth_url})
        assert response.status_code == 200
        assert proxy.tunnels == [f"127.0.0.1:{tls_emulator.port}"]


def test_stop_cuts_open_tunnels_and_the_listener(tls_emulator: Emulator) -> None:
    proxy = ConnectProxy().start()
    port = proxy.port
    target = f"127.0.0.1:{tls_emulator.port}"
    sock, status = raw_proxy_request(proxy, f"CONNECT {target} HTTP/1.1\r\n\r\n")
    with sock:
        assert status.startswith(b"HTTP/1.1 200")
        proxy.stop()
        # The client sees the tunnel end (not a 5 s socket timeout) ...
        assert sock.recv(1024) == b""
    # ... and nobody listens any more.
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass


def test_an_idle_tunnel_is_dropped(tls_emulator: Emulator) -> None:
    with ConnectProxy(idle_timeout=0.3) as proxy:
        target = f"127.0.0.1:{tls_emulator.port}"
        sock, status = raw_proxy_request(proxy, f"CONNECT {target} HTTP/1.1\r\n\r\n")
        with sock:
            assert status.startswith(b"HTTP/1.1 200")
            assert sock.recv(1024) == b""  # well before the socket's own 5 s timeout
