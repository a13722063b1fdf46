"""What a Redis error means: an outage that passes, or a setting or a right someone must fix.

Both degrade the same way (the local cache, the breaker); they read differently. A wrong
password, a missing ACL right, a wrong database, cluster or Sentinel flags on the wrong
server, TLS to a plaintext port, or a Redis that is full do not pass by themselves: they are
named as such in the warning, the log and the hooks, ``memoram-auth status`` exits non-zero
for them, and strict mode raises them.
"""

from __future__ import annotations

from ._config import CLUSTER_ENV, SENTINEL_ENV, URL_ENV

__all__ = ["OUTAGE", "Diagnosis", "diagnose"]

OUTAGE = "outage"
CONFIGURATION = "configuration"
PERMISSION = "permission"
FULL = "full"

#: (kind, words in the error or an error it was raised from, advice), first match wins.
#: redis-py's messages quote the server's and OpenSSL's, so the text is enough.
_SIGNS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        CONFIGURATION,
        (
            "AuthenticationError",
            "WRONGPASS",
            "invalid username-password",
            "NOAUTH",
            "invalid password",
            "AUTH <password>",
        ),
        f"check the user and password in {URL_ENV}",
    ),
    (
        PERMISSION,
        ("NoPermissionError", "NOPERM", "no permissions to"),
        "the Redis user lacks a right the plugin needs: see acl.conf in memoram-auth-redis",
    ),
    (
        CONFIGURATION,
        ("DB index is out of range", "invalid DB index"),
        f"the database number in {URL_ENV} does not exist on the server",
    ),
    (
        CONFIGURATION,
        # Redis's answer; redis-py 5's own words for it.
        ("cluster support disabled", "Cluster mode is not enabled on this node"),
        f"the server is not a Redis Cluster node: unset {CLUSTER_ENV}",
    ),
    (
        CONFIGURATION,
        ("MOVED ", "CROSSSLOT"),
        f"the server is a Redis Cluster node: set {CLUSTER_ENV}=1",
    ),
    (
        CONFIGURATION,
        ("unknown command 'SENTINEL'", "unknown command `SENTINEL`"),
        f"check {SENTINEL_ENV} (the master's name) and that {URL_ENV} names a Sentinel",
    ),
    (
        CONFIGURATION,
        ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure"),
        f"the server does not speak TLS on this port: use redis:// in {URL_ENV}, or its TLS port",
    ),
    (
        CONFIGURATION,
        ("CERTIFICATE_VERIFY_FAILED",),
        f"if its certificate comes from a private CA, name the CA in {URL_ENV}: "
        "rediss://host:port/0?ssl_ca_certs=/path/to/ca.pem",
    ),
    (
        CONFIGURATION,
        # TLS 1.3: the server's alert, or its hang-up before the client reads it.
        ("CERTIFICATE_REQUIRED", "EOF occurred in violation of protocol"),
        f"if it asks for a client certificate (tls-auth-clients), name one in {URL_ENV}: "
        "?ssl_certfile=/path/to/cert.pem&ssl_keyfile=/path/to/key.pem",
    ),
    (
        FULL,
        ("OutOfMemoryError", "OOM command not allowed"),
        "Redis is full (maxmemory) and refuses writes: give it memory or an eviction policy",
    ),
)


class Diagnosis:
    """``kind`` (outage, configuration, permission, full) and what to do (``advice``)."""

    __slots__ = ("advice", "kind")

    def __init__(self, kind: str, advice: str) -> None:
        self.kind = kind
        self.advice = advice

    @property
    def permanent(self) -> bool:
        """Whether it lasts until someone fixes it (anything but an outage)."""
        return self.kind != OUTAGE


#: With TLS, a plaintext server may also keep reading the TLS hello as a command (it waits
#: for a newline that may not come): the connection times out like a server that is down.
_TLS_TIMEOUT = (
    f"if the port does not speak TLS, connections time out like this: use redis:// in "
    f"{URL_ENV}, or the server's TLS port"
)


def diagnose(exc: BaseException, *, tls: bool = False) -> Diagnosis:
    """What *exc*, or an error it was raised from, says about the set-up (*tls*: the URL
    asks for TLS)."""
    found = _diagnose(exc)
    if tls and found.kind == OUTAGE and "Timeout connecting" in str(exc):
        return Diagnosis(OUTAGE, _TLS_TIMEOUT)
    return found


def _diagnose(exc: BaseException) -> Diagnosis:
    current: BaseException | None = exc
    for _ in range(10):  # a chain is short; a cycle must not hang a failing refresh
        if current is None:
            break
        text = f"{type(current).__name__}: {current}"
        if "No master found for" in text and " : " not in text:
            # The Sentinels answered (no errors collected) and know no master of that name.
            return Diagnosis(CONFIGURATION, f"no Sentinel knows that master: check {SENTINEL_ENV}")
        for kind, signs, advice in _SIGNS:
            if any(sign in text for sign in signs):
                return Diagnosis(kind, advice)
        current = current.__cause__ or current.__context__
    return Diagnosis(OUTAGE, "")
