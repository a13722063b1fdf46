"""Finding, loading and calling plugins, so that a broken plugin never breaks its host.

Plugins are found through the ``memoram_auth`` entry-point group and loaded once per process,
on first need. ``MEMORAM_AUTH_DISABLE_PLUGINS=1`` turns the discovery off (the built-in plugin
still applies). A plugin that fails to import, or a hook that raises, produces a
:class:`MemoramAuthWarning` naming the plugin and is otherwise skipped.

Start-up matters for the command line: pluggy and ``importlib.metadata`` together cost more
than Python itself takes to start. So they are imported only when a plugin's answer is needed:
no key was given and ``MEMORAM_API_KEY`` is unset, a cache backend that is not built in was
asked for, or an event happens while a plugin is installed. Whether one is installed is a quick
scan of ``entry_points.txt`` files, done at most once per process.

A cache backend's plugin may also declare its backend's name in the
``memoram_auth.file_in_front`` group: "a fresh token in the local cache file may be served
without loading me". The command line's warm path then reads that file as it does for the file
backend, and loads the plugin only when the file has no fresh token (:func:`file_in_front`).
"""

from __future__ import annotations

import os
import sys
import warnings

from .._env import DISABLE_PLUGINS_ENV, ON_VALUES
from ..exceptions import MemoramAuthWarning
from . import _defaults

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    import pluggy

    from ..hookspecs import CacheFactory

__all__ = [
    "ENTRY_POINT_GROUP",
    "FILE_IN_FRONT_GROUP",
    "cache_backends",
    "call_hook",
    "file_in_front",
    "get_api_key",
    "get_api_key_and_source",
    "get_plugin_manager",
    "no_key_hints",
    "notify",
    "third_party_plugins_installed",
]

ENTRY_POINT_GROUP = "memoram_auth"
#: Names of cache backends whose tokens may be served from the local file while it is fresh.
FILE_IN_FRONT_GROUP = "memoram_auth.file_in_front"

_manager: pluggy.PluginManager | None = None
# The answer of the entry_points.txt scan, once per process (None: not scanned yet).
_installed: bool | None = None
# The backends named in FILE_IN_FRONT_GROUP, once per process (None: not scanned yet).
_in_front: frozenset[str] | None = None


def _disabled() -> bool:
    return os.environ.get(DISABLE_PLUGINS_ENV, "").strip().lower() in ON_VALUES


def _entry_point_files() -> Iterator[str]:
    """The text of each ``entry_points.txt`` of the distributions on ``sys.path``."""
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
                        yield handle.read()
                except (OSError, UnicodeDecodeError):
                    continue


def _scan() -> bool:
    marker = f"[{ENTRY_POINT_GROUP}]"
    return any(marker in text for text in _entry_point_files())


def _names_in_group(text: str, group: str) -> list[str]:
    """The entry-point names of *group* in one ``entry_points.txt`` (an INI file: ``[group]``,
    then ``name = object reference`` lines), read without configparser (start-up time)."""
    names: list[str] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            inside = line == f"[{group}]"
        elif inside and "=" in line and not line.startswith(("#", ";")):
            names.append(line.partition("=")[0].strip())
    return names


def third_party_plugins_installed() -> bool:
    """True if some installed distribution declares a ``memoram_auth`` entry point.

    A cheap stand-in for ``importlib.metadata.entry_points(group=...)``: it reads the
    ``entry_points.txt`` of each ``*.dist-info``/``*.egg-info`` directory on ``sys.path``,
    once per process.
    """
    global _installed  # one scan per process
    if _disabled():
        return False
    if _installed is None:
        _installed = _scan()
    return _installed


