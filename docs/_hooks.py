"""mkdocs hooks: pages made at build time from the source of truth, never copied by hand.

- ``reference/cli.md``: every command's ``--help``, as the installed ``memoram-auth`` prints
  it, so that an option added to the parser is documented by the next build.
- ``project/*.md``: the root documents (changelog, contributing guide, benchmarks,
  architecture), which live beside the code, with their relative links rewritten for the site.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # mkdocs is needed to build, not to import this (tests/test_docs_site.py)
    from mkdocs.structure.files import Files

ROOT = Path(__file__).resolve().parent.parent

#: Root document -> its page on the site.
PROJECT_PAGES = {
    "CHANGELOG.md": "project/changelog.md",
    "CONTRIBUTING.md": "project/contributing.md",
    "BENCHMARKS.md": "project/benchmarks.md",
    "ARCHITECTURE.md": "project/architecture.md",
}

_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def _help(argv: list[str]) -> str:
    """What ``memoram-auth ARGV --help`` prints, 100 columns wide."""
    from memoram_auth.cli import main

    out = io.StringIO()
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; the page must not vary
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main([*argv, "--help"])
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return out.getvalue().rstrip()


def _commands() -> list[tuple[str, str]]:
    """(name, one-line help) of each ``memoram-auth`` command, in the parser's order."""
    from memoram_auth.cli import _parser

    parser, _ = _parser()
    # argparse has no public way to list subcommands; its actions are the parser's own record.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return [(name, helps.get(name, "")) for name in action.choices]
    raise RuntimeError("memoram-auth's parser has no commands")


def cli_reference() -> str:
    """The CLI reference page, in Markdown."""
    from memoram_auth.emulator.__main__ import CONTROLS

    sections = [
        "# Command line reference",
        "",
        "Generated from the parser of the installed `memoram-auth` at build time: every command",
        "and option below is what `memoram-auth COMMAND --help` prints. Exit statuses are in",
        "[Exit codes](exit-codes.md); the settings shared by every command, and their",
        "environment variables, in [Configuration](configuration.md).",
        "",
        "## memoram-auth",
        "",
        "```text",
        _help([]),
        "```",
    ]
    for name, summary in _commands():
        argvs = [[name]]
        if name == "agent":
            argvs.append(["agent", "exec"])
        if name == "emulator":
            argvs += [["emulator", action] for action in CONTROLS]
        for argv in argvs:
            title = " ".join(argv)
            sections += ["", f"## {title}", ""]
            if argv == [name] and summary:
                sections += [summary[:1].upper() + summary[1:] + ".", ""]
            sections += ["```text", _help(argv), "```"]
    return "\n".join(sections) + "\n"


def _rewrite_links(text: str, source: str, extra: list[str]) -> str:
    """Relative links of a root document, made to work on its project page."""
    page_dir = Path(PROJECT_PAGES[source]).parent

    def replace(match: re.Match[str]) -> str:
        bang, label, target = match.groups()
        if target.startswith(("https://", "http://", "mailto:", "#")):
            return match.group(0)
        path, _, anchor = target.partition("#")
        suffix = f"#{anchor}" if anchor else ""
        if path in PROJECT_PAGES:
            return f"{bang}[{label}]({os.path.relpath(PROJECT_PAGES[path], page_dir)}{suffix})"
        if bang and (ROOT / path).is_file():
            extra.append(path)  # an image: published beside the page
            return f"{bang}[{label}]({path})"
        # A file of the repository that the site does not publish: named, not linked.
        return f"{label} (`{path}` in the repository)" if label != path else f"`{path}`"

    return _LINK.sub(replace, text)


def on_files(files: Files, config: Any) -> Files:  # noqa: ANN401 - mkdocs' config object
    from mkdocs.structure.files import File

    files.append(File.generated(config, "reference/cli.md", content=cli_reference()))
    for source, page in PROJECT_PAGES.items():
        extra: list[str] = []
        text = _rewrite_links((ROOT / source).read_text(encoding="utf-8"), source, extra)
        files.append(File.generated(config, page, content=text))
        for path in extra:
            uri = str(Path(page).parent / path)
            if files.get_file_from_path(uri) is None:
                files.append(File.generated(config, uri, abs_src_path=str(ROOT / path)))
    return files
