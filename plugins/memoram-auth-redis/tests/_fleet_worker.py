"""One machine of a simulated fleet: its own disk cache, the shared Redis from the environment.

usage: _fleet_worker.py MODE BASE_URL API_KEY CACHE_DIR [GO_FILE]

get:   waits until GO_FILE exists (so that all workers start together), gets a token, prints
       {"token": value, "waited": seconds} as JSON.
serve: reads commands from stdin, one a line: "call" sends GET /tags with MemoramAuth and
       prints {"status": code, "replayed": bool}; "quit" ends.
"""

from __future__ import annotations

import json
import os
import sys
import time

import requests

from memoram_auth import MemoramAuth


def main() -> int:
    mode, base_url, api_key, cache_dir = sys.argv[1:5]
    auth = MemoramAuth(api_key, base_url=base_url, cache_dir=cache_dir, cache_backend="redis")
    if mode == "get":
        go = sys.argv[5]
        while not os.path.exists(go):
            time.sleep(0.002)
        started = time.perf_counter()
        value = auth.provider.get_token().value
        print(json.dumps({"token": value, "waited": time.perf_counter() - started}), flush=True)
        return 0
    session = requests.Session()
    session.auth = auth
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        response = session.get(f"{base_url}/tags", timeout=30)
        print(json.dumps({"status": response.status_code, "replayed": bool(response.history)}),
              flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
