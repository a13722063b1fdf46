"""One soak worker process: threads sending API calls with MemoramAuth until a deadline.

usage: _soak_worker.py BASE_URL API_KEY CACHE_DIR THREADS STOP_AT STATS_FILE

Counts outcomes and writes them to STATS_FILE (atomically) twice a second, so that a worker
killed with SIGKILL still leaves what it had done up to then.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import random
import sys
import threading
import time
import warnings
from collections.abc import Iterator

import requests

from memoram_auth import MemoramAuth, MemoramAuthError, MemoramAuthWarning, RetryPolicy

stats: collections.Counter[str] = collections.Counter()
longest_wait = [0.0]
# What the soak prints about each 401 on a replayable body, so that a rare one can be told
# apart afterwards: when, and which tokens the request and its replay carried.
details: list[dict[str, object]] = []
lock = threading.Lock()


def count(name: str, amount: int = 1) -> None:
    with lock:
        stats[name] += amount


def on_warning(
    message: Warning | str, category: type[Warning], *args: object, **kwargs: object
) -> None:
    if issubclass(category, MemoramAuthWarning) and "damaged" in str(message):
        count("corrupt cache reads")
    else:
        count(f"warning: {category.__name__}")


def flush(path: str) -> None:
    with lock:
        data = {"stats": dict(stats), "longest_wait": longest_wait[0], "details": details}
    with open(path + ".tmp", "w") as handle:
        json.dump(data, handle)
    os.replace(path + ".tmp", path)


def claims(request: requests.PreparedRequest) -> dict[str, object] | None:
    """The iat and (the start of) the jti of the emulator's token that *request* carried."""
    value = request.headers.get("Authorization", "").partition(" ")[2]
    try:
        payload = value.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    return {"iat": data.get("iat"), "jti": str(data.get("jti"))[:8]}


def note_401(kind: str, response: requests.Response) -> None:
    sent = [*response.history, response]
    detail = {
        "kind": kind,
        "at": time.time(),
        "pid": os.getpid(),
        "tokens": [claims(r.request) for r in sent],
    }
    with lock:
        if len(details) < 20:
            details.append(detail)


def chunks() -> Iterator[bytes]:
    yield b'{"user_id": "soak", '
    yield b'"content": "streamed"}'


def work(auth: MemoramAuth, base_url: str, stop_at: float) -> None:
    session = requests.Session()
    session.auth = auth
    while time.time() < stop_at:
        kind = random.choices(["get", "post-json", "post-stream"], weights=[5, 4, 1])[0]  # noqa: S311
        started = time.perf_counter()
        try:
            auth.provider.get_token()
            waited = time.perf_counter() - started
            with lock:
                longest_wait[0] = max(longest_wait[0], waited)
            if kind == "get":
                response = session.get(f"{base_url}/tags", timeout=10)
            elif kind == "post-json":
                response = session.post(
                    f"{base_url}/memory-blobs", json={"user_id": "soak"}, timeout=10
                )
            else:
                response = session.post(f"{base_url}/memory-blobs", data=chunks(), timeout=10)
        except MemoramAuthError as exc:
            count(f"{kind}: {type(exc).__name__}")
            continue
        except requests.RequestException as exc:
            count(f"{kind}: {type(exc).__name__}")
            continue
        count(f"{kind}: {response.status_code}")
        if response.status_code == 401 and kind != "post-stream":
            note_401(kind, response)
        if response.history:
            count(f"{kind}: replayed after 401")
        time.sleep(0.01)


def main() -> None:
    base_url, api_key, cache_dir, threads, stop_at, stats_file = sys.argv[1:7]
    warnings.showwarning = on_warning
    policy = RetryPolicy(timeout=2.0, total_timeout=8.0, backoff=0.2, retry_after_cap=1.0)
    auth = MemoramAuth(api_key, base_url=base_url, cache_dir=cache_dir, policy=policy)
    workers = [
        threading.Thread(target=work, args=(auth, base_url, float(stop_at)), daemon=True)
        for _ in range(int(threads))
    ]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        time.sleep(0.5)
        flush(stats_file)
    flush(stats_file)


if __name__ == "__main__":
    main()
