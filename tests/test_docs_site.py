"""The documentation site: its navigation and its pages agree, the pages the build generates
are made, and ``mkdocs build --strict`` passes where mkdocs is installed (``tox -e docs``)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("memoram_docs_hooks", DOCS / "_hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOKS = _hooks()
#: Pages the build hook makes rather than docs/ holding them.
GENERATED = {"reference/cli.md", *HOOKS.PROJECT_PAGES.values()}


def nav_pages() -> list[str]:
    """Every page the nav of mkdocs.yml names (read without a YAML parser: one per line)."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:\n") :]
    return re.findall(r"^\s*- (?:[^:\n]+: )?([\w./-]+\.md)\s*$", nav, re.MULTILINE)


NAV = nav_pages()


def test_the_nav_is_read() -> None:
    assert {"index.md", "guides/httpie.md", "project/changelog.md"} <= set(NAV)
    assert len(NAV) == len(set(NAV)), "a page is in the nav twice"


@pytest.mark.parametrize("page", NAV)
def test_every_nav_page_exists(page: str) -> None:
    assert (DOCS / page).is_file() or page in GENERATED


def test_every_page_is_in_the_nav() -> None:
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    assert sorted(pages - set(NAV)) == []
    assert sorted(pages & GENERATED) == [], "a generated page is also a file in docs/"


def test_the_cli_reference_covers_nested_commands() -> None:
    # The top-level commands come from the parser; those below them (agent exec, the
    # emulator's controls) are known to the hook, and each must show its own options.
    page = HOOKS.cli_reference()
    for heading in ("## token", "## agent exec", "## emulator revoke", "## demo"):
        assert f"\n{heading}\n" in page
    for option in ("--idle-timeout", "--max-lifetime", "--no-disk-cache", "--json"):
        assert option in page
    assert "Traceback" not in page


def test_the_project_pages_rewrite_their_links() -> None:
    extra: list[str] = []
    text = HOOKS._rewrite_links(
        "[a](ARCHITECTURE.md#the-layers) [b](benchmarks/run.py) "
        "![c](benchmarks/background_refresh.png) [d](https://x.example)",
        "CONTRIBUTING.md",
        extra,
    )
    assert text == (
        "[a](architecture.md#the-layers) b (`benchmarks/run.py` in the repository) "
        "![c](benchmarks/background_refresh.png) [d](https://x.example)"
    )
    assert extra == ["benchmarks/background_refresh.png"]


def test_the_readme_names_only_docs_pages_that_exist() -> None:
    # The README is also the package's description, where relative links lead nowhere: it
    # names pages as paths in text, and each must be there.
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\bdocs/[\w./-]+\.md\b", text))
    assert named, "the README points to no docs page"
    assert sorted(p for p in named if not (ROOT / p).is_file()) == []


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed")
def test_the_site_builds_strict(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "reference" / "cli" / "index.html").is_file()
