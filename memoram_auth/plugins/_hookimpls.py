"""The built-in plugin: :mod:`memoram_auth.plugins._defaults` behind ``@hookimpl``, as a third-party
plugin would write it. It is registered first, so its backends keep their names.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..hookspecs import CacheFactory, hookimpl
from . import _defaults

__all__ = ["memoram_auth_cache_backends", "memoram_auth_get_api_key"]


@hookimpl(tryfirst=True)
def memoram_auth_get_api_key(base_url: str) -> str | None:
    return _defaults.environment_api_key()


@hookimpl
def memoram_auth_cache_backends() -> Mapping[str, CacheFactory]:
    return _defaults.BUILTIN_BACKENDS
