"""``memoram-auth demo``: the product working end to end, offline, against the emulator.

Everything runs on a loopback port with a throwaway cache directory, so the demo touches neither
the network nor the user's own token cache.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .emulator import Emulator, generate_api_key
from .keys import fingerprint

if TYPE_CHECKING:
    from .auth import MemoramAuth

__all__ = ["run_demo"]


@dataclass
class Step:
    name: str
    uses: int  # requests sent with a token, plus tokens handed to another program
    api_calls: int = 0
    token_requests: int = 0
    note: str = ""

    @property
    def cache_hits(self) -> int:
        # Each token request serves one use; every other use was served from a cache.
        return max(self.uses - self.token_requests, 0)


class Demo:
    def __init__(self, emu: Emulator, cache_dir: str) -> None:
        self.emu = emu
        self.cache_dir = cache_dir
        self.steps: list[Step] = []
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MEMORAM_")},
            "MEMORAM_API_KEY": emu.api_key,
            "MEMORAM_BASE_URL": emu.base_url,
            "MEMORAM_AUTH_CACHE_DIR": cache_dir,
            "HTTPIE_CONFIG_DIR": os.path.join(cache_dir, "httpie"),
        }

    def step(self, name: str, action: Callable[[], tuple[int, str]]) -> None:
        before = (self.emu.counters.api_requests, self.emu.counters.token_requests)
        uses, note = action()
        after = (self.emu.counters.api_requests, self.emu.counters.token_requests)
        step = Step(name, uses, after[0] - before[0], after[1] - before[1], note)
        self.steps.append(step)
        print(f"  ✓ {name:<28} {note}", flush=True)

    def auth(self) -> MemoramAuth:
        from .auth import MemoramAuth

        return MemoramAuth(self.emu.api_key, base_url=self.emu.base_url, cache_dir=self.cache_dir)

    # -- the steps ----------------------------------------------------------------------------

    def with_requests(self) -> tuple[int, str]:
        import requests

        response = requests.get(f"{self.emu.base_url}/tags", auth=self.auth(), timeout=10)
        response.raise_for_status()
        return 1, f"GET /tags -> {response.status_code}, {len(response.json()['items'])} tags"

    def with_httpx(self) -> tuple[int, str]:
        import httpx

        with httpx.Client(auth=self.auth(), timeout=10) as client:
            response = client.get(f"{self.emu.base_url}/tags/tag_1")
        response.raise_for_status()
        return 1, f"GET /tags/tag_1 -> {response.status_code}"

    def with_httpx_async(self) -> tuple[int, str]:
        import httpx

        async def fetch_three() -> list[int]:
            async with httpx.AsyncClient(auth=self.auth(), timeout=10) as client:
                urls = [f"{self.emu.base_url}/tags/tag_{i}" for i in (1, 2, 3)]
                responses = await asyncio.gather(*(client.get(url) for url in urls))
            return [r.status_code for r in responses]

        statuses = asyncio.run(fetch_three())
        return 3, f"3 concurrent GETs -> {statuses}"

    def with_httpie(self) -> tuple[int, str]:
        http = shutil.which("http", path=os.path.dirname(sys.executable)) or shutil.which("http")
        if http is None:
            return 0, 'skipped: httpie is not installed (pip install "memoram-auth[httpie]")'
        command = [
            http,
            "--ignore-stdin",
            "--check-status",
            "-b",
            "-A",
            "memoram",
            f"{self.emu.base_url}/tags/tag_2",
        ]
        # S603: our own command line, from the same installation.
        result = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=60)  # noqa: S603 - our own commands, no shell
        if result.returncode != 0:
            raise RuntimeError(f"http failed: {result.stderr.strip()}")
        return 1, "http -A memoram GET /tags/tag_2 -> 200"

    def second_process(self) -> tuple[int, str]:
        command = [sys.executable, "-m", "memoram_auth", "token"]
        result = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=60)  # noqa: S603 - our own commands, no shell
        if result.returncode != 0:
            raise RuntimeError(f"memoram-auth token failed: {result.stderr.strip()}")
        return 1, "memoram-auth token printed the cached token"

    def revoked(self) -> tuple[int, str]:
        import requests

        self.emu.revoke_all()
        response = requests.post(
            f"{self.emu.base_url}/memory-blobs",
            json={"user_id": "demo", "content": "remember this"},
            auth=self.auth(),
            timeout=10,
        )
        response.raise_for_status()
        history = [r.status_code for r in response.history]
        return (
            2,
            f"all tokens revoked; POST -> {history} then {response.status_code}, replayed once",
        )

    def refresh(self) -> tuple[int, str]:
        import requests

        # A second key whose tokens live 4 s, used every 0.25 s for 5 s: the token is replaced
        # ahead of expiry, and no request ever reaches the API with an expired one.
        key = generate_api_key()
        self.emu.add_key(key)
        from .auth import MemoramAuth

        auth = MemoramAuth(key, base_url=self.emu.base_url, cache_dir=self.cache_dir, expires_in=4)
        unauthorized_before = self.emu.counters.unauthorized
        uses, stop = 0, time.monotonic() + 5
        with requests.Session() as session:
            while time.monotonic() < stop:
                session.get(f"{self.emu.base_url}/tags", auth=auth, timeout=10).raise_for_status()
                uses += 1
                time.sleep(0.25)
        rejected = self.emu.counters.unauthorized - unauthorized_before
        return uses, f"4 s tokens, {uses} requests over 5 s, {rejected} rejected"


def _table(steps: list[Step]) -> str:
    rows = [("step", "API calls", "token requests", "cache hits")]
    rows += [(s.name, str(s.api_calls), str(s.token_requests), str(s.cache_hits)) for s in steps]
    rows.append(
        (
            "total",
            str(sum(s.api_calls for s in steps)),
            str(sum(s.token_requests for s in steps)),
            str(sum(s.cache_hits for s in steps)),
        )
    )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:])
        ]
        lines.append("  " + "  ".join(cells))
        if index in (0, len(rows) - 2):
            lines.append("  " + "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def run_demo() -> int:
    """Run the demo; 0 when every step worked."""
    with tempfile.TemporaryDirectory(prefix="memoram-demo-") as cache_dir, Emulator() as emu:
        print(f"memoram-auth demo: emulator at {emu.base_url}, key {fingerprint(emu.api_key)}")
        print(f"throwaway token cache: {cache_dir}\n")
        demo = Demo(emu, cache_dir)
        steps = [
            ("requests", demo.with_requests),
            ("httpx", demo.with_httpx),
            ("httpx async", demo.with_httpx_async),
            ("httpie", demo.with_httpie),
            ("second process (CLI)", demo.second_process),
            ("revoked token, one replay", demo.revoked),
            ("refresh ahead of expiry", demo.refresh),
        ]
        try:
            for name, action in steps:
                demo.step(name, action)
        except Exception as exc:  # noqa: BLE001 - the demo reports, it does not crash
            print(f"\n  ✗ {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print()
        print(_table(demo.steps))
        shared = sum(s.token_requests for s in demo.steps[:5])
        rejected = emu.counters.unauthorized
        print(
            f"\nrequests, httpx, httpx async, httpie and a second process shared {shared} token "
            f"request(s); the API answered 401 {rejected} time(s), only for the revoked token."
        )
    return 0
