"""Just enough HS256 JWT for the emulator to issue and check real tokens (RFC 7519)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

__all__ = ["decode", "encode"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(signing_input: str, secret: bytes) -> str:
    return _b64(hmac.new(secret, signing_input.encode("utf-8"), hashlib.sha256).digest())


def encode(claims: dict[str, Any], secret: bytes) -> str:
    """A compact HS256 JWS of *claims*."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}"
    return f"{signing_input}.{_sign(signing_input, secret)}"


def decode(token: str, secret: bytes) -> dict[str, Any] | None:
    """The claims of *token* if its HS256 signature is valid, else ``None`` (expiry not checked)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    header_b64, payload_b64, signature = parts
    if not hmac.compare_digest(_sign(f"{header_b64}.{payload_b64}", secret), signature):
        return None
    try:
        header = json.loads(_unb64(header_b64))
        claims = json.loads(_unb64(payload_b64))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
        return None
    return claims
