"""``python -m memoram_auth.emulator``: run the emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
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
    return p


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args = (parser(prog) if prog else parser()).parse_args(argv)
    try:
        emulator = Emulator(
            args.api_keys,
            host=args.host,
            port=args.port,
            max_lifetime=args.max_lifetime,
            default_lifetime=args.max_lifetime,
            clock_offset=args.clock_offset,
            verbose=args.verbose,
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
