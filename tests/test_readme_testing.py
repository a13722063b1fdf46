"""The README's "Testing your code" examples, run as the pytest files a user would write."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- readme-test: pytest -->"


def pytest_blocks() -> list[str]:
    """Every ```python block right after the marker, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(re.escape(MARKER) + r"\s*```python\n(.*?)```", text, flags=re.DOTALL)


def test_the_readme_has_its_testing_examples() -> None:
    blocks = pytest_blocks()
    assert len(blocks) >= 2
    assert any("memoram_emulator" in block for block in blocks)
    assert any("respx" in block and "responses" in block for block in blocks)


def test_the_readme_testing_examples_pass(tmp_path: Path) -> None:
    for number, block in enumerate(pytest_blocks()):
        (tmp_path / f"test_readme_{number}.py").write_text(block, encoding="utf-8")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")},
        # As a user's machine with no network: a token request that escaped the mocks fails.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "home" / ".cache"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tests = sum(
        len(re.findall(r"^def test_", block, flags=re.MULTILINE)) for block in pytest_blocks()
    )
    assert f"{tests} passed" in result.stdout
    assert not (tmp_path / "home" / ".cache" / "memoram-auth").exists()
