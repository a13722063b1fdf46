"""One process of the background-refresh benchmark: threads (requests), an asyncio loop and a
trio loop (httpx), each calling the API every 50 ms; prints one JSON line of (start, seconds)
per request. Arguments: base URL, key, cache dir, lifetime, seconds, threads, on|off."""

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
    base_url, key, cache_dir, lifetime, seconds, threads, mode = sys.argv[1:8]
    auth = MemoramAuth(
        key,
        base_url=base_url,
        cache_dir=cache_dir,
        expires_in=int(lifetime),
        background_refresh=mode == "on",
    )
    url = f"{base_url}/tags"
    end = time.time() + float(seconds)
    samples: list[tuple[float, float, str]] = []
    lock = threading.Lock()

    def note(start: float, kind: str) -> None:
        with lock:
            samples.append((start, time.time() - start, kind))

    def thread_client() -> None:
        with requests.Session() as session:
            while time.time() < end:
                start = time.time()
                session.get(url, auth=auth, timeout=30).raise_for_status()
                note(start, "thread")
                time.sleep(INTERVAL)

    async def async_client(sleep: object) -> None:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            while time.time() < end:
                start = time.time()
                (await client.get(url)).raise_for_status()
                note(start, "async")
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
