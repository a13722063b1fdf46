"""The examples of the README and of every page under ``docs/``, run as written against the
emulator.

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

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: The documents whose blocks run: the README and the docs site's pages.
DOCUMENTS = [README, *sorted((ROOT / "docs").rglob("*.md"))]
#: At least this many blocks run: a parser that silently finds nothing must fail.
MIN_RUN = 20

_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(\w+)\s*(?:\((.+)\))?\s*-->\s*$")


class Block(NamedTuple):
    document: str  # relative to the checkout, e.g. "docs/guides/httpie.md"
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    mode: str  # "run", "pytest" or "skip"
    reason: str


def blocks(text: str, document: str = "README.md") -> list[Block]:
    """A document's fenced blocks, with the marker on the line before each, if any."""
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
        found.append(Block(document, start + 1, opening.group(1), code, mode, reason))
        index += 1
    return found


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


ALL = [
    block for path in DOCUMENTS for block in blocks(path.read_text(encoding="utf-8"), _name(path))
]
RUNNABLE = [b for b in ALL if b.language in ("python", "sh") and b.mode != "skip"]


def _id(block: Block) -> str:
    return f"{block.document}:{block.line}"


def test_the_docs_pages_are_found() -> None:
    # A moved docs directory must not leave this test running the README alone.
    assert len(DOCUMENTS) > 20
    assert {b.document for b in RUNNABLE} >= {"README.md", "docs/getting-started.md"}


@pytest.mark.parametrize("path", DOCUMENTS, ids=_name)
def test_the_markers_are_well_formed(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    markers = [line for line in text.splitlines() if "readme-test" in line]
    for line in markers:
        match = _MARKER.match(line)
        assert match, f"not a marker this test understands: {line!r}"
        mode, reason = match.groups()
        assert mode in ("skip", "pytest"), line
        assert mode != "skip" or reason, f"a skip needs a reason in parentheses: {line!r}"
    # Each marker sits right before a block.
    document = _name(path)
    assert len([b for b in ALL if b.document == document and b.mode != "run"]) == len(markers)


def test_enough_examples_run() -> None:
    assert len(RUNNABLE) >= MIN_RUN, [(b.document, b.line, b.language) for b in RUNNABLE]
    assert any(b.mode == "pytest" for b in RUNNABLE)


@pytest.mark.parametrize("block", [b for b in ALL if b.language == "python"], ids=_id)
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
@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: f"{_id(b)}-{b.language}-{b.mode}")
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
        f"{block.document} line {block.line}:\n{block.code}\n--- stdout\n{result.stdout}\n"
        f"--- stderr\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr
