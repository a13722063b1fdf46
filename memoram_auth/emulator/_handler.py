"""HTTP handling for the emulator: routes, the token endpoint and the protected endpoints."""

from __future__ import annotations

import json
import socket
import ssl
import time
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .._urls import is_loopback_host
from ._state import Fault, RecordedRequest, State

__all__ = ["CONTROL_PREFIX", "EmulatorServer", "Handler"]

PREFIX = "/api/v1"
#: The emulator's own controls, not part of the Memoram API (see Handler._control).
CONTROL_PREFIX = "/_emulator/"
_CHALLENGE = 'Bearer error="invalid_token"'
_MAX_BODY = 10 << 20
#: Seconds a TLS client gets to finish its handshake; a silent peer then loses its thread.
_HANDSHAKE_TIMEOUT = 10.0

_TAGS: list[dict[str, Any]] = [
    {
        "id": f"tag_{i}",
        "name": name,
        "description": f"Memories about {name.lower()}",
        "color": color,
        "is_enabled": True,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    for i, (name, color) in enumerate(
        [("Work", "#1f77b4"), ("Family", "#ff7f0e"), ("Travel", "#2ca02c")], 1
    )
]


class EmulatorServer(ThreadingHTTPServer):
    """A threading server that carries the emulator state and stays quiet about dropped peers."""

    daemon_threads = True
    allow_reuse_address = True
    # The listen backlog. socketserver's default of 5 drops connections from about 30
    # concurrent clients, which then see ReadTimeouts.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        state: State,
        *,
        verbose: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.state = state
        self.verbose = verbose
        self.ssl_context = ssl_context
        self.blobs: dict[str, dict[str, Any]] = {}
        if ":" in address[0]:  # an IPv6 literal such as ::1; the class default is IPv4 only
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:  # noqa: ANN401 - stdlib signature
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        # The handshake runs here, in the connection's own thread, not in get_request(): there
        # it would run in the accept loop, where one silent or slow client blocks every other.
        request.settimeout(_HANDSHAKE_TIMEOUT)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            # Untrusted CA, no client certificate, plain HTTP, a hang-up: that client's problem.
            # wrap_socket took over the descriptor and closed it; process_request_thread's
            # shutdown_request(request) then finds a detached socket and does nothing.
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            self.shutdown_request(tls)

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: ANN401 - any JSON value - stdlib signature
        # Clients that time out or hang up mid-answer are part of the tests, not errors.
        pass


class Handler(BaseHTTPRequestHandler):
    """One request. Keep-alive (HTTP/1.1) so that benchmarks measure the auth, not TCP set-up."""

    server: EmulatorServer
    protocol_version = "HTTP/1.1"
    server_version = "memoram-emulator"
    sys_version = ""
    timeout = 30  # idle keep-alive connections close by themselves
    # Headers and body leave in one write, with Nagle off: two small writes on a kept-alive
    # connection meet the client's delayed ACK and cost 40 ms per request.
    wbufsize = -1
    disable_nagle_algorithm = True

    # -- plumbing -----------------------------------------------------------------------------

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header follows the emulated (possibly skewed) server clock.
        return formatdate(self.server.state.now() if timestamp is None else timestamp, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: ANN401 - stdlib signature
        if self.server.verbose:
            # Only method, path and status: never the body (key) nor headers (token).
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if not length or not length.isdigit() or int(length) > _MAX_BODY:
            return b""
        return self.rfile.read(int(length))

    def _read_chunked(self) -> bytes:
        # Streamed (generator) request bodies arrive chunked: size line, data, CRLF; 0 ends.
        body = bytearray()
        while len(body) <= _MAX_BODY:
            size_line = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                break
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            body += self.rfile.read(size)
            self.rfile.readline(1024)
        return bytes(body)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:  # noqa: ANN401 - any JSON value
        self._send(status, json.dumps(data).encode(), headers)

    def _error(
        self, status: int, error: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self._json(status, {"error": error, "message": message}, headers)

    def _handle(self) -> None:
        body = self._read_body()
        parts = urlsplit(self.path)
        state = self.server.state
        if parts.path.startswith(CONTROL_PREFIX):
            self._control(parts.path[len(CONTROL_PREFIX) :], body)
            return  # neither recorded nor counted: the counters describe the API's traffic
        token_call = parts.path.rstrip("/") == f"{PREFIX}/auth/token"
        state.record(
            RecordedRequest(
                self.command, self.path, dict(self.headers.items()), body, self.client_address[0]
            ),
            token_call=token_call,
        )
        if token_call:
            if self.command != "POST":
                self._error(405, "method_not_allowed", "use POST", {"Allow": "POST"})
            else:
                self._token(body)
        elif parts.path in state.redirects:
            status, location = state.redirects[parts.path]
            self._send(status, b"", {"Location": location})
        elif not parts.path.startswith(PREFIX + "/"):
            self._error(404, "not_found", "no such endpoint")
        elif self._authorized():
            self._api(parts.path[len(PREFIX) :].strip("/").split("/"), parts.query, body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    # -- POST /auth/token ---------------------------------------------------------------------

    def _token(self, body: bytes) -> None:
        state = self.server.state
        fault = state.next_fault() or Fault()
        delay = fault.delay + state.token_delay
        if delay:
            time.sleep(delay)
        if fault.close:
            self.close_connection = True
            self.connection.close()
            return
        if fault.status is not None or fault.body is not None:
            headers = {"Content-Type": "text/html", **fault.headers}
            self._send(fault.status or 200, fault.body or b"", headers)
            return
        try:
            request = json.loads(body)
        except ValueError:
            self._error(400, "invalid_request", "the body must be a JSON object")
            return
        if not isinstance(request, dict):
            self._error(400, "invalid_request", "the body must be a JSON object")
            return
        api_key, expires_in = request.get("api_key"), request.get("expires_in")
        if not isinstance(api_key, str) or not api_key:
            self._error(400, "invalid_request", "api_key is required and must be a string")
        elif expires_in is not None and (
            isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0
        ):
            self._error(400, "invalid_request", "expires_in must be a positive integer")
        elif api_key not in state.api_keys:
            self._error(401, "invalid_api_key", "the API key is not valid")
        else:
            self._json(200, state.issue(api_key, expires_in), {"Cache-Control": "no-store"})

    # -- the emulator's own controls ----------------------------------------------------------

    def _control(self, action: str, body: bytes) -> None:
        """``POST /_emulator/revoke``, ``/_emulator/reject-key``, ``/_emulator/accept-key``.

        What the ``Emulator`` methods do, for a person at the command line (``memoram-auth
        emulator revoke``). Loopback clients only (the server binds nothing else anyway), and a
        JSON body only: a web page may send a form or text POST to localhost without asking,
        but not a JSON one.
        """
        state = self.server.state
        if not is_loopback_host(str(self.client_address[0])):
            self._error(403, "forbidden", "the emulator's controls answer loopback clients only")
            return
        if self.command != "POST":
            self._error(405, "method_not_allowed", "use POST", {"Allow": "POST"})
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self._error(415, "unsupported_media_type", "send a JSON object")
            return
        data = self._json_object(body or b"{}")
        if data is None:
            return
        api_key = data.get("api_key")
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            self._error(400, "invalid_request", "api_key must be a non-empty string")
        elif action == "revoke":
            self._json(200, {"revoked": state.revoke_all()})
        elif action == "reject-key":
            self._json(200, {"rejected": state.reject_keys(api_key)})
        elif action == "accept-key" and api_key is not None:
            with state.lock:
                state.api_keys.add(api_key)
            self._json(200, {"accepted": 1})
        elif action == "accept-key":
            self._error(400, "invalid_request", "api_key is required")
        else:
            self._error(404, "not_found", "no such control (revoke, reject-key, accept-key)")

    # -- protected endpoints ------------------------------------------------------------------

    def _authorized(self) -> bool:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and self.server.state.check(token.strip()):
            return True
        self.server.state.count_unauthorized()
        self._error(
            401,
            "invalid_token",
            "missing, invalid, expired or revoked token",
            {"WWW-Authenticate": _CHALLENGE},
        )
        return False

    def _api(self, segments: list[str], query: str, body: bytes) -> None:
        method = self.command
        if segments == ["tags"] and method in ("GET", "HEAD"):
            self._json(200, {"items": _TAGS})
        elif len(segments) == 2 and segments[0] == "tags" and method in ("GET", "HEAD"):
            tag = next((t for t in _TAGS if t["id"] == segments[1]), None)
            if tag is None:
                self._error(404, "not_found", "no such tag")
            else:
                self._json(200, tag)
        elif segments == ["memory-blobs"] and method in ("GET", "HEAD"):
            self._list_blobs(parse_qs(query))
        elif segments == ["memory-blobs"] and method == "POST":
            self._create_blob(body)
        elif len(segments) == 2 and segments[0] == "memory-blobs":
            self._one_blob(segments[1], body)
        else:
            self._error(404, "not_found", "no such endpoint")

    def _list_blobs(self, query: dict[str, list[str]]) -> None:
        blobs = list(self.server.blobs.values())
        user = query.get("user_id", [None])[0]
        if user is not None:
            blobs = [b for b in blobs if b.get("user_id") == user]
        self._json(200, {"memoryBlobs": blobs, "next_cursor": None})

    def _json_object(self, body: bytes) -> dict[str, Any] | None:
        """The body as a JSON object, or None after answering 400."""
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self._error(400, "invalid_request", "the body must be a JSON object")
            return None
        return data

    def _create_blob(self, body: bytes) -> None:
        data = self._json_object(body)
        if data is None:
            return
        blob = {**data, "id": "blob_" + uuid.uuid4().hex[:12]}
        self.server.blobs[blob["id"]] = blob
        self._json(201, blob)

    def _one_blob(self, blob_id: str, body: bytes) -> None:
        blob = self.server.blobs.get(blob_id)
        if blob is None:
            self._error(404, "not_found", "no such memory blob")
        elif self.command in ("GET", "HEAD"):
            self._json(200, blob)
        elif self.command == "DELETE":
            del self.server.blobs[blob_id]
            self._send(204, b"")
        else:
            update = self._json_object(body)
            if update is None:
                return
            blob.update({k: v for k, v in update.items() if k != "id"})
            self._json(200, blob)
