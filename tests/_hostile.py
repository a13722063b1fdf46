"""Hostile token endpoints on loopback, for the tests of the token request's seams.

Each is a tiny server on 127.0.0.1 (any free port) that serves in daemon threads, records what
it received, and stops by itself when its ``with`` block ends:

- :class:`Recorder`: an "attacker" origin that answers a valid-looking token to anything and
  records every request (method, path, body);
- :class:`Redirector`: answers the token request with a redirect to a given URL;
- :class:`Flood`: answers the token request with a 200 whose chunked body never ends (up to a
  bound), counting bytes sent;
- :class:`Trickle`: answers its first token requests at once, then trickles the answer of
  every later one a byte at a time, for as long as the client waits.

All answer 401 to anything else, as the API does to a request without a token.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

__all__ = ["FLOOD_BOUND", "Flood", "Recorder", "Redirector", "Trickle"]


def _unauthorized(handler: BaseHTTPRequestHandler) -> None:
    # The API's answer to a request without a token (httpie sends one first).
    handler.send_response(401)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


class _Server:
    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def __enter__(self) -> _Server:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class Recorder(_Server):
    """Answers ``{"token": "attacker..."}`` to anything; ``received`` lists (method, path, body)."""

    TOKEN = "attacker.fixated.token"

    def __init__(self) -> None:
        self.received: list[tuple[str, str, bytes]] = []
        super().__init__()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.received.append((self.command, self.path, body))
                answer = json.dumps({"token": Recorder.TOKEN, "token_type": "Bearer"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = _any

            def log_message(self, *args: object) -> None:
                pass

        return Handler


class Redirector(_Server):
    """Answers the token request with *status* and ``Location: {target}{path}``."""

    def __init__(self, status: int, target: str) -> None:
        self.status = status
        self.target = target
        self.requests = 0
        super().__init__()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        redirector = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if not self.path.endswith("/auth/token"):
                    _unauthorized(self)
                    return
                redirector.requests += 1
                self.send_response(redirector.status)
                self.send_header("Location", redirector.target + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _any

            def log_message(self, *args: object) -> None:
                pass

        return Handler


#: What a Flood sends at most: far more than any client bound, far less than a test's memory.
FLOOD_BOUND = 48 << 20


class Flood(_Server):
    """A 200 with a chunked body of JSON-looking spaces that goes on until the client stops
    reading or :data:`FLOOD_BOUND` bytes went out; ``sent`` counts the body bytes written."""

    def __init__(self) -> None:
        self.sent = 0
        super().__init__()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        flood = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                _unauthorized(self)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                chunk = b" " * (64 << 10)
                framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
                self.connection.settimeout(5)
                try:
                    while flood.sent < FLOOD_BOUND:
                        self.wfile.write(framed)
                        flood.sent += len(chunk)
                    self.wfile.write(b"0\r\n\r\n")
                except (OSError, socket.timeout):
                    return

            def log_message(self, *args: object) -> None:
                pass

        return Handler


class Trickle(_Server):
    """A token endpoint that answers its first *prompt* token requests with a token at once,
    then every later one with a 200 whose body comes one byte per 0.3 s, for as long as the
    client reads (per-read timeouts never end it). Anything else is answered 401.

    ``token_requests`` and ``unauthorized`` count what came in.
    """

    TOKEN = "trickle.prompt.token"

    def __init__(self, prompt: int = 0) -> None:
        self.prompt = prompt
        self.token_requests = 0
        self.unauthorized = 0
        self._stop = threading.Event()
        super().__init__()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        super().__exit__(kind, exc, tb)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        trickle = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if not self.path.endswith("/auth/token"):
                    trickle.unauthorized += 1
                    _unauthorized(self)
                    return
                trickle.token_requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if trickle.token_requests <= trickle.prompt:
                    answer = json.dumps({"token": Trickle.TOKEN, "token_type": "Bearer"}).encode()
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                self.send_header("Content-Length", "60000")
                self.send_header("Connection", "close")
                self.end_headers()
                self.connection.settimeout(5)
                try:
                    while not trickle._stop.wait(0.3):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                except OSError:
                    return

            do_GET = do_POST = _any

            def log_message(self, *args: object) -> None:
                pass

        return Handler
