"""A local Memoram API for tests and offline work: a real HTTP server on a loopback address.

It issues real HS256 JWTs from ``POST /api/v1/auth/token`` exactly as the OpenAPI document
describes, guards a few API endpoints with them, and has knobs for what tests need: clock skew,
injected failures, revocation and counters::

    with Emulator() as emu:
        auth = MemoramAuth(emu.api_key, base_url=emu.base_url)
        emu.fail_next(2, status=503, headers={"Retry-After": "1"})
        ...
        assert emu.counters.token_requests == 3

Run it standalone with ``python -m memoram_auth.emulator`` (``--certfile``/``--keyfile`` for
HTTPS), or use the ``memoram_emulator`` pytest fixture that installing memoram-auth provides.
Pass ``ssl_context=`` to serve HTTPS, with client certificates if the context demands them.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType

from .._urls import is_loopback_host
from ..exceptions import ConfigurationError
from ._handler import PREFIX, EmulatorServer
from ._state import Counters, Fault, RecordedRequest, State, generate_api_key

__all__ = ["Counters", "Emulator", "Fault", "RecordedRequest", "generate_api_key"]


class Emulator:
    """A Memoram API emulator on ``host`` (loopback only) and ``port`` (0: any free port).

    Args:
        api_keys: keys the token endpoint accepts; one is generated when none are given.
        max_lifetime: longest token lifetime in seconds, whatever ``expires_in`` asks for.
        default_lifetime: lifetime when the request has no ``expires_in``.
        clock_offset: seconds the server's clock runs ahead of ours (negative: behind). It
            moves ``Date``, ``expires_at``, ``iat`` and ``exp`` together, as a real skew would.
        token_delay: seconds every token call waits before answering.
        verbose: log one line per request (method, path, status) to stderr.
        ssl_context: serve HTTPS with this server-side context (its certificate chain loaded);
            ``origin`` and ``base_url`` then say ``https://``. Set ``verify_mode`` to
            ``ssl.CERT_REQUIRED`` (and load a CA) to demand client certificates. Changes to
            the context apply to the next connection.
        host_name: the host ``origin`` and ``base_url`` name, when it differs from the address
            bound, e.g. ``"localhost"`` to match a certificate while listening on 127.0.0.1.

    Raises:
        ConfigurationError: *host* or *host_name* is not a loopback name: the emulator's keys
            and tokens are test data, and it may speak plain HTTP.
    """

    def __init__(
        self,
        api_keys: Iterable[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_lifetime: int = 3600,
        default_lifetime: int = 3600,
        clock_offset: float = 0.0,
        token_delay: float = 0.0,
        verbose: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        host_name: str | None = None,
    ) -> None:
        # The rule of validate_base_url(): plain http only to a loopback IP or "localhost".
        if not is_loopback_host(host):
            raise ConfigurationError(f"the emulator listens on loopback addresses only, not {host}")
        host = host.strip("[]")  # "[::1]", as in a URL, binds ::1
        if host_name is not None and not is_loopback_host(host_name):
            raise ConfigurationError(f"URLs may name loopback hosts only, not {host_name}")
        keys = list(api_keys or []) or [generate_api_key()]
        self._first_key = keys[0]
        self.state = State(
            keys,
            max_lifetime=max_lifetime,
            default_lifetime=default_lifetime,
            clock_offset=clock_offset,
            token_delay=token_delay,
        )
        self._address = (host, port)
        self._verbose = verbose
        self._ssl_context = ssl_context
        self._host_name = host_name or host
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None
        #: The token cache directory the ``memoram_emulator`` fixture gave the test (it is
        #: also ``MEMORAM_AUTH_CACHE_DIR`` there); ``None`` elsewhere.
        self.cache_dir: str | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is None:
            self._server = EmulatorServer(
                self._address, self.state, verbose=self._verbose, ssl_context=self._ssl_context
            )
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="memoram-emulator",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket. Safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (for the command line)."""
        self.start()
        assert self._thread is not None  # noqa: S101 - start() just made it
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where it is --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() or use it in a with")
        return int(self._server.server_address[1])

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The server-side TLS context, or None for plain HTTP."""
        return self._ssl_context

    @property
    def origin(self) -> str:
        """Scheme, host and port, e.g. ``https://localhost:PORT``."""
        host = self._host_name
        host = f"[{host}]" if ":" in host else host
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as ``base_url``, e.g. ``http://127.0.0.1:PORT/api/v1``."""
        return self.origin + PREFIX

    @property
    def api_keys(self) -> list[str]:
        return sorted(self.state.api_keys)

    @property
    def api_key(self) -> str:
        """One accepted key (the first given, or the generated one)."""
        return self._first_key

    # -- knobs --------------------------------------------------------------------------------

    @property
    def counters(self) -> Counters:
        """Token requests, tokens issued, API requests and 401s so far."""
        return self.state.counters

    @property
    def requests(self) -> list[RecordedRequest]:
        """The most recent requests (up to 1000), oldest first."""
        with self.state.lock:
            return list(self.state.requests)

    def reset_counters(self) -> None:
        """Zero the counters and forget recorded requests."""
        self.state.reset_counters()

    def add_key(self, api_key: str) -> None:
        with self.state.lock:
            self.state.api_keys.add(api_key)

    def remove_key(self, api_key: str) -> None:
        """Stop accepting *api_key*: its token requests get 401.

        Also from outside the process: ``POST /_emulator/reject-key``, or ``memoram-auth
        emulator reject-key``.
        """
        self.state.reject_keys(api_key)

    def inject(self, fault: Fault, count: int = 1) -> None:
        """Make the next *count* token calls behave as *fault* says."""
        self.state.add_faults(fault, count)

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 503,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        delay: float = 0.0,
    ) -> None:
        """The next *count* token calls answer *status* (e.g. 503 with ``Retry-After``)."""
        self.inject(
            Fault(status=status, headers=dict(headers or {}), body=body, delay=delay), count
        )

    def malformed_next(
        self, count: int = 1, *, body: bytes = b"<html>Bad gateway</html>", status: int = 200
    ) -> None:
        """The next *count* token calls answer *status* with *body* instead of a token."""
        self.inject(Fault(status=status, body=body), count)

    def delay_next(self, count: int, seconds: float) -> None:
        """The next *count* token calls answer normally after *seconds*."""
        self.inject(Fault(delay=seconds), count)

    def drop_next(self, count: int = 1) -> None:
        """The next *count* token calls close the connection without an answer."""
        self.inject(Fault(close=True), count)

    def clear_faults(self) -> None:
        """Forget queued faults and stop random ones."""
        self.state.clear_faults()
        self.state.flakiness = (0.0, ())

    def flaky(self, rate: float, *faults: Fault) -> None:
        """From now on, each token call fails with probability *rate*, as one of *faults*.

        Without *faults*: half answer 503 with ``Retry-After: 1``, half hang for 30 s (longer
        than any sensible client timeout). Queued faults (``fail_next`` …) still come first.
        """
        choices = faults or (
            Fault(status=503, headers={"Retry-After": "1"}),
            Fault(delay=30.0),
        )
        self.state.flakiness = (rate, tuple(choices))

    @property
    def clock_offset(self) -> float:
        return self.state.clock_offset

    @clock_offset.setter
    def clock_offset(self, seconds: float) -> None:
        self.state.clock_offset = seconds

    @property
    def max_lifetime(self) -> int:
        return self.state.max_lifetime

    @max_lifetime.setter
    def max_lifetime(self, seconds: int) -> None:
        self.state.max_lifetime = seconds

    @property
    def token_delay(self) -> float:
        return self.state.token_delay

    @token_delay.setter
    def token_delay(self, seconds: float) -> None:
        self.state.token_delay = seconds

    @property
    def reject_all_tokens(self) -> bool:
        """When true, the API endpoints answer 401 to every token, even fresh ones."""
        return self.state.reject_all_tokens

    @reject_all_tokens.setter
    def reject_all_tokens(self, value: bool) -> None:
        self.state.reject_all_tokens = value

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer any request for *path* (e.g. ``/api/v1/moved``) with a redirect to *location*.

        Not part of the Memoram API: it lets tests check where clients carry the token.
        """
        with self.state.lock:
            self.state.redirects[path] = (status, location)

    def revoke_all(self) -> int:
        """Revoke every token issued so far; returns how many were still unrevoked.

        Also from outside the process: ``POST /_emulator/revoke`` with a JSON body, or
        ``memoram-auth emulator revoke``.
        """
        return self.state.revoke_all()

    def __repr__(self) -> str:
        where = self.base_url if self._server is not None else "stopped"
        return f"<Emulator {where} keys={len(self.state.api_keys)}>"