def file_in_front(backend: str) -> bool:
    """True if an installed plugin declares that a fresh token in the local cache file may be
    served for cache backend *backend* without loading the plugin.

    A plugin declares it for a backend whose ``load()`` answers a fresh token of its local
    :class:`~memoram_auth.cache.FileCache` as it is, so that a new process gains nothing by
    asking the backend (the Redis plugin: the fleet's store is asked only for a token the
    local file lacks or holds stale). Read from the ``entry_points.txt`` files, as
    :func:`third_party_plugins_installed` does, once per process; false when plugins are
    disabled, since the backend itself is then unavailable.
    """
    global _in_front  # one scan per process
    if _disabled():
        return False
    if _in_front is None:
        marker = f"[{FILE_IN_FRONT_GROUP}]"
        _in_front = frozenset(
            name
            for text in _entry_point_files()
            if marker in text
            for name in _names_in_group(text, FILE_IN_FRONT_GROUP)
        )
    return backend in _in_front


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
                from .. import hookspecs
                from . import _hookimpls
                from ._manager import PluginManager

                manager = PluginManager(hookspecs.PROJECT)
                manager.add_hookspecs(hookspecs)
                manager.register(_hookimpls, name=BUILTIN)
                if not _disabled():
                    _load_entry_points(manager)
                _manager = manager
    return _manager


def _reset_for_tests() -> None:
    global _manager, _installed, _in_front
    _manager = None
    _installed = None
    _in_front = None


def call_hook(name: str, **kwargs: Any) -> Any:  # noqa: ANN401 - what the hook answers
    """Call hook *name* through pluggy: a list of answers, or one for ``firstresult`` hooks.

    A plugin that raises is reported with a warning naming it and counts as answering
    ``None`` (see :mod:`memoram_auth.plugins._manager`).
    """
    return getattr(get_plugin_manager().hook, name)(**kwargs)


def get_api_key(base_url: str) -> str | None:
    """The key the plugins give for *base_url* (``MEMORAM_API_KEY`` comes first)."""
    return get_api_key_and_source(base_url)[0]


#: The name of the built-in plugin (the key from the environment, the default backends).
BUILTIN = "memoram_auth.builtin"


def get_api_key_and_source(base_url: str) -> tuple[str | None, str | None]:
    """As :func:`get_api_key`, with where the key came from: ``MEMORAM_API_KEY``, or ``the NAME
    plugin`` for the installed plugin that answered (``None`` with no key)."""
    from .._env import API_KEY_ENV

    key = _defaults.environment_api_key()
    if key is not None:
        return key, API_KEY_ENV
    if not (_manager is not None or third_party_plugins_installed()):
        return None, None
    # pluggy's firstresult call says what was answered, not who answered: the implementations
    # are asked here in pluggy's own order (the last in get_hookimpls() first), each guarded.
    caller = get_plugin_manager().hook.memoram_auth_get_api_key
    for impl in reversed(caller.get_hookimpls()):
        answer = impl.function(base_url)
        if answer is None:
            continue
        if not isinstance(answer, str):
            warnings.warn(
                f"memoram-auth: the plugin {impl.plugin_name!r} answered "
                f"memoram_auth_get_api_key with a {type(answer).__name__}, not a string; "
                "ignoring it",
                MemoramAuthWarning,
                stacklevel=2,
            )
            return None, None
        source = API_KEY_ENV if impl.plugin_name == BUILTIN else f"the {impl.plugin_name} plugin"
        return answer, source
    return None, None


def no_key_hints(base_url: str) -> list[tuple[str, str]]:
    """``(plugin, hint)`` of each installed plugin that says how to give it a key for
    *base_url* (``memoram_auth_no_key_hint``); asked only when no key was found anywhere."""
    if not (_manager is not None or third_party_plugins_installed()):
        return []
    caller = get_plugin_manager().hook.memoram_auth_no_key_hint
    hints = []
    for impl in reversed(caller.get_hookimpls()):
        hint = impl.function(base_url)
        if isinstance(hint, str) and hint.strip():
            hints.append((impl.plugin_name, hint.strip()))
    return hints


def cache_backends() -> dict[str, CacheFactory]:
    """Every cache backend by name; plugins cannot replace the built-in ones."""
    from collections.abc import Mapping

    backends: dict[str, CacheFactory] = dict(_defaults.BUILTIN_BACKENDS)
    # pluggy answers the last registered first: reversed, the earliest claim on a name stays.
    for mapping in reversed(call_hook("memoram_auth_cache_backends")):
        if isinstance(mapping, Mapping):
            for name, factory in mapping.items():
                backends.setdefault(str(name), factory)
    return backends


def notify(event: str, **kwargs: Any) -> None:  # noqa: ANN401 - the event's own arguments
    """Tell the plugins about *event*; skipped cheaply when no plugin could be listening."""
    if _manager is None and not third_party_plugins_installed():
        return
    call_hook(event, **kwargs)
