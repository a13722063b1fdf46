"""``memoram-auth-keyring set|delete [--base-url URL]``: manage the key in the keyring."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence

import keyring.errors

from memoram_auth import MemoramAuthError
from memoram_auth.keys import fingerprint, normalize_api_key
from memoram_auth.settings import resolve_base_url

from . import delete_api_key, store_api_key

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="memoram-auth-keyring", description="Keep the Memoram API key in the OS keyring."
    )
    parser.add_argument("action", choices=["set", "delete"])
    parser.add_argument(
        "--base-url", help="the API it is for (default: MEMORAM_BASE_URL or production)"
    )
    args = parser.parse_args(argv)
    try:
        base_url = resolve_base_url(args.base_url)
        if args.action == "delete":
            delete_api_key(base_url)
            print(f"removed the key for {base_url}")
            return 0
        # The key is read from standard input when it is not a terminal (scripts), else
        # prompted for without echo: never from the command line, where `ps` would show it.
        try:
            raw = sys.stdin.readline() if not sys.stdin.isatty() else getpass.getpass("API key: ")
        except (EOFError, KeyboardInterrupt):  # Ctrl-D or Ctrl-C at the prompt
            print("\nmemoram-auth-keyring: cancelled, nothing stored", file=sys.stderr)
            return 130
        if not raw.strip():
            # normalize_api_key's advice (MEMORAM_API_KEY, api_key=) is for the library.
            print(
                "memoram-auth-keyring: no key given, nothing stored; paste the key at the "
                "prompt, or pipe it in: memoram-auth-keyring set < file-with-the-key",
                file=sys.stderr,
            )
            return 2
        key = normalize_api_key(raw)
        store_api_key(base_url, key)
    except MemoramAuthError as exc:
        print(f"memoram-auth-keyring: {exc}", file=sys.stderr)
        return 2
    except keyring.errors.KeyringError as exc:
        print(f"memoram-auth-keyring: the keyring refused: {exc}", file=sys.stderr)
        return 1
    print(f"stored key {fingerprint(key)} for {base_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
