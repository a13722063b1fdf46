"""Names and sealed values for one slot: what Redis holds is useless without the API key.

Everything comes from the 32-byte secret the core derives from the API key and base URL
(HKDF-SHA256; the plugin never sees the key). From it, HKDF-Expand makes three keys:

- a name key: the slot's Redis names are ``PREFIX{HMAC(name key, "slot")}:...``, so neither
  the key nor a plain digest of it appears, and every name of a slot shares one hash tag
  (one Redis Cluster slot, which Lua scripts over several keys need);
- a sealing key: the token, and the digest of the rejected token it replaces (``replaces``),
  are AES-GCM encrypted, with the key name and the entry's clear fields (generation, the two
  tags below) as associated data, so nothing can be moved between slots or relabelled
  without failing to decrypt;
- a tag key: ``HMAC(tag key, token)`` lets a Lua script compare "is this the token that was
  rejected?", and ``HMAC(tag key, "replaces" + digest)`` "is this entry a replacement of the
  token that was rejected?", without Redis ever holding a token or a digest of one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from memoram_auth.token import Token, is_header_safe, token_digest

from ._config import DEFAULT_PREFIX

__all__ = ["DEFAULT_PREFIX", "Sealed", "SlotKeys"]

_NONCE = 12


def _expand(secret: bytes, label: bytes) -> bytes:
    return HKDFExpand(hashes.SHA256(), 32, b"memoram-auth redis v1 " + label).derive(secret)


class Sealed:
    """What is read back from Redis for a slot, opened: the token and where it came from."""

    __slots__ = ("base_url", "generation", "key_fingerprint", "token")

    def __init__(self, token: Token, generation: int, base_url: str, key_fingerprint: str) -> None:
        self.token = token
        self.generation = generation
        self.base_url = base_url
        self.key_fingerprint = key_fingerprint


class SlotKeys:
    """The Redis names of one slot and the keys that seal its token."""

    def __init__(self, secret: bytes, prefix: str = DEFAULT_PREFIX) -> None:
        if len(secret) < 32:
            raise ValueError("the slot secret must be at least 32 bytes")
        name_key = _expand(secret, b"names")
        self._tag_key = _expand(secret, b"tags")
        self._aead = AESGCM(_expand(secret, b"seal"))
        ident = hmac.new(name_key, b"slot", hashlib.sha256).hexdigest()[:32]
        base = f"{prefix}{{{ident}}}"
        #: A hash: ``gen``, ``rp``, ``tag``, ``blob``; its TTL is the token's remaining life.
        self.token = f"{base}:token"
        #: The fencing generation: a counter that never goes below the server's clock in µs.
        self.generation = f"{base}:gen"
        #: Generations at or below this were handed out before a rejection: refused on store.
        self.floor = f"{base}:floor"
        #: ``FLOOR:RP``: the floor, and the ``rp`` of replacements of the token whose rejection
        #: raised it (such a replacement is stored below the floor).
        self.floor_by = f"{base}:floor-by"
        #: ``SET NX PX`` with an owner value: the fleet's single flight.
        self.lock = f"{base}:lock"

    def tag(self, token_value: str) -> str:
        """A keyed digest of a token: comparable in Lua, useless without the secret."""
        digest = hmac.new(self._tag_key, token_value.encode("utf-8"), hashlib.sha256)
        return digest.hexdigest()[:32]

    def replaces_tag(self, digest: str | None) -> str:
        """The clear ``rp`` field for a token that replaces the token of *digest* ("" if none)."""
        if not digest:
            return ""  # unmarked, or a replacement of an unknown token: matches no rejection
        mac = hmac.new(self._tag_key, b"replaces\n" + digest.encode("ascii"), hashlib.sha256)
        return mac.hexdigest()[:32]

    def rejected_tags(self, token_value: str) -> tuple[str, str]:
        """For a rejection of *token_value*: its tag, and the ``rp`` of its replacements."""
        return self.tag(token_value), self.replaces_tag(token_digest(token_value))

    def _aad(self, generation: int, replaces_tag: str, tag: str) -> bytes:
        return f"{self.token}\n{generation}\nrp={replaces_tag}\n{tag}".encode()

    def seal(
        self, token: Token, *, generation: int, base_url: str, key_fingerprint: str
    ) -> dict[str, str]:
        """The hash fields to store for *token*: clear metadata and the sealed value."""
        tag = self.tag(token.value)
        replaces = token.replaces or None  # "" (an unknown token) is no mark to share
        replaces_tag = self.replaces_tag(replaces)
        payload = json.dumps(
            {
                "value": token.value,
                "lifetime": token.lifetime,
                "base_url": base_url,
                "key": key_fingerprint,
                "replaces": replaces,
            }
        ).encode("utf-8")
        nonce = os.urandom(_NONCE)
        sealed = nonce + self._aead.encrypt(
            nonce, payload, self._aad(generation, replaces_tag, tag)
        )
        return {
            "gen": str(generation),
            "rp": replaces_tag,
            "tag": tag,
            # Text, not bytes: a client passed in may decode responses.
            "blob": base64.b64encode(sealed).decode("ascii"),
        }

    def open(self, fields: dict[str, str], ttl_ms: int, now: float) -> Sealed | None:
        """The token in *fields* (read with a TTL of *ttl_ms*), or ``None``: every flaw is a miss.

        Expiry comes from the key's TTL, Redis's own clock, so machines whose clocks disagree
        still agree on it; a TTL longer than the sealed lifetime is not believed.
        """
        try:
            generation = int(fields["gen"])
            sealed = base64.b64decode(fields["blob"], validate=True)
            plain = self._aead.decrypt(
                sealed[:_NONCE],
                sealed[_NONCE:],
                self._aad(generation, fields["rp"], fields["tag"]),
            )
            data = json.loads(plain)
            value, lifetime = data["value"], float(data["lifetime"])
            base_url, key_fingerprint = str(data["base_url"]), str(data["key"])
            replaces = data["replaces"]
        except (KeyError, ValueError, TypeError, InvalidTag):
            # An entry of the version before (a clear "ar" flag, no "rp") is a miss too.
            return None
        if (
            not isinstance(value, str)
            or not is_header_safe(value)
            or fields["tag"] != self.tag(value)
            or not (replaces is None or isinstance(replaces, str))
            or fields["rp"] != self.replaces_tag(replaces)
        ):
            return None
        if not 0 < ttl_ms <= lifetime * 1000 + 1000:
            return None
        expires_at = now + ttl_ms / 1000
        token = Token(
            value,
            obtained_at=expires_at - lifetime,
            expires_at=expires_at,
            replaces=replaces,
        )
        return Sealed(token, generation, base_url, key_fingerprint)
