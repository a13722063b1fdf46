"""``python -m memoram_auth.emulator``: run the emulator until Ctrl-C, or control a running one.

``revoke``, ``reject-key`` and ``accept-key`` talk to a running emulator's loopback control
endpoints (``POST /_emulator/...``), so a person can watch the 401 recovery happen.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from .._env import BASE_URL_ENV
from .._urls import is_loopback_host, origin_of
from ..exceptions import MemoramAuthError
from . import Emulator
from ._handler import CONTROL_PREFIX

__all__ = ["CONTROLS", "main", "parser"]

#: Commands for a running emulator: what each does, for the help and for what it prints.
CONTROLS = {
    "revoke": "revoke every token issued so far (API calls with them get 401)",
    "reject-key": "stop accepting KEY, or every key (token requests get 401)",
    "accept-key": "accept KEY (again)",
}


def parser(prog: str = "python -m memoram_auth.emulator") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run a local Memoram API emulator on a loopback address.",
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port, 0 for any free one (default 8765)")
    p.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="a key to accept (repeatable); one is generated when none is given",
    )
    p.add_argument(
        "--max-lifetime", type=int, default=3600, metavar="SECONDS", help="longest token lifetime"
    )
    p.add_argument(
        "--clock-offset",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="run the server clock this far ahead (negative: behind) to try clock skew",
    )
    p.add_argument("--verbose", action="store_true", help="log each request (never keys or tokens)")
    tls = p.add_argument_group("HTTPS")
    tls.add_argument("--certfile", metavar="PEM", help="serve HTTPS with this certificate chain")
    tls.add_argument("--keyfile", metavar="PEM", help="its private key (default: in --certfile)")
    tls.add_argument(
        "--client-cafile",
        metavar="PEM",
        help="demand client certificates issued by these CAs (mutual TLS; needs --certfile)",
    )
    p.epilog = "control a running emulator: " + "; ".join(
        f"{prog} {name} --help: {what}" for name, what in CONTROLS.items()
    )
    return p


def control_parser(action: str, prog: str) -> argparse.ArgumentParser:
    """The options of ``revoke``, ``reject-key`` and ``accept-key``."""
    p = argparse.ArgumentParser(prog=f"{prog} {action}", description=CONTROLS[action])
    if action != "revoke":
        p.add_argument(
            "api_key",
            nargs=None if action == "accept-key" else "?",
            metavar="KEY",
            help="the key" + (" (default: every key)" if action == "reject-key" else ""),
        )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, help="the emulator on http://127.0.0.1:PORT")
    where.add_argument(
        "--base-url",
        metavar="URL",
        help=f"the emulator's base URL (default: {BASE_URL_ENV} if it names a loopback host, "
        "else http://127.0.0.1:8765)",
    )
    return p


def _control_origin(args: argparse.Namespace) -> str:
    """Where the running emulator is; loopback only, or ValueError."""
    if args.port is not None:
        return f"http://127.0.0.1:{args.port}"
    url = args.base_url or os.environ.get(BASE_URL_ENV, "").strip() or "http://127.0.0.1:8765"
    origin = origin_of(url)
    if origin is None or not is_loopback_host(origin[1]):
        # The URL is not echoed: it could be anything, a key pasted in the wrong place too.
        source = "--base-url" if args.base_url else BASE_URL_ENV
        raise ValueError(f"{source} must name the emulator on a loopback host")
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"


def control(action: str, argv: Sequence[str], prog: str) -> int:
    """``revoke`` / ``reject-key`` / ``accept-key``: one POST to a running emulator."""
    args = control_parser(action, prog).parse_args(argv)
    try:
        origin = _control_origin(args)
    except ValueError as exc:
        print(f"memoram emulator: {exc}", file=sys.stderr)
        return 2
    body = {"api_key": args.api_key} if getattr(args, "api_key", None) else {}
    request = urllib.request.Request(  # noqa: S310 - a loopback http(s) URL, checked above
        origin + CONTROL_PREFIX + action,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - as above
            answer = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"memoram emulator: no emulator answered at {origin}: {reason}", file=sys.stderr)
        return 1
    if action == "revoke":
        print(
            f"revoked {answer['revoked']} token(s): the next API call with one gets 401. "
            "The Python adapters and httpie then fetch a new token and replay the call; a "
            'shell script asks for one with: memoram-auth token --rejected "$token"'
        )
    elif action == "reject-key":
        print(f"rejected {answer['rejected']} key(s): token requests with them now get 401")
    else:
        print("the key is accepted")
    return 0


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server context the TLS options describe; None for plain HTTP."""
    if args.certfile is None:
        if args.keyfile is not None or args.client_cafile is not None:
            raise ValueError("--keyfile and --client-cafile need --certfile")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.certfile, args.keyfile)
    if args.client_cafile is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=args.client_cafile)
    return context


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    prog = prog or "python -m memoram_auth.emulator"
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in CONTROLS:
        return control(argv[0], argv[1:], prog)
    args = parser(prog).parse_args(argv)
    try:
        ssl_context = _ssl_context(args)
    except (ValueError, OSError) as exc:
        # ssl.SSLError is an OSError: a missing file and a key that does not match alike.
        print(f"memoram emulator: cannot set up HTTPS: {exc}", file=sys.stderr)
        return 2
    try:
        emulator = Emulator(
            args.api_keys,
            host=args.host,
            port=args.port,
            max_lifetime=args.max_lifetime,
            default_lifetime=args.max_lifetime,
            clock_offset=args.clock_offset,
            verbose=args.verbose,
            ssl_context=ssl_context,
        ).start()
    except MemoramAuthError as exc:
        print(f"memoram emulator: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"memoram emulator: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    # These keys exist only inside this emulator, so printing them is the point, not a leak.
    print(f"Memoram emulator listening at {emulator.base_url}", flush=True)
    for key in emulator.api_keys:
        print(f"accepted API key: {key}", flush=True)
    # Lines a shell takes as they are: quoted, with no placeholder in them.
    exports = f"{BASE_URL_ENV}={shlex.quote(emulator.base_url)} "
    exports += f"MEMORAM_API_KEY={shlex.quote(emulator.api_key)}"
    print("to use it, paste into a shell:", flush=True)
    print(f"export {exports}", flush=True)
    print(
        "to see a 401 recovered, revoke its tokens (or reject-key to refuse the key):", flush=True
    )
    print(f"{prog} revoke --base-url {shlex.quote(emulator.base_url)}", flush=True)
    print("Ctrl-C to stop", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        emulator.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
