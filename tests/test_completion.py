"""``memoram-auth completion bash|zsh|fish``, run in the real shells; the parser's other
newcomer-facing answers (``-V``, an unknown option, ``demo --help``, options that do not apply).

bash is everywhere; the zsh and fish tests skip where the shell is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("memoram-auth")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "memoram_auth"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")}
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("completion")
    written = {}
    for shell in ("bash", "zsh", "fish"):
        result = run("completion", shell)
        assert result.returncode == 0, result.stderr
        written[shell] = directory / f"memoram-auth.{shell}"
        written[shell].write_text(result.stdout)
    return written


def bash_complete(script: Path, line: str) -> list[str]:
    """What bash's completion offers for *line* (the word being completed is its last)."""
    words = line.split(" ")
    program = (
        f"source {script}\n"
        "complete -p memoram-auth\n"
        f"COMP_WORDS=({' '.join(repr(word) for word in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_memoram_auth\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    registered, *offered = result.stdout.splitlines()
    assert registered == "complete -F _memoram_auth memoram-auth"
    return offered


def test_bash_offers_commands_and_each_commands_options(scripts: dict[str, Path]) -> None:
    assert bash_complete(scripts["bash"], "memoram-auth st") == ["status"]
    assert "completion" in bash_complete(scripts["bash"], "memoram-auth ")
    assert bash_complete(scripts["bash"], "memoram-auth token --re") == ["--rejected"]
    # A value option's argument is not taken for the command.
    assert bash_complete(scripts["bash"], "memoram-auth --base-url token st") == ["status"]
    status = bash_complete(scripts["bash"], "memoram-auth status --")
    assert "--json" in status
    assert "--all" in status
    assert "--proxy" not in status  # status sends no token request
    assert "--proxy" in bash_complete(scripts["bash"], "memoram-auth token --")
    assert bash_complete(scripts["bash"], "memoram-auth completion f") == ["fish"]


def test_bash_completes_directories_after_cache_dir(
    scripts: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "tokens-here").mkdir()
    (tmp_path / "tokens-file").write_text("")
    offered = bash_complete(scripts["bash"], f"memoram-auth token --cache-dir {tmp_path}/tok")
    assert offered == [f"{tmp_path}/tokens-here"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_registers_and_offers_the_commands_options(scripts: dict[str, Path]) -> None:
    # compadd works only inside a completion widget: a stand-in prints what would be offered.
    program = (
        "autoload -U compinit; compinit -u -D\n"
        f"source {scripts['zsh']}\n"
        "print -r -- $_comps[memoram-auth]\n"
        'compadd() { shift; print -rl -- "$@" }\n'
        "words=(memoram-auth --base-url x status --); CURRENT=5; _memoram_auth\n"
    )
    result = subprocess.run(
        ["zsh", "-f", "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    registered, *offered = result.stdout.splitlines()
    assert registered == "_memoram_auth"
    assert "--all" in offered
    assert "--proxy" not in offered


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_offers_commands_and_each_commands_options(scripts: dict[str, Path]) -> None:
    def complete(line: str) -> list[str]:
        result = subprocess.run(
            ["fish", "--no-config", "-c", f"source {scripts['fish']}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return [entry.split("\t")[0] for entry in result.stdout.splitlines()]

    assert complete("memoram-auth tok") == ["token"]
    assert "--rejected" in complete("memoram-auth token --")
    status = complete("memoram-auth status --")
    assert "--all" in status
    assert "--proxy" not in status


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = run("completion", "tcsh")
    assert result.returncode == 2
    assert "invalid choice: 'tcsh'" in result.stderr


# -- the parser's answers --------------------------------------------------------------------


@pytest.mark.parametrize("option", ["-V", "--version"])
def test_version_short_and_long(option: str) -> None:
    from memoram_auth import __version__

    result = run(option)
    assert (result.returncode, result.stdout) == (0, f"memoram-auth {__version__}\n")


def test_an_unknown_option_alone_is_named_not_a_missing_command() -> None:
    result = run("--bogus")
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr
    assert "required" not in result.stderr
    missing = run("--no-disk-cache")
    assert missing.returncode == 2
    assert "required: COMMAND" in missing.stderr


def test_demo_help_describes_the_demo() -> None:
    result = run("demo", "--help")
    assert result.returncode == 0
    assert "against the emulator" in result.stdout
    assert "no key" in result.stdout


@pytest.mark.parametrize("command", ["status", "clear"])
def test_network_options_do_not_apply_to_status_and_clear(command: str) -> None:
    after = run(command, "--proxy", "http://127.0.0.1:3128")
    assert after.returncode == 2
    assert "unrecognized arguments: --proxy" in after.stderr
    before = run("--ca-bundle", "ca.pem", command)
    assert before.returncode == 2
    assert f"--ca-bundle does not apply to {command}" in before.stderr
    assert "--proxy" not in run(command, "--help").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-disk-cache", "agent"], "give it after the command: memoram-auth agent"),
        (["--base-url", "http://127.0.0.1:1/api/v1", "emulator"], "memoram-auth emulator --help"),
        (["--proxy", "http://127.0.0.1:3128", "demo"], "demo's options"),
        (["--api-key", "mem_0", "completion", "bash"], "completion's options"),
    ],
    ids=["agent", "emulator", "demo", "completion"],
)
def test_a_shared_option_before_a_command_that_ignores_it_is_a_usage_error(
    args: list[str], message: str
) -> None:
    # Before, these ran the demo (agent, emulator) or ignored the option.
    result = run(*args)
    assert result.returncode == 2, result.stdout
    assert f"{args[0]} before {args[-1] if args[-1] != 'bash' else 'completion'}" in result.stderr
    assert message in result.stderr
