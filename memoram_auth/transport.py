"""The one HTTP call the core makes itself: POST the key to the token endpoint, stdlib only.

The core exchanges tokens with ``urllib`` rather than requests or httpx so that it knows no HTTP
library, the CLI never pays for importing one, and the exchange behaves the same whichever
library the user's own requests go through. ``urllib`` honours ``HTTPS_PROXY``/``NO_PROXY`` and
the system's CA store (``SSL_CERT_FILE``), which is what a credential helper should do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import urllib.request

__all__ = ["MAX_BODY", "RawResponse", "Transport", "TransportError", "urllib_transport"]

#: A token answer is a few hundred bytes; anything past this is a proxy's page, not a token.
MAX_BODY = 1 << 20


class RawResponse:
    """What came back, before any interpretation. :meth:`header` ignores case."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        self.status = status
        # Lower-cased once here; a repeated header keeps its first value, as email.Message does.
        self.headers: dict[str, str] = {}
        for name, value in headers:
            self.headers.setdefault(name.lower(), value)
        self.body = body

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class TransportError(Exception):
    """The request got no HTTP answer (refused, reset, DNS, TLS, timeout). Safe to show."""


class Transport(Protocol):
    """Sends one POST and returns the answer, or raises :class:`TransportError`."""

    def __call__(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> RawResponse: ...


_opener: urllib.request.OpenerDirector | None = None


def _get_opener() -> urllib.request.OpenerDirector:
    global _opener
    if _opener is None:
        import urllib.request

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            # A redirect of the token POST would resend the API key wherever the Location
            # header points; a 3xx surfaces as an unexpected status instead.
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        _opener = urllib.request.build_opener(NoRedirect)
    return _opener


def urllib_transport(
    url: str, headers: Mapping[str, str], body: bytes, timeout: float
) -> RawResponse:
    """The default :class:`Transport`, built on ``urllib.request``."""
    import http.client
    import socket
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310 - the URL passed validate_base_url(): http(s) only
    try:
        with _get_opener().open(request, timeout=timeout) as response:
            return RawResponse(response.status, response.headers.items(), response.read(MAX_BODY))
    except urllib.error.HTTPError as exc:
        # A non-2xx answer is still an answer: hand it back for the caller to judge.
        try:
            error_body = exc.read(MAX_BODY)
        except (OSError, http.client.HTTPException):
            error_body = b""
        finally:
            exc.close()
        return RawResponse(exc.code, exc.headers.items(), error_body)
    except urllib.error.URLError as exc:
        raise TransportError(f"cannot connect: {exc.reason}") from exc
    except (TimeoutError, socket.timeout) as exc:  # distinct classes before Python 3.10
        raise TransportError(f"no answer within {timeout:g} s") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise TransportError(f"the connection failed: {type(exc).__name__}: {exc}") from exc
