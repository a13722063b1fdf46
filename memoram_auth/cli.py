"""The ``memoram-auth`` command (also ``python -m memoram_auth``).

``token`` and ``header`` are the hot path of shell scripts, so this module imports only what
they need; with a token in the cache they load neither requests nor httpx nor the exchange.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from types import SimpleNamespace

from ._env import DEBUG_ENV
from .exceptions import (
    ConfigurationError,
    EndpointUnavailableError,
    KeyRejectedError,
    MalformedResponseError,
    MemoramAuthError,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any

    from ._completion import Parsers
    from .provider import TokenProvider
    from .settings import Resolved
    from .token import Token
    from .transport import NetworkSettings

__all__ = ["EXIT_CODES", "main"]

#: Exit statuses, also in the README. argparse's own usage errors are 2 as well.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_KEY_REJECTED = 3
EXIT_UNAVAILABLE = 4
EXIT_MALFORMED = 5
EXIT_CODES: dict[type[MemoramAuthError], int] = {
    ConfigurationError: EXIT_CONFIG,
    KeyRejectedError: EXIT_KEY_REJECTED,
    EndpointUnavailableError: EXIT_UNAVAILABLE,
    MalformedResponseError: EXIT_MALFORMED,
}

PROG = "memoram-auth"


_VALUE_OPTIONS = {
    "--base-url": "base_url",
    "--api-key": "api_key",
    "--cache-dir": "cache_dir",
    "--ca-bundle": "ca_bundle",
    "--cert": "cert",
    "--cert-key": "cert_key",
    "--proxy": "proxy",
}


def _fast_args(argv: list[str]) -> SimpleNamespace | None:
    """``token``/``header`` with only the shared options, read without argparse.

    These two commands run inside other commands' ``$(...)``, often many times: building the
    full argparse parser costs about as long as Python takes to start. Anything else, including
    every mistake, returns ``None`` and goes to argparse for its usual help and errors.
    """
    args = SimpleNamespace(command=None, no_disk_cache=False, json=False, rejected=None)
    for attribute in _VALUE_OPTIONS.values():
        setattr(args, attribute, None)
    rest = iter(argv)
    for arg in rest:
        name, equals, value = arg.partition("=")
        if arg in ("token", "header") and args.command is None:
            args.command = arg
        elif arg == "--no-disk-cache":
            args.no_disk_cache = True
        elif arg == "--json" and args.command == "token":
            args.json = True  # an option of the token command: only after it, as argparse has it
        elif name == "--rejected" and args.command is not None:
            value = value if equals else next(rest, "")
            if not value or (value.startswith("-") and value != "-"):
                return None
            args.rejected = value
        elif name in _VALUE_OPTIONS:
            value = value if equals else next(rest, "")
            if not value or value.startswith("-"):
                return None
            setattr(args, _VALUE_OPTIONS[name], value)
        else:
            return None
    return args if args.command is not None else None


#: The shared options that only the token request reads: offered to the commands that may send
#: one, refused before a command that cannot (``status``, ``clear``).
_NETWORK_OPTIONS = {
    "--ca-bundle": "ca_bundle",
    "--cert": "cert",
    "--cert-key": "cert_key",
    "--proxy": "proxy",
}

#: The commands that never send a token request.
_OFFLINE_COMMANDS = ("status", "clear")


def _common(
    parser: argparse.ArgumentParser, *, suppress: bool, network: bool = True
) -> list[argparse.Action]:
    """Add the shared options to *parser*; returns them (the completion scripts list them).

    *network*: with the token request's options (TLS trust, client certificate, proxy).
    """
    import argparse

    # The shared options are accepted before and after the command; after it, SUPPRESS keeps a
    # value given before it from being overwritten by the subcommand's default.
    default: Any = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("settings")
    actions = [
        group.add_argument(
            "--base-url",
            default=default,
            help="the API's base URL (default: MEMORAM_BASE_URL or production)",
        )
    ]
    actions.append(
        group.add_argument(
            "--api-key",
            default=default,
            metavar="KEY",
            help="the API key (default: MEMORAM_API_KEY, then key plugins). Prefer the "
            "environment: other local users can read command lines in the process list",
        )
    )
    actions.append(
        group.add_argument(
            "--cache-dir",
            default=default,
            help="token cache directory (default: MEMORAM_AUTH_CACHE_DIR or the user cache dir)",
        )
    )
    if network:
        actions += [
            group.add_argument(
                "--ca-bundle",
                default=default,
                metavar="PEM",
                help="CA bundle that signs the token endpoint's certificate (default: "
                "MEMORAM_AUTH_CA_BUNDLE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, then the system's)",
            ),
            group.add_argument(
                "--cert",
                default=default,
                metavar="PEM",
                help="client certificate for the token request (default: MEMORAM_AUTH_CLIENT_CERT)",
            ),
            group.add_argument(
                "--cert-key",
                default=default,
                metavar="PEM",
                help="its private key, if not in the --cert file "
                "(default: MEMORAM_AUTH_CLIENT_KEY)",
            ),
            group.add_argument(
                "--proxy",
                default=default,
                metavar="URL",
                help="http:// proxy for the token request (default: MEMORAM_AUTH_PROXY, then "
                "HTTPS_PROXY/NO_PROXY)",
            ),
        ]
    actions.append(
        group.add_argument(
            "--no-disk-cache",
            action="store_true",
            default=argparse.SUPPRESS if suppress else False,
            help="keep the token in memory only (each run then asks for a new one)",
        )
    )
    return actions


#: What ``memoram-auth`` alone and ``--help`` say after the options.
_EPILOG = (
    "Run without a command, it prints this help and exits 0 (as gh does). "
    "Exit status: 0 ok, 1 other error, 2 usage or configuration, 3 key rejected, "
    "4 token endpoint unavailable, 5 malformed answer from the token endpoint."
)


def _rejected_option(parser: argparse.ArgumentParser) -> argparse.Action:
    return parser.add_argument(
        "--rejected",
        metavar="TOKEN",
        help="the API answered 401 to TOKEN (revoked): print another one. TOKEN is dropped "
        "only if it is still the cached one, so many scripts reporting the same token cost "
        "one token request. In a script: "
        'token=$(memoram-auth token --rejected "$token") after a 401. "-" reads TOKEN from '
        "standard input, out of the process list (for a token a 401 did not kill)",
    )


#: The shells ``memoram-auth completion`` writes a script for.
SHELLS = ("bash", "zsh", "fish")


def _build() -> Parsers:
    """The full parser, each command's own (for its usage in error messages) and their options."""
    import argparse

    from ._completion import Parsers
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Exchange a Memoram API key for short-lived bearer tokens, cached per machine.",
        epilog=_EPILOG,
    )
    built = Parsers(parser)
    built.options[""] = [
        parser.add_argument("-V", "--version", action="version", version=f"{PROG} {__version__}"),
        *_common(parser, suppress=False),
    ]
    # Not required here: a missing command is reported after unknown options are (_parse), so
    # that `memoram-auth --bogus` says what is wrong with it.
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(
        name: str, help: str, *, network: bool = True, description: str | None = None
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=description or help)
        built.commands[name], built.helps[name] = sub, help
        built.options[name] = _common(sub, suppress=True, network=network)
        return sub

    def own(name: str, action: argparse.Action) -> None:
        built.options[name].append(action)

    token = command(
        "token", 'print the current token (curl -H "Authorization: Bearer $(memoram-auth token)")'
    )
    own("token", _rejected_option(token))
    own(
        "token",
        token.add_argument(
            "--json",
            action="store_true",
            help='print {"token": ..., "expires_at": ISO-8601 UTC, "token_type": "Bearer"}, for '
            "tools that take a credential process",
        ),
    )
    header = command(
        "header",
        "print 'Authorization: Bearer TOKEN' (curl -H @- or -H \"$(memoram-auth header)\")",
    )
    own("header", _rejected_option(header))
    # status and clear never send a token request: no TLS, certificate or proxy option.
    status = command(
        "status", "show what is cached for the key (never the token itself)", network=False
    )
    own(
        "status", status.add_argument("--json", action="store_true", help="machine-readable output")
    )
    own(
        "status",
        status.add_argument(
            "--all",
            action="store_true",
            help="every cached token of every key and base URL (needs no key)",
        ),
    )
    clear = command(
        "clear", "remove the cached token of the key, or --all cached tokens", network=False
    )
    own(
        "clear",
        clear.add_argument("--all", action="store_true", help="every cached token, for every key"),
    )
    for name, help, words in (
        (
            "agent",
            "hold the key in one process and serve tokens on a Unix socket; "
            "agent exec -- CMD runs CMD with it (see: memoram-auth agent --help)",
            ["exec"],
        ),
        (
            "emulator",
            "run the local Memoram API emulator (see: memoram-auth emulator --help)",
            ["revoke", "reject-key", "accept-key"],
        ),
    ):
        # Parsed by their own parsers (_agent, the emulator's): listed here for the help.
        commands.add_parser(name, help=help, add_help=False)
        built.helps[name], built.options[name], built.words[name] = help, [], words
    demo_help = "show the product working end to end, offline, against the emulator"
    built.commands["demo"] = commands.add_parser(
        "demo",
        help=demo_help,
        description=demo_help + ": it starts an emulator on 127.0.0.1 with a key of its own, "
        "calls the API with requests, httpx, httpie and the command line, revokes the tokens "
        "and shows the replay, then prints what each step cost. It needs no key and no "
        "network, and its token cache is a temporary directory, removed at the end.",
    )
    built.helps["demo"], built.options["demo"] = demo_help, []
    completion_help = "print a shell completion script (bash, zsh or fish)"
    completion = commands.add_parser(
        "completion",
        help=completion_help,
        description=completion_help + ". Install: "
        'bash: eval "$(memoram-auth completion bash)" in ~/.bashrc; '
        'zsh: eval "$(memoram-auth completion zsh)" in ~/.zshrc, after compinit; '
        "fish: memoram-auth completion fish > ~/.config/fish/completions/memoram-auth.fish",
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell to complete for")
    built.commands["completion"], built.helps["completion"] = completion, completion_help
    built.options["completion"], built.words["completion"] = [], list(SHELLS)
    return built


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The full parser, and each command's own (for its usage in error messages)."""
    built = _build()
    return built.parser, built.commands


def _parse(argv: list[str]) -> argparse.Namespace:
    """argparse, with unknown options reported under the command's own usage line.

    argparse collects what a subcommand does not know and reports it with the top-level
    usage, which does not list the command's options; the command's parser says it instead.
    A shared option given before a command it does not apply to is a usage error too.
    """
    parser, parsers = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parsers.get(args.command, parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.error("the following arguments are required: COMMAND")
    if args.command in _OFFLINE_COMMANDS:
        for option, name in _NETWORK_OPTIONS.items():
            if getattr(args, name, None) is not None:
                parsers[args.command].error(
                    f"{option} does not apply to {args.command}, which sends no token request"
                )
    elif args.command not in ("token", "header"):
        # agent and emulator read their options with their own parsers, after their name;
        # demo and completion take none. Given before them, an option would be ignored.
        shared = {**_VALUE_OPTIONS, "--no-disk-cache": "no_disk_cache"}
        for option, name in shared.items():
            if getattr(args, name, None) not in (None, False):
                where = (
                    f"give it after the command: {PROG} agent {option} ..."
                    if args.command == "agent"
                    else f"{args.command}'s options are in {PROG} {args.command} --help"
                )
                parser.error(f"{option} before {args.command} does not apply: {where}")
    return args


def _settings(args: argparse.Namespace | SimpleNamespace) -> Resolved:
    """Base URL, API key and cache directory from the options, else the environment."""
    from .settings import KEY_OPTIONS, resolve

    return resolve(
        args.api_key,
        args.base_url,
        option=KEY_OPTIONS["cli"],
        base_url_option="--base-url",
        cache_dir=False if args.no_disk_cache else args.cache_dir,
        background_refresh=False,  # a short-lived process: no refresher thread
    )


def _network(args: argparse.Namespace | SimpleNamespace) -> NetworkSettings:
    """The token request's TLS trust, client certificate and proxy: options, then environment."""
    from ._env import CA_BUNDLE_ENV, CLIENT_CERT_ENV, CLIENT_KEY_ENV, PROXY_ENV
    from .transport import NetworkSettings

    def option(name: str, variable: str) -> str | None:
        value = getattr(args, name, None) or os.environ.get(variable, "").strip()
        return value or None

    certfile, keyfile = option("cert", CLIENT_CERT_ENV), option("cert_key", CLIENT_KEY_ENV)
    if keyfile is not None and certfile is None:
        raise ConfigurationError("--cert-key (MEMORAM_AUTH_CLIENT_KEY) needs --cert as well")
    try:
        return NetworkSettings(
            verify=option("ca_bundle", CA_BUNDLE_ENV),
            cert=(certfile, keyfile) if certfile and keyfile else certfile,
            proxy=option("proxy", PROXY_ENV),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{exc} (--proxy or {PROXY_ENV})") from None


def _provider(args: argparse.Namespace | SimpleNamespace) -> TokenProvider:
    from .provider import provider_for

    settings = _settings(args)
    return provider_for(settings.with_network(_network(args)))


def _current_token(args: argparse.Namespace | SimpleNamespace) -> Token:
    """The token for ``token``/``header``: from the agent when ``MEMORAM_AUTH_SOCK`` says so,
    else straight from the cache file when it is fresh.

    A fresh cached token is all most calls need, and reading the file directly skips the
    provider's locks, threads and the exchange machinery; anything else goes through the
    provider, which refreshes under the cross-process lock as every other user of the key does.
    """
    from .settings import agent_socket

    rejected: str | None = getattr(args, "rejected", None)
    if rejected == "-":
        rejected = sys.stdin.readline().strip()
        if not rejected:
            raise ConfigurationError("--rejected -: standard input held no token")
    socket = agent_socket(args.api_key)
    if socket is not None:
        from .agent.client import fetch
        from .settings import resolve_base_url

        # The agent compares and invalidates, as below: only if it still holds that token.
        return fetch(socket, resolve_base_url(args.base_url, option="--base-url"), rejected)[0]
    from .cache import slot_for
    from .plugins._backends import default_cache, local_front
    from .token import FRESH, freshness

    settings = _settings(args)
    key = settings.api_key
    # The file backend's file, or the local file of a plugin's backend that declares it may
    # answer first (Redis): read before the backend is built, so that a warm run loads no
    # plugin, no pluggy and none of the plugin's dependencies.
    local = local_front(settings.cache_dir)
    if local is not None:
        # The checks TokenProvider.cached_token() makes: this base URL's and key's file only.
        cached = local.load(
            slot_for(settings.base_url, key.reveal()),
            base_url=settings.base_url,
            key_fingerprint=key.fingerprint,
        )
        if freshness(cached, time.time()) == FRESH and (
            cached is not None and cached.value != rejected
        ):
            # With --rejected: another process has already replaced that token (compare and
            # invalidate), so scripts that all saw the same 401 cost one token request.
            return cached
    from .provider import TokenProvider

    cache = default_cache(settings.cache_dir)
    provider = TokenProvider.for_settings(settings.with_network(_network(args)), cache)
    if rejected is not None:
        # The provider then takes from the cache only a token fetched to replace this one
        # (another process's, under the slot's lock) or asks for a new one.
        provider.invalidate(rejected)
    return provider.get_token()


def _duration(seconds: float) -> str:
    seconds = int(abs(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _token_json(token: Token) -> str:
    """``token --json``: what ``az account get-access-token`` gives, in our field names."""
    import json

    return json.dumps(
        {"token": token.value, "expires_at": _utc(token.expires_at), "token_type": "Bearer"}
    )


def _state(token: Token) -> str:
    remaining = token.remaining()
    if remaining <= 0:
        return "expired"
    from .token import FRESH, freshness

    return "valid" if freshness(token, time.time()) == FRESH else "refresh-due"


def _printable(text: str) -> str:
    # The files are ours and checked, but a terminal deserves no surprises from disk.
    return "".join(char if char.isprintable() else "?" for char in text)


def _status_all(args: argparse.Namespace | SimpleNamespace) -> int:
    """``status --all``: every token file in the cache directory; needs no key, shows no token."""
    import json

    from .cache import FileCache
    from .plugins._backends import default_cache

    cache = default_cache(False if args.no_disk_cache else args.cache_dir)
    if not isinstance(cache, FileCache):
        print("no disk cache in use (memory only, or a plugin's backend): nothing to list")
        return EXIT_OK
    rows: list[dict[str, Any]] = [
        {
            "base_url": _printable(entry.base_url),
            "key": _printable(entry.key_fingerprint),
            "expires_at": _utc(entry.token.expires_at),
            "expires_in": round(entry.token.remaining(), 1),
            "state": _state(entry.token),
            "cache": entry.path,
        }
        for entry in cache.entries()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print(f"no cached tokens in {cache.directory}")
        return EXIT_OK
    header: dict[str, Any] = {
        "base_url": "BASE URL",
        "key": "KEY",
        "state": "STATE",
        "expires_at": "EXPIRES",
    }
    widths = {name: max(len(str(row[name])) for row in [header, *rows]) for name in header}
    for row in [header, *rows]:
        print("  ".join(str(row[name]).ljust(widths[name]) for name in header).rstrip())
    return EXIT_OK


def _status_of_agent(args: argparse.Namespace | SimpleNamespace, path: str) -> int:
    """``status`` with ``MEMORAM_AUTH_SOCK``: what the agent holds, as the agent says (its
    ``/v1/status``); exit 2 when it serves another base URL than this client's."""
    import json

    from .agent.client import describe, status
    from .settings import resolve_base_url
    from .token import Token

    base_url = resolve_base_url(args.base_url, option="--base-url")
    data = status(path)
    served = str(data["base_url"])
    info: dict[str, Any] = {
        "agent": path,
        "pid": data.get("pid"),
        "base_url": served,
        "key": str(data.get("key")),
        "cached": False,
    }
    held = data.get("token")
    if isinstance(held, dict):
        expires_in, lifetime = held.get("expires_in"), held.get("lifetime")
        if isinstance(expires_in, (int, float)):
            now = time.time()
            # lifetime is absent from an older agent's answer: its windows then are unknown,
            # and the token is shown as valid until it expires.
            span = float(lifetime) if isinstance(lifetime, (int, float)) else float(expires_in)
            token = Token("", now + expires_in - span, now + expires_in)
            info.update(
                cached=True,
                expires_at=_utc(token.expires_at),
                expires_in=round(expires_in, 1),
                lifetime=round(span, 1) if lifetime is not None else None,
                state=_state(token),
            )
    wrong = served != base_url
    if args.json:
        print(json.dumps({**info, "client_base_url": base_url}, indent=2))
    else:
        print(f"agent      {_printable(path)} (pid {info['pid']}), from MEMORAM_AUTH_SOCK")
        print(f"base URL   {_printable(served)}")
        print(f"key        {_printable(info['key'])}")
        if not info["cached"]:
            print("token      none held (the next request will make the agent ask for one)")
        else:
            due = {"refresh-due": "refresh due", "expired": "expired"}.get(info["state"], "valid")
            life = f", lifetime {_duration(info['lifetime'])}" if info["lifetime"] else ""
            print(
                f"token      {due}, expires in {_duration(info['expires_in'])} "
                f"({info['expires_at']}){life}"
            )
    if wrong:
        print(
            f"{PROG}: {describe(path)} serves {_printable(served)}, not {base_url}: set "
            "MEMORAM_BASE_URL to the agent's base URL, or start an agent for this one",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    return EXIT_OK


def _status(args: argparse.Namespace | SimpleNamespace) -> int:
    import json

    from .cache import FileCache
    from .settings import agent_socket

    socket = agent_socket(args.api_key)
    if socket is not None:
        return _status_of_agent(args, socket)
    provider = _provider(args)
    cache = provider.cache
    cached = provider.cached_token()
    info: dict[str, Any] = {
        "base_url": provider.base_url,
        "key": provider.fingerprint,
        "cache": cache.path(provider.slot) if isinstance(cache, FileCache) else None,
        "cached": cached is not None,
    }
    if cached is not None:
        remaining = cached.remaining()
        info.update(
            expires_at=_utc(cached.expires_at),
            expires_in=round(remaining, 1),
            state=_state(cached),
        )
    # A cache shared by a fleet (a plugin's) may report on the service behind it: whether it
    # is reachable and lets us in. Not usable is not a success, whatever the token's state.
    health = getattr(cache, "health", None)
    backend: dict[str, Any] | None = health() if health is not None else None
    status = EXIT_OK
    if backend is not None:
        info["backend"] = backend
        if not backend.get("ok"):
            status = EXIT_UNAVAILABLE if backend.get("kind") == "outage" else EXIT_CONFIG
    if args.json:
        print(json.dumps(info, indent=2))
        return status
    print(f"base URL   {info['base_url']}")
    print(f"key        {info['key']}")
    if backend is not None:
        state = (
            "reachable, authorised, takes writes"
            if backend.get("ok")
            else f"NOT USABLE ({backend.get('kind')}): {backend.get('problem')}"
        )
        print(f"backend    {backend.get('backend')} at {backend.get('where')}: {state}")
    print(f"cache      {info['cache'] or 'memory only'}")
    if cached is None:
        print("token      none cached (the next use will ask for one)")
    elif info["expires_in"] <= 0:
        print(f"token      expired {_duration(info['expires_in'])} ago")
    else:
        due = "refresh due" if info["state"] == "refresh-due" else "valid"
        print(
            f"token      {due}, expires in {_duration(info['expires_in'])} ({info['expires_at']})"
        )
    return status


def _clear(args: argparse.Namespace | SimpleNamespace) -> int:
    from .cache import FileCache
    from .plugins._backends import default_cache

    if args.all:
        cache = default_cache(False if args.no_disk_cache else args.cache_dir)
        if not isinstance(cache, FileCache):
            print("nothing to clear: the disk cache is off")
            return EXIT_OK
        removed = cache.clear_all()
        print(f"removed {removed} cached token(s) from {cache.directory}")
        return EXIT_OK
    from .settings import agent_socket

    socket = agent_socket(args.api_key)
    if socket is not None:
        from .agent.client import describe

        # Clearing this machine's cache would change nothing the client gets: say what would.
        raise ConfigurationError(
            f"clear acts on this machine's token cache, but tokens come from {describe(socket)}, "
            "which holds its own. To make the agent drop its token and get a new one, report "
            'it as rejected: memoram-auth token --rejected "$(memoram-auth token)" '
            "(restarting the agent is not enough: it "
            "reads its cache again). To clear the local cache, run clear without "
            "MEMORAM_AUTH_SOCK (env -u MEMORAM_AUTH_SOCK memoram-auth clear)."
        )
    provider = _provider(args)
    had = provider.cached_token() is not None
    provider.cache.delete(provider.slot)
    what = "removed the cached token" if had else "no cached token"
    print(f"{what} for {provider.fingerprint}")
    return EXIT_OK


def _agent(argv: list[str]) -> int:
    """``agent [OPTIONS]`` and ``agent exec [OPTIONS] -- CMD [ARGS...]``."""
    import argparse

    from ._env import API_KEY_ENV
    from .agent.run import EXEC_IDLE_TIMEOUT, run_agent, run_exec
    from .agent.server import default_socket_path

    execute = argv[:1] == ["exec"]
    command: list[str] = []
    if execute:
        argv = argv[1:]
        if "--" in argv:
            argv, command = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    parser = argparse.ArgumentParser(
        prog=f"{PROG} agent{' exec' if execute else ''}",
        usage=f"{PROG} agent exec [OPTIONS] -- CMD [ARGS...]" if execute else None,
        description="Run CMD with MEMORAM_AUTH_SOCK set and without MEMORAM_API_KEY, using the "
        "agent on the socket or starting one (it outlives CMD and serves later execs)"
        if execute
        else "Hold the API key in this process and serve short-lived tokens on a Unix socket "
        "(0600, this user only), in the foreground; SIGTERM or Ctrl-C stops it. Prints the "
        "line that exports MEMORAM_AUTH_SOCK. 'agent exec -- CMD' runs a command with it.",
    )
    _common(parser, suppress=False)
    parser.add_argument(
        "--socket",
        metavar="PATH",
        help="the socket (default: "
        + ("MEMORAM_AUTH_SOCK, then " if execute else "")
        + "$XDG_RUNTIME_DIR/memoram-auth/agent.sock, else a private directory in the temp dir)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        default=EXEC_IDLE_TIMEOUT if execute else None,
        help="stop after this long without a client (default: "
        + (f"{EXEC_IDLE_TIMEOUT:.0f} for an agent exec starts)" if execute else "never)"),
    )
    args = parser.parse_args(argv)
    if execute and not command:
        parser.error("no command: memoram-auth agent exec [OPTIONS] -- CMD [ARGS...]")
    path = args.socket or (execute and os.environ.get("MEMORAM_AUTH_SOCK", "").strip())
    path = path or default_socket_path()
    if not execute:
        return run_agent(_provider(args), path, idle_timeout=args.idle_timeout)

    from .settings import resolve_base_url

    base_url = resolve_base_url(args.base_url, option="--base-url")

    def agent_argv(socket: str) -> list[str]:
        forwarded = [sys.executable, "-m", "memoram_auth", "agent", "--socket", socket]
        forwarded += ["--base-url", base_url, "--idle-timeout", str(args.idle_timeout)]
        for option, name in _VALUE_OPTIONS.items():
            value = getattr(args, name)
            if value is not None and name not in ("api_key", "base_url"):
                forwarded += [option, value]
        return forwarded + (["--no-disk-cache"] if args.no_disk_cache else [])

    def agent_env() -> dict[str, str]:
        env = dict(os.environ)
        env.pop("MEMORAM_AUTH_SOCK", None)
        if args.api_key is not None:
            env[API_KEY_ENV] = args.api_key  # the agent's environment, never its command line
        return env

    return run_exec(path, command, base_url=base_url, agent_argv=agent_argv, agent_env=agent_env)


def _run(argv: list[str]) -> int:
    if argv[:1] == ["agent"]:
        return _agent(argv[1:])
    if argv[:1] == ["emulator"]:
        from .emulator.__main__ import main as emulator_main

        return emulator_main(argv[1:], prog=f"{PROG} emulator")
    if not argv:
        # Like gh: the commands, on stdout, and success; a script that runs a command always
        # names one.
        _parser()[0].print_help()
        return EXIT_OK
    args = _fast_args(argv) or _parse(argv)
    if args.command in ("token", "header"):
        token = _current_token(args)
        if getattr(args, "json", False):
            print(_token_json(token))
        elif args.command == "token":
            print(token.value)
        else:
            print(f"Authorization: Bearer {token.value}")
        return EXIT_OK
    if args.command == "status":
        return _status_all(args) if args.all else _status(args)
    if args.command == "clear":
        return _clear(args)
    if args.command == "completion":
        from ._completion import script

        sys.stdout.write(script(args.shell, _build(), PROG))
        return EXIT_OK
    from ._demo import run_demo

    return run_demo()


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,  # noqa: ANN401 - the signature of warnings.showwarning
    line: str | None = None,
) -> None:
    # One plain line, like the errors; no source line of ours under it.
    text = str(message)
    prefix = "" if text.startswith("memoram-auth:") else f"{PROG}: "
    print(f"{prefix}{text}".replace("memoram-auth:", f"{PROG}: warning:", 1), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see :data:`EXIT_CODES`)."""
    warnings.showwarning = _show_warning
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except MemoramAuthError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return next(
            (code for kind, code in EXIT_CODES.items() if isinstance(exc, kind)), EXIT_ERROR
        )
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `memoram-auth token | head -c 0`: nothing left to say
        sys.stderr.close()
        return EXIT_ERROR
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        print(
            f"{PROG}: unexpected error: {type(exc).__name__}: {exc} "
            "(set MEMORAM_AUTH_DEBUG=1 for a traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_ERROR
