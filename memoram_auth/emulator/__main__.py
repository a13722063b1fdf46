"""``python -m memoram_auth.emulator``: run the emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import ssl
import sys
from collections.abc import Sequence

from ..exceptions import MemoramAuthError
from . import Emulator

__all__ = ["main", "parser"]


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
    return p


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
    args = (parser(prog) if prog else parser()).parse_args(argv)
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
    print(
        f"try: MEMORAM_BASE_URL={emulator.base_url} MEMORAM_API_KEY={emulator.api_key} ...",
        flush=True,
    )
    print("Ctrl-C to stop", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        emulator.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
