"""Every ``sh`` block of docs/troubleshooting.md runs, as written, against an emulator.

A block that cannot run here (a real keyring, a corporate network, packages to install) has
``<!-- readme-test: skip (the reason) -->`` on the line before its fence, as in the README.
``text`` blocks are messages shown, not run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoram_auth.emulator import Emulator

PAGE = Path(__file__).resolve().parent.parent / "docs" / "troubleshooting.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
SKIP = re.compile(r"<!-- readme-test: skip \((.+)\) -->\s*$")


def blocks() -> list[tuple[str, str, str, str | None]]:
    """(section, language, code, skip reason) of each fenced block, in order."""
    text = PAGE.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n")
        section = re.findall(r"^## (.+)$", before, re.MULTILINE)[-1]
        skip = SKIP.search(before.rsplit("\n", 1)[-1])
        found.append((section, match.group(1), match.group(2), skip.group(1) if skip else None))
    return found


RUNNABLE = [
    (section, code) for section, language, code, skip in blocks() if language == "sh" and not skip
]


def test_the_page_has_runnable_blocks_and_says_why_others_are_skipped() -> None:
    assert len(RUNNABLE) >= 6
    for section, language, _, skip in blocks():
        assert language in ("sh", "text"), f"{section}: a {language or 'bare'} block"
        assert skip is None or skip.strip(), section


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    runtime = Path(tempfile.mkdtemp(prefix="ma-"))  # the agent's socket needs a short path
    with Emulator() as emu:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")}
        environ.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}",
            MEMORAM_BASE_URL=emu.base_url,
            MEMORAM_API_KEY=emu.api_key,
            MEMORAM_AUTH_CACHE_DIR=str(tmp_path / "cache"),
            XDG_RUNTIME_DIR=str(runtime),
        )
        try:
            yield environ
        finally:
            shutil.rmtree(runtime, ignore_errors=True)


@pytest.mark.parametrize(
    "code", [code for _, code in RUNNABLE], ids=[section[:40] for section, _ in RUNNABLE]
)
def test_a_block_runs(code: str, env: dict[str, str]) -> None:
    if "curl " in code and shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
