"""The README's examples, run as written against the emulator (issue 16, point 1).

Every fenced ``python`` and ``sh`` block runs, in order, in its own process, with
``MEMORAM_BASE_URL`` and ``MEMORAM_API_KEY`` naming an emulator this module starts, and with
a temporary HOME and token cache. An HTML comment on the line before a block changes that:

- ``<!-- readme-test: skip (why) -->``: not run (it installs packages, or runs until Ctrl-C);
  the reason is required.
- ``<!-- readme-test: pytest -->``: a test file; it is written out and run with pytest, with
  memoram-auth's fixtures (``memoram_emulator``) available as they are to users.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from memoram_auth.emulator import Emulator

README = Path(__file__).resolve().parent.parent / "README.md"
#: At least this many blocks run: a parser that silently finds nothing must fail.
MIN_RUN = 10

_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(\w+)\s*(?:\((.+)\))?\s*-->\s*$")


class Block(NamedTuple):
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    mode: str  # "run", "pytest" or "skip"
    reason: str


def blocks(text: str) -> list[Block]:
    """The README's fenced blocks, with the marker on the line before each, if any."""
    found: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        start = index
        index += 1
        while index < len(lines) and lines[index].rstrip() != "```":
            index += 1
        code = "\n".join(lines[start + 1 : index]) + "\n"
        marker = _MARKER.match(lines[start - 1]) if start else None
        mode, reason = (marker.group(1), marker.group(2) or "") if marker else ("run", "")
        found.append(Block(start + 1, opening.group(1), code, mode, reason))
        index += 1
    return found


ALL = blocks(README.read_text(encoding="utf-8"))
RUNNABLE = [b for b in ALL if b.language in ("python", "sh") and b.mode != "skip"]


def test_the_markers_are_well_formed() -> None:
    text = README.read_text(encoding="utf-8")
    markers = [line for line in text.splitlines() if "readme-test" in line]
    assert markers  # the README has some
    for line in markers:
        match = _MARKER.match(line)
        assert match, f"not a marker this test understands: {line!r}"
        mode, reason = match.groups()
        assert mode in ("skip", "pytest"), line
        assert mode != "skip" or reason, f"a skip needs a reason in parentheses: {line!r}"
    # Each marker sits right before a block.
    assert len([b for b in ALL if b.mode != "run"]) == len(markers)


def test_enough_examples_run() -> None:
    assert len(RUNNABLE) >= MIN_RUN, [(b.line, b.language) for b in RUNNABLE]
    assert any(b.mode == "pytest" for b in RUNNABLE)


@pytest.mark.parametrize(
    "block", [b for b in ALL if b.language == "python"], ids=lambda b: f"line-{b.line}"
)
def test_python_examples_run_on_python_3_9(block: Block) -> None:
    # "X | None" in an annotation fails on 3.9 at run time unless annotations are postponed.
    tree = ast.parse(block.code)
    postponed = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )
    annotations = [
        node.returns if isinstance(node, ast.FunctionDef) else node.annotation
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.arg))
    ]
    uses_union = any(
        isinstance(part, ast.BinOp) and isinstance(part.op, ast.BitOr)
        for annotation in annotations
        if annotation is not None
        for part in ast.walk(annotation)
    )
    assert postponed or not uses_union, "add: from __future__ import annotations"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def readme_env(emulator: Emulator, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("MEMORAM_", "HTTPIE_"))}
    bin_dir = str(Path(sys.executable).parent)  # memoram-auth, http and python, as installed
    return {
        **keep,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "MEMORAM_BASE_URL": emulator.base_url,
        "MEMORAM_API_KEY": emulator.api_key,
        "MEMORAM_AUTH_CACHE_DIR": str(tmp_path / "cache"),
        "HTTPIE_CONFIG_DIR": str(home / ".config" / "httpie"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: f"line-{b.line}-{b.language}-{b.mode}")
def test_readme_example_runs(block: Block, readme_env: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if block.mode == "pytest":
        (work / "pytest.ini").write_text("[pytest]\n")  # not this repository's settings
        (work / "test_readme_example.py").write_text(block.code)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    elif block.language == "python":
        (work / "example.py").write_text(block.code)
        command = [sys.executable, "example.py"]
    else:
        (work / "example.sh").write_text(block.code)
        command = ["bash", "-euo", "pipefail", "example.sh"]
    result = subprocess.run(
        command,
        cwd=work,
        env=readme_env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,  # as in CI: what --ignore-stdin is in the README for
    )
    assert result.returncode == 0, (
        f"README line {block.line}:\n{block.code}\n--- stdout\n{result.stdout}\n"
        f"--- stderr\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr
