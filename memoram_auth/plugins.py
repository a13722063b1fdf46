"""Finding, loading and calling plugins, so that a broken plugin never breaks its host.

Plugins are found through the ``memoram_auth`` entry-point group and loaded once per process,
on first need. ``MEMORAM_AUTH_DISABLE_PLUGINS=1`` turns the discovery off (the built-in plugins
still apply). A plugin that fails to import, or a hook that raises, produces a
:class:`MemoramAuthWarning` naming the plugin and is otherwise skipped.

Start-up matters for the command line: pluggy and ``importlib.metadata`` together cost more
than Python itself takes to start. So when no distribution on ``sys.path`` declares a
``memoram_auth`` entry point (a quick scan of ``entry_points.txt`` files), neither is imported
and the built-in behaviour is applied directly.
"""

from __future__ import annotations

import os
import sys
import warnings

from .exceptions import MemoramAuthWarning
from .settings import API_KEY_ENV

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

    import pluggy

    from .hookspecs import CacheFactory

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "cache_backends",
    "call_hook",
    "get_api_key",
    "get_plugin_manager",
    "notify",
    "third_party_plugins_installed",
]

ENTRY_POINT_GROUP = "memoram_auth"
DISABLE_ENV = "MEMORAM_AUTH_DISABLE_PLUGINS"

_manager: pluggy.PluginManager | None = None


def _disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def third_party_plugins_installed() -> bool:
    """True if some installed distribution declares a ``memoram_auth`` entry point.

    A cheap stand-in for ``importlib.metadata.entry_points(group=...)``: it reads the
    ``entry_points.txt`` of each ``*.dist-info``/``*.egg-info`` directory on ``sys.path``.
    """
    if _disabled():
        return False
    marker = f"[{ENTRY_POINT_GROUP}]"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                try:
                    path = os.path.join(entry or ".", name, "entry_points.txt")
                    with open(path, encoding="utf-8") as handle:
                        text = handle.read()
                except (OSError, UnicodeDecodeError):
                    continue
                if marker in text:
                    return True
    return False


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    from importlib.metadata import entry_points

    if sys.version_info >= (3, 10):
        found = list(entry_points(group=ENTRY_POINT_GROUP))
    else:  # Python 3.9: entry_points() returns a dict of groups
        found = list(entry_points().get(ENTRY_POINT_GROUP, ()))
    for entry_point in found:
        if manager.get_plugin(entry_point.name) is not None or manager.is_blocked(entry_point.name):
            continue
        try:
            plugin = entry_point.load()
            manager.register(plugin, name=entry_point.name)
        except Exception as exc:  # noqa: BLE001 - any failure of a plugin must not stop its host
            warnings.warn(
                f"memoram-auth: the plugin {entry_point.name!r} ({entry_point.value}) failed to "
                f"load and is ignored: {type(exc).__name__}: {exc}",
                MemoramAuthWarning,
                stacklevel=4,
            )


def get_plugin_manager() -> pluggy.PluginManager:
    """The process's plugin manager: the built-in plugin plus installed ones, loaded once."""
    global _manager  # one per process, created on first need
    if _manager is None:
        import threading

        # setdefault is atomic: every thread gets the same lock, created on first need
        # (a module-level lock would cost the command line an import of threading).
        with globals().setdefault("_lock", threading.Lock()):
            if _manager is None:
                import pluggy

                from . import _builtin_plugin, hookspecs

                manager = pluggy.PluginManager(hookspecs.PROJECT)
                manager.add_hookspecs(hookspecs)
                manager.register(_builtin_plugin, name="memoram_auth.builtin")
                if not _disabled():
                    _load_entry_points(manager)
                _manager = manager
    return _manager


def _reset_for_tests() -> None:
    global _manager
    _manager = None


def call_hook(name: str, *, firstresult: bool = False, **kwargs: Any) -> list[Any]:  # noqa: ANN401
    """Call hook *name* plugin by plugin, in pluggy's order, isolating failures.

    Returns the non-``None`` results (only the first, with *firstresult*). A plugin that raises
    is reported with a warning naming it, and the next one is asked.
    """
    caller = getattr(get_plugin_manager().hook, name)
    results: list[Any] = []
    # pluggy calls the last registered first, tryfirst before and trylast after the rest.
    for impl in reversed(caller.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue
        try:
            result = impl.function(*(kwargs[arg] for arg in impl.argnames))
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not crash its host
            warnings.warn(
                f"memoram-auth: the plugin {impl.plugin_name!r} failed in {name} and is "
                f"skipped: {type(exc).__name__}: {exc}",
                MemoramAuthWarning,
                stacklevel=3,
            )
            continue
        if result is not None:
            results.append(result)
            if firstresult:
                break
    return results


def get_api_key(base_url: str) -> str | None:
    """The key the plugins give for *base_url* (the environment variable comes first)."""
    if _manager is None and not third_party_plugins_installed():
        return os.environ.get(API_KEY_ENV) or None  # the built-in plugin alone, without pluggy
    results = call_hook("memoram_auth_get_api_key", firstresult=True, base_url=base_url)
    if results and not isinstance(results[0], str):
        warnings.warn(
            "memoram-auth: a plugin answered memoram_auth_get_api_key with a "
            f"{type(results[0]).__name__}, not a string; ignoring it",
            MemoramAuthWarning,
            stacklevel=2,
        )
        return None
    return results[0] if results else None


def cache_backends() -> dict[str, CacheFactory]:
    """Every cache backend by name; later plugins cannot replace the built-in ones."""
    from collections.abc import Mapping

    backends: dict[str, CacheFactory] = {}
    # Registration order (the built-in plugin first), so that the first claim on a name stays.
    for mapping in reversed(call_hook("memoram_auth_cache_backends")):
        if isinstance(mapping, Mapping):
            for name, factory in mapping.items():
                backends.setdefault(str(name), factory)
    return backends


def notify(event: str, **kwargs: Any) -> None:  # noqa: ANN401
    """Tell the plugins about *event*; skipped cheaply when no plugin could be listening."""
    if _manager is None and not third_party_plugins_installed():
        return
    call_hook(event, **kwargs)
