"""The token request against a hostile or broken server: a deadline that holds while reading,
and no debug printing of the request body (issue 12, points 7 and 8)."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from memoram_auth import MemoramAuth, MemoramAuthError, RetryPolicy
from memoram_auth.emulator import Emulator
from memoram_auth.provider import TokenProvider
from memoram_auth.transports.requests import requests_transport
from tests._attempts import Attempts


class TricklingServer:
    """Answers every connection with a 200 whose body arrives one byte per 0.5 s, forever
    (until stopped): a server that per-read timeouts alone never cut off."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connections = 0
        #: Connections the client closed while the body was still coming.
        self.hung_up = 0
        self.port = self._listener.getsockname()[1]

    def __enter__(self) -> TricklingServer:
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._trickle, args=(connection,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _trickle(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(1)
            try:
                connection.recv(65536)
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n"
                )
                while not self._stop.wait(0.5):
                    connection.sendall(b" ")
            except OSError:  # the client closed the connection: a send fails soon after
                self.hung_up += 1


@pytest.fixture
def trickling() -> Iterator[TricklingServer]:
    with TricklingServer() as server:
        yield server


#: One attempt of at most 1 s, 2 s in all: a trickle that held a caller for minutes before.
TIGHT = RetryPolicy(attempts=2, timeout=1.0, total_timeout=2.0, backoff=0.01, max_backoff=0.02)


@pytest.mark.parametrize(
    "adapter", ["stdlib", "requests", "httpx", "httpx-async", "httpx-own-client"]
)
@pytest.mark.timeout(60)  # about a deadline: the bound ends a hang of 8 minutes
def test_a_trickling_answer_is_cut_off_at_the_deadline(
    trickling: TricklingServer, tmp_path: Path, adapter: str, attempts: Attempts
) -> None:
    base_url = f"http://127.0.0.1:{trickling.port}/api/v1"
    if adapter == "stdlib":
        fetch = TokenProvider("mem_trickle", base_url, cache=None, policy=TIGHT).get_token
    elif adapter.startswith("httpx"):
        # Through the user's client (the flow yields the token request), or the library's own
        # client when network settings are given; both must stop reading at the deadline.
        own = {"verify": True} if adapter == "httpx-own-client" else {}
        auth = MemoramAuth(
            "mem_trickle", base_url=base_url, cache_dir=tmp_path, policy=TIGHT, **own
        )

        def fetch() -> object:
            if adapter == "httpx-async":

                async def main() -> object:
                    async with httpx.AsyncClient(auth=auth) as client:
                        return await client.get(f"{base_url}/memories")

                return asyncio.run(main())
            with httpx.Client(auth=auth) as client:
                return client.get(f"{base_url}/memories")

    else:
        auth = MemoramAuth("mem_trickle", base_url=base_url, cache_dir=tmp_path, policy=TIGHT)

        def fetch() -> object:
            return auth.provider.authorization(requests_transport(auth.network))

    with pytest.raises(MemoramAuthError, match="unavailable"):
        fetch()
    # Without the deadline the body alone would take 8 minutes at this pace: every connection
    # is given up (closed by the client) with the body unfinished, within the policy's attempts.
    assert 1 <= trickling.connections <= attempts.begun <= TIGHT.attempts
    deadline = time.monotonic() + 30  # ends a wait that would hang, asserts no speed
    while trickling.hung_up < trickling.connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trickling.hung_up == trickling.connections


@pytest.mark.parametrize("adapter", ["stdlib", "requests"])
def test_http_client_debugging_never_prints_the_request_body(
    tmp_path: Path,
    adapter: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(http.client.HTTPConnection, "debuglevel", 1)
    with Emulator() as emu:
        if adapter == "stdlib":
            TokenProvider(emu.api_key, emu.base_url, cache=None).get_token()
        else:
            auth = MemoramAuth(emu.api_key, base_url=emu.base_url, cache_dir=tmp_path)
            auth.provider.authorization(requests_transport(auth.network))
        # The check can fail: plain http.client with the same setting does print.
        connection = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
        connection.request("POST", "/api/v1/auth/token", body=b'{"api_key": "mem_canary"}')
        connection.getresponse().read()
        connection.close()
        assert emu.counters.token_requests == 2
    printed = capfd.readouterr()
    assert "mem_canary" in printed.out
    assert emu.api_key not in printed.out + printed.err
