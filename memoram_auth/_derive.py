"""The secret a shared cache seals a slot with: HKDF-SHA256 of the API key, never the key.

A cache backend that keeps tokens somewhere other people can read (a Redis that a whole fleet
shares) asks for it by having a ``bind_secret`` method (see
:class:`memoram_auth.hookspecs.TokenCache`); the file cache does not, so its warm path never
imports :mod:`hmac` or :mod:`hashlib` (which loads OpenSSL and costs the command line its
start-up time).
"""

from __future__ import annotations

__all__ = ["CACHE_SECRET_SALT", "cache_secret", "hkdf_sha256"]

#: HKDF salt: names the purpose, so the secret is useless for anything but a token cache.
CACHE_SECRET_SALT = b"memoram-auth shared token cache v1"


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract with *salt*, then expand to *length* bytes with *info*."""
    import hashlib
    import hmac

    if not 0 < length <= 255 * 32:
        raise ValueError("HKDF-SHA256 yields 1 to 8160 bytes")
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    output, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        output += block
    return output[:length]


def cache_secret(api_key: str, base_url: str, expires_in: int | None = None) -> bytes:
    """32 bytes from which a shared cache derives its key names and its sealing key.

    One-way: the secret does not give back the API key, and the base URL in ``info`` makes
    the secrets of one key for two APIs unrelated. An asked lifetime (``expires_in``) is part
    of it as it is of the slot (:func:`memoram_auth.cache.slot_for`): a shared cache names its
    entries after this secret, so without it 60 s and one-hour callers would share a token.
    ``None`` gives the secret of the versions before.
    """
    info = b"token cache secret\n" + base_url.encode("utf-8")
    if expires_in is not None:
        info += b"\nexpires_in=" + str(int(expires_in)).encode("ascii")
    return hkdf_sha256(api_key.encode("utf-8"), salt=CACHE_SECRET_SALT, info=info)
