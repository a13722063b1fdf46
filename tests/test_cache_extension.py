"""The optional TokenCache methods for shared caches: ``bind_secret`` and ``reject``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import requests

from memoram_auth import MemoramAuth
from memoram_auth._derive import cache_secret, hkdf_sha256
from memoram_auth.cache import FileCache
from memoram_auth.emulator import Emulator
from memoram_auth.provider import TokenProvider
from memoram_auth.token import Token


class RecordingCache(FileCache):
    """A file cache that also has the optional methods, and records how they are called."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.secrets: dict[str, bytes] = {}
        self.rejections: list[tuple[str, str, float]] = []
        self.calls: list[str] = []

    def bind_secret(self, slot: str, secret: bytes) -> None:
        self.calls.append("bind_secret")
        self.secrets[slot] = secret

    def reject(self, slot: str, token: str, rejected_at: float) -> None:
        self.calls.append("reject")
        self.rejections.append((slot, token, rejected_at))

    def load(self, slot: str, **binding: str) -> Token | None:
        self.calls.append("load")
        return super().load(slot, **binding)


def test_hkdf_matches_rfc_5869_test_case_1() -> None:
    okm = hkdf_sha256(
        bytes([0x0B] * 22), salt=bytes(range(13)), info=bytes(range(0xF0, 0xFA)), length=42
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_the_secret_depends_on_key_and_base_url_and_hides_both() -> None:
    a = cache_secret("mem_" + "a" * 48, "https://api.memoram.app/api/v1")
    assert len(a) == 32
    assert a != cache_secret("mem_" + "b" * 48, "https://api.memoram.app/api/v1")
    assert a != cache_secret("mem_" + "a" * 48, "http://127.0.0.1:8765/api/v1")
    assert b"mem_" not in a


def test_the_provider_binds_the_slot_before_anything_else(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    cache = RecordingCache(tmp_path)
    provider = TokenProvider(memoram_emulator.api_key, memoram_emulator.base_url, cache=cache)
    provider.get_token()
    assert cache.calls[0] == "bind_secret"
    assert cache.secrets == {
        provider.slot: cache_secret(memoram_emulator.api_key, memoram_emulator.base_url)
    }


def test_a_401_is_reported_to_the_cache_by_the_next_refresh(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    cache = RecordingCache(tmp_path)
    auth = MemoramAuth(memoram_emulator.api_key, base_url=memoram_emulator.base_url)
    auth.provider = TokenProvider(memoram_emulator.api_key, memoram_emulator.base_url, cache=cache)
    first = auth.provider.get_token()
    memoram_emulator.revoke_all()
    response = requests.get(f"{memoram_emulator.base_url}/tags", auth=auth, timeout=10)
    assert response.status_code == 200  # replayed with a new token
    assert [(slot, token) for slot, token, _ in cache.rejections] == [
        (auth.provider.slot, first.value)
    ]
    # Reported before the cache is read for the replacement, so it cannot hand back the
    # rejected token.
    assert cache.calls.index("reject") < len(cache.calls) - cache.calls[::-1].index("load") - 1


def test_the_warm_file_cache_path_imports_no_hmac(
    memoram_emulator: Emulator, tmp_path: Path
) -> None:
    code = (
        "import sys, json\n"
        "from memoram_auth.provider import get_provider\n"
        f"get_provider({memoram_emulator.api_key!r}, {memoram_emulator.base_url!r},"
        f" cache_dir={str(tmp_path)!r}).get_token()\n"
        "print(json.dumps([m for m in ('hmac', 'memoram_auth._derive') if m in sys.modules]))\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        for _ in range(2)
    ]
    assert memoram_emulator.counters.token_requests == 1
    # The first run fetched (the token request's own modules may load hmac); the second found
    # the token in the file cache, and that warm path must not pay for hmac.
    assert json.loads(runs[1].stdout) == []
