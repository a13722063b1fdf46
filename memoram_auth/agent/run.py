"""``memoram-auth agent`` and ``memoram-auth agent exec``: what the command line runs.

``exec`` uses the agent already serving the socket, or starts one as a detached process (it
outlives the command, so several ``exec`` share it, and stops after ``--idle-timeout``), then
replaces itself with the command: its exit status and signals are the command's own, and its
environment has ``MEMORAM_AUTH_SOCK`` and the agent's ``MEMORAM_BASE_URL``, never
``MEMORAM_API_KEY``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from .._env import API_KEY_ENV, AUTH_SOCK_ENV, BASE_URL_ENV
from ..exceptions import ConfigurationError, EndpointUnavailableError, MemoramAuthError
from . import protocol
from .client import describe, request
from .server import AgentServer, prepare_directory

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..provider import TokenProvider

__all__ = ["EXEC_IDLE_TIMEOUT", "agent_status", "run_agent", "run_exec"]

#: How long an agent that ``exec`` started waits without a client before it stops: longer
#: than a token's lifetime, so a long-running command that asks once per lifetime keeps it.
EXEC_IDLE_TIMEOUT = 7200.0
#: How long ``exec`` waits for the agent it started to listen.
START_TIMEOUT = 10.0


def export_lines(path: str) -> str:
    """What the agent prints first, for a shell to evaluate (as ssh-agent's ``-s`` output)."""
    quoted = shlex.quote(path)
    return (
        f"{AUTH_SOCK_ENV}={quoted}; export {AUTH_SOCK_ENV};\n"
        f"echo memoram-auth agent pid {os.getpid()} serving {quoted};"
    )


def run_agent(provider: TokenProvider, path: str, *, idle_timeout: float | None = None) -> int:
    """Serve *provider*'s tokens on *path* until a signal; returns the exit status."""
    server = AgentServer(provider, path, idle_timeout=idle_timeout)
    print(export_lines(server.path), flush=True)
    print(
        f"memoram-auth agent: serving {provider.base_url} for key {provider.fingerprint} on "
        f"{server.path}",
        file=sys.stderr,
        flush=True,
    )
    server.serve_forever()
    print("memoram-auth agent: stopped; socket removed", file=sys.stderr, flush=True)
    return 0


def agent_status(path: str) -> dict[str, object] | None:
    """The agent's ``/v1/status``, or ``None`` if no agent answers at *path*."""
    try:
        status, body = request(path, "GET", protocol.STATUS_PATH)
    except EndpointUnavailableError:
        return None
    if status != 200:
        raise protocol.error_for(body, describe(path))
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ConfigurationError(f"{describe(path)} answered a status that is not an object")
    return data


def run_exec(
    path: str,
    command: Sequence[str],
    *,
    base_url: str,
    agent_argv: Callable[[str], list[str]],
    agent_env: Callable[[], dict[str, str]],
) -> int:
    """Run *command* with the agent at *path*, starting one if none answers.

    Args:
        path: the socket.
        command: the program and its arguments.
        base_url: the base URL the command's requests go to: the agent must serve it.
        agent_argv: the command line of an agent for *path*, if one must be started.
        agent_env: its environment (the key is there, not on its command line).

    Returns:
        An exit status if *command* could not be run (on success this process becomes it).

    Raises:
        ConfigurationError: the running agent serves another base URL.
        EndpointUnavailableError: the agent started but never listened.
    """
    path = os.path.abspath(path)
    status = agent_status(path)
    if status is None:
        status = _start(path, agent_argv(path), agent_env())
    served = status.get("base_url")
    if served != base_url:
        raise ConfigurationError(
            f"{describe(path)} serves {served!r}, not {base_url!r}: stop it, or use "
            "--socket for an agent of that base URL"
        )
    env = dict(os.environ)
    env.pop(API_KEY_ENV, None)
    env[AUTH_SOCK_ENV] = path
    env[BASE_URL_ENV] = base_url
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], list(command), env)  # noqa: S606 - the user's own command
    except OSError as exc:
        print(f"memoram-auth: cannot run {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126


def _start(path: str, argv: list[str], env: dict[str, str]) -> dict[str, object]:
    # Detached (its own session, no terminal): the agent outlives this exec and serves the next
    # ones. Its lines go to a log beside the socket, which says why if it does not start.
    prepare_directory(os.path.dirname(path))
    log_fd = os.open(
        path + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    try:
        start = os.lseek(log_fd, 0, os.SEEK_END)
        process = subprocess.Popen(  # noqa: S603 - this package's own agent, by sys.executable
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_fd,
            start_new_session=True,
        )
    finally:
        os.close(log_fd)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        status = agent_status(path)
        if status is not None:
            return status
        if process.poll() is not None:
            # Another exec may have won the race to start one: use that one.
            status = agent_status(path)
            if status is not None:
                return status
            with open(path + ".log", "rb") as log:
                log.seek(start)
                said = log.read(4096).decode(errors="replace").strip().splitlines()
            raise MemoramAuthError(
                f"the agent did not start: {said[-1] if said else process.returncode}"
            )
        time.sleep(0.02)
    raise EndpointUnavailableError(f"the agent started for {path} did not listen in time")
