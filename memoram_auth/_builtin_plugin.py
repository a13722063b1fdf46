"""The built-in plugin: the API key from the environment, and the file and memory caches.

It uses ``@hookimpl`` exactly as a third-party plugin would, and is registered first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .cache import FileCache, MemoryOnlyCache, default_directory
from .hookspecs import CacheFactory, TokenCache, hookimpl
from .settings import API_KEY_ENV

__all__ = ["memoram_auth_cache_backends", "memoram_auth_get_api_key"]


@hookimpl(tryfirst=True)
def memoram_auth_get_api_key(base_url: str) -> str | None:
    return os.environ.get(API_KEY_ENV) or None


def _file_cache(cache_dir: str | None) -> TokenCache:
    return FileCache(cache_dir or default_directory())


def _memory_cache(cache_dir: str | None) -> TokenCache:
    return MemoryOnlyCache()


@hookimpl
def memoram_auth_cache_backends() -> Mapping[str, CacheFactory]:
    return {"file": _file_cache, "memory": _memory_cache}
