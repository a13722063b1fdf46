"""A process that asks for tokens, started by the cross-process tests.

usage: _worker.py MODE BASE_URL API_KEY CACHE_DIR [THREADS]

get:  THREADS threads wait at a barrier, each gets a token; prints the values as JSON.
hold: gets one token (the emulator is slowed, so this holds the lock until killed).
fork: holds the provider's thread lock in another thread, forks, and the child gets a token.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from memoram_auth.provider import get_provider


def main() -> int:
    mode, base_url, api_key, cache_dir = sys.argv[1:5]
    provider = get_provider(api_key, base_url, cache_dir=cache_dir)
    if mode == "get":
        count = int(sys.argv[5])
        barrier = threading.Barrier(count)
        values: list[str] = []

        def work() -> None:
            barrier.wait()
            values.append(provider.get_token().value)

        threads = [threading.Thread(target=work) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(json.dumps(values), flush=True)
    elif mode == "hold":
        print("started", flush=True)
        provider.get_token()
    elif mode == "fork":
        held = threading.Event()
        release = threading.Event()

        def hold() -> None:
            with provider._refresh_lock:
                held.set()
                release.wait()

        threading.Thread(target=hold, daemon=True).start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            signal.alarm(20)  # a wedged child dies instead of hanging the test
            token = provider.get_token()
            os._exit(0 if token.value else 1)
        _, status = os.waitpid(pid, 0)
        release.set()
        print(json.dumps({"child_exit": os.waitstatus_to_exitcode(status)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
