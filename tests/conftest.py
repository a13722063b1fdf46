from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trustme

from memoram_auth import MemoramAuthError, MemoramAuthWarning, RetryPolicy
from memoram_auth.cache import FileCache
from memoram_auth.emulator import Emulator
from memoram_auth.emulator._state import State

if TYPE_CHECKING:
    from ._attempts import Attempts
    from ._proxy import ConnectProxy

# pytester runs throwaway test suites, to check the fixture users get through the entry point.
pytest_plugins = ["pytester"]

#: Retries without the real waits, so failure tests take milliseconds.
FAST = RetryPolicy(backoff=0.01, max_backoff=0.02, retry_after_cap=0.05, total_timeout=5.0)


@pytest.fixture
def attempts() -> Iterator[Attempts]:
    """The token requests the exchange begins in this test, and its pauses between them."""
    # Imported here: test_reliability runs a copy of this file where it has no package.
    from ._attempts import Attempts

    with Attempts() as seen:
        yield seen


#: Tests marked ``network`` install packages from the package index: they run only when this is
#: set to 1, so that the default run never depends on the index being reachable or fast.
NETWORK_ENV = "MEMORAM_TEST_NETWORK"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(NETWORK_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"installs from the package index: set {NETWORK_ENV}=1 to run")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own MEMORAM_* settings must not change what the tests see.
    for name in (
        "MEMORAM_API_KEY",
        "MEMORAM_BASE_URL",
        "MEMORAM_AUTH_CACHE_DIR",
        "MEMORAM_AUTH_SOCK",
    ):
        monkeypatch.delenv(name, raising=False)
    # Nor may their proxy or CA settings: requests and httpx read these, and a proxy test must
    # see only the proxy it set up. Tests that need them set them after this fixture ran.
    for name in _PROXY_AND_TRUST_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    # Most tests count token requests and say which caller made each one: in the advisory
    # window that is the caller, unless a refresher thread takes over. Background refresh (on
    # by default) has its own tests, which ask for it with background_refresh=True.
    monkeypatch.setenv("MEMORAM_AUTH_BACKGROUND_REFRESH", "0")


@pytest.fixture(autouse=True)
def _warnings_not_yet_given() -> Iterator[None]:
    # The cache warns once per process about a directory or file (issue 16); each test is a
    # fresh start, as each run of a program is.
    import memoram_auth.cache

    memoram_auth.cache._warned.clear()
    yield
    memoram_auth.cache._warned.clear()


_PROXY_AND_TRUST_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def _no_secret_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test runs with DEBUG logging on every logger and with its secrets watched.

    Afterwards: no API key of an emulator the test started appears in a log record, a warning
    or error message memoram-auth produced, or a file in a cache directory it used; no token
    it issued appears in a log record.
    """
    handler = _Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    states: list[State] = []
    texts: list[str] = []
    directories: list[str] = []

    def watch(cls: type, remember: list, what: str) -> None:  # type: ignore[type-arg]
        original = cls.__init__  # type: ignore[misc]

        def init(self: object, *args: object, **kwargs: object) -> None:
            original(self, *args, **kwargs)
            remember.append(getattr(self, what) if what else self)

        monkeypatch.setattr(cls, "__init__", init)

    watch(State, states, "")
    watch(FileCache, directories, "directory")
    original_error_init = MemoramAuthError.__init__
    original_warning_init = MemoramAuthWarning.__init__

    def error_init(self: Exception, *args: object, **kwargs: object) -> None:
        original_error_init(self, *args, **kwargs)  # type: ignore[arg-type]
        texts.append(str(self))

    def warning_init(self: Warning, *args: object) -> None:
        original_warning_init(self, *args)
        texts.append(str(self))

    monkeypatch.setattr(MemoramAuthError, "__init__", error_init)
    monkeypatch.setattr(MemoramAuthWarning, "__init__", warning_init)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    keys = {key for state in states for key in state.api_keys}
    tokens = {token for state in states for token in state.issued_tokens}
    files: list[str] = []
    for directory in directories:
        if os.path.isdir(directory) and not directory.startswith("/proc"):
            for pattern in ("*.token", "*.lock", "*.tmp"):
                found = Path(directory).glob(pattern)
                files += [p.read_text(errors="replace") for p in found if p.is_file()]
    for key in keys:
        leaks = [t for t in handler.messages + texts + files if key in t]
        assert not leaks, f"the API key leaked into: {leaks[:3]}"
    for token in tokens:
        leaks = [m for m in handler.messages if token in m]
        assert not leaks, f"a token leaked into a log record: {leaks[:3]}"


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Emulator]:
    """One emulator for a whole module, for Hypothesis tests (which dislike function fixtures)."""
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throwaway certificate authority that nothing outside these tests trusts."""
    return trustme.CA()


@pytest.fixture
def ca_bundle(tls_ca: trustme.CA, tmp_path: Path) -> str:
    """Path (a str, as ``requests``' ``verify`` wants) of a PEM file holding the CA certificate."""
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_server_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A server-side context with a certificate from *tls_ca* for 127.0.0.1 and localhost.

    No client certificates asked for; for mTLS set ``verify_mode = ssl.CERT_REQUIRED`` and
    ``tls_ca.configure_trust(context)`` before (or while) an emulator serves with it.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def tls_emulator(tls_server_context: ssl.SSLContext) -> Iterator[Emulator]:
    """An HTTPS emulator on 127.0.0.1: ``base_url`` is ``https://127.0.0.1:PORT/api/v1``.

    Its context is ``tls_emulator.ssl_context`` (the ``tls_server_context`` fixture's).
    """
    with Emulator(ssl_context=tls_server_context) as emulator:
        yield emulator


@pytest.fixture
def tls_client_cert(tls_ca: trustme.CA, tmp_path: Path) -> tuple[str, str]:
    """``(certfile, keyfile)`` of a client certificate for ``client@example`` from *tls_ca*."""
    issued = tls_ca.issue_cert("client@example")
    certfile, keyfile = tmp_path / "client.pem", tmp_path / "client.key"
    issued.cert_chain_pems[0].write_to_path(str(certfile))
    issued.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


@pytest.fixture
def connect_proxy() -> Iterator[ConnectProxy]:
    """A running :class:`tests._proxy.ConnectProxy` (no auth); ``connect_proxy.url`` to use it."""
    # Imported here: the leak-guard test copies this conftest into a directory of its own.
    from ._proxy import ConnectProxy

    with ConnectProxy() as proxy:
        yield proxy
