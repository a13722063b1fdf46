"""One process of the background-refresh benchmark: threads (requests), an asyncio loop and a
trio loop (httpx), each calling the API every 50 ms; prints one JSON line of (start, seconds,
whether the request found no usable token in memory: it waits for one) per request.

Arguments: base URL, key, cache dir, lifetime, seconds, threads, on|off, cache backend (``file``
or ``redis``, with ``MEMORAM_AUTH_REDIS_URL`` in the environment)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time

import httpx
import requests

from memoram_auth import MemoramAuth

INTERVAL = 0.05


def main() -> None:
    base_url, key, cache_dir, lifetime, seconds, threads, mode, backend = sys.argv[1:9]
    auth = MemoramAuth(
        key,
        base_url=base_url,
        cache_dir=cache_dir,
        cache_backend=backend,
        expires_in=int(lifetime),
        background_refresh=mode == "on",
    )
    url = f"{base_url}/tags"
    end = time.time() + float(seconds)
    samples: list[tuple[float, float, bool]] = []
    lock = threading.Lock()
    provider = auth.provider

    def unusable() -> bool:
        # The one case where a request waits for a token: none in memory, or one in its
        # mandatory window that is not held over (a background refresh under way or failed
        # keeps it until expiry). Read before the request, from the provider's own state.
        entry, now = provider.header.entry, time.time()
        return entry is None or (now >= entry.usable_until and not provider._holds_over(entry, now))

    def note(start: float, waits: bool) -> None:
        with lock:
            samples.append((start, time.time() - start, waits))

    def thread_client() -> None:
        with requests.Session() as session:
            while time.time() < end:
                waits, start = unusable(), time.time()
                session.get(url, auth=auth, timeout=30).raise_for_status()
                note(start, waits)
                time.sleep(INTERVAL)

    async def async_client(sleep: object) -> None:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            while time.time() < end:
                waits, start = unusable(), time.time()
                (await client.get(url)).raise_for_status()
                note(start, waits)
                await sleep(INTERVAL)  # type: ignore[operator]

    def asyncio_client() -> None:
        asyncio.run(async_client(asyncio.sleep))

    def trio_client() -> None:
        try:
            import trio
        except ImportError:
            return
        trio.run(async_client, trio.sleep)

    workers = [threading.Thread(target=thread_client) for _ in range(int(threads))]
    workers += [threading.Thread(target=asyncio_client), threading.Thread(target=trio_client)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps(samples))


if __name__ == "__main__":
    main()
