"""The built-in plugin: :mod:`memoram_auth._builtins` behind ``@hookimpl``, as a third-party
plugin would write it. It is registered first, so its backends keep their names.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import _builtins
from .hookspecs import CacheFactory, hookimpl

__all__ = ["memoram_auth_cache_backends", "memoram_auth_get_api_key"]


@hookimpl(tryfirst=True)
def memoram_auth_get_api_key(base_url: str) -> str | None:
    return _builtins.environment_api_key()


@hookimpl
def memoram_auth_cache_backends() -> Mapping[str, CacheFactory]:
    return _builtins.BUILTIN_BACKENDS
