"""vcrpy around the token request: it records and replays it whichever of vcrpy and
memoram-auth was imported first, and the cassette holds no API key."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from memoram_auth import MemoramAuth
from memoram_auth.emulator import Emulator

vcr = pytest.importorskip("vcr")


@pytest.fixture(autouse=True)
def _vcr_quiet() -> Iterator[None]:
    # vcrpy's debug log prints each recorded answer whole, the token response's too (the leak
    # guard of conftest.py would catch it): this module's tests leave it at warnings.
    logger = logging.getLogger("vcr")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def test_vcrpy_records_and_replays_the_token_request_without_the_key(tmp_path: Path) -> None:
    # By now memoram-auth's requests transport is imported and has made its connection pools:
    # the order in which a cassette used to be bypassed.
    import memoram_auth.transports.requests  # noqa: F401 - imported before the cassette

    cassette = tmp_path / "tags.yaml"
    recorder = vcr.VCR(filter_post_data_parameters=["api_key"])
    with Emulator() as emu:
        base_url, key = emu.base_url, emu.api_key
        with recorder.use_cassette(str(cassette), record_mode="once"):
            auth = MemoramAuth(key, base_url=base_url, cache_dir=False, expires_in=3000)
            assert requests.get(f"{base_url}/tags", auth=auth, timeout=10).status_code == 200
        assert emu.counters.token_requests == 1
    recorded = cassette.read_text()
    assert "/auth/token" in recorded
    assert key not in recorded
    # The emulator is gone: only the cassette can answer now. Another token lifetime is
    # another provider, so the token request is made again and replayed.
    with recorder.use_cassette(str(cassette), record_mode="none") as played:
        auth = MemoramAuth(key, base_url=base_url, cache_dir=False, expires_in=3001)
        assert requests.get(f"{base_url}/tags", auth=auth, timeout=10).status_code == 200
        assert played.play_count == 2


@pytest.mark.parametrize("first", ["vcr", "memoram_auth"])
def test_vcrpy_replays_whichever_is_imported_first(first: str, tmp_path: Path) -> None:
    cassette = tmp_path / "tags.yaml"
    with Emulator() as emu:
        base_url, key = emu.base_url, emu.api_key
        with vcr.use_cassette(str(cassette), record_mode="once"):
            auth = MemoramAuth(key, base_url=base_url, cache_dir=False, expires_in=2000)
            assert requests.get(f"{base_url}/tags", auth=auth, timeout=10).status_code == 200
    imports = ["import vcr", "import memoram_auth.transports.requests"]
    if first == "memoram_auth":
        imports.reverse()
    script = textwrap.dedent(
        f"""
        {imports[0]}
        {imports[1]}
        import requests, vcr
        from memoram_auth import MemoramAuth

        with vcr.use_cassette({str(cassette)!r}, record_mode="none") as played:
            auth = MemoramAuth({key!r}, base_url={base_url!r}, cache_dir=False)
            assert requests.get({base_url!r} + "/tags", auth=auth, timeout=10).status_code == 200
            assert played.play_count == 2, played.play_count
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
