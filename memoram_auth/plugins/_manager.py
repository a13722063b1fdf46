"""The plugin manager: pluggy's, with every plugin's hooks guarded so a broken one is skipped.

Imported only when a plugin's answer is needed (pluggy costs the command line more than
Python's own start-up). Hooks are called with pluggy's own machinery; what this adds is a
wrapper around each hook function of each registered plugin, so that an exception in one
plugin becomes a :class:`MemoramAuthWarning` naming it and a ``None`` answer, and the other
plugins are still asked.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable

import pluggy

from ..exceptions import MemoramAuthWarning

__all__ = ["PluginManager"]


def _guard(function: Callable[..., Any], plugin: str, hook: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def guarded(*args: Any) -> Any:  # noqa: ANN401 - whatever the hook answers
        try:
            return function(*args)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not crash its host
            warnings.warn(
                f"memoram-auth: the plugin {plugin!r} failed in {hook} and is skipped: "
                f"{type(exc).__name__}: {exc}",
                MemoramAuthWarning,
                stacklevel=2,
            )
            return None

    return guarded


class _Guarded:
    """Stands in for a plugin: the same hook functions, each behind :func:`_guard`."""

    def __init__(self, plugin: object, name: str, marker: str, options: dict[str, Any]) -> None:
        self.plugin = plugin
        for attr, opts in options.items():
            function = getattr(plugin, attr)
            # Wrappers run around the others and must stay generators; they are not guarded.
            if not (opts.get("wrapper") or opts.get("hookwrapper")):
                function = _guard(function, name, attr)
                # A bound method has no __dict__ for functools.wraps to copy the marker from.
                setattr(function, marker, opts)
            setattr(self, attr, function)

    def __repr__(self) -> str:
        return f"<guarded {self.plugin!r}>"


class PluginManager(pluggy.PluginManager):
    """``pluggy.PluginManager`` whose registered plugins cannot break the host."""

    def __init__(self, project_name: str) -> None:
        super().__init__(project_name)
        self._marker = f"{project_name}_impl"
        self._stand_ins: dict[int, _Guarded] = {}

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register *plugin* as pluggy does, its hook functions guarded (see module doc)."""
        plugin_name = name or self.get_canonical_name(plugin)
        options: dict[str, Any] = {}
        for attr in dir(plugin):
            opts = self.parse_hookimpl_opts(plugin, attr)
            if opts is not None:
                options[attr] = dict(opts)
        stand_in = _Guarded(plugin, plugin_name, self._marker, options)
        registered = super().register(stand_in, name=plugin_name)
        if registered is not None:
            self._stand_ins[id(plugin)] = stand_in
        return registered

    def get_plugin(self, name: str) -> Any:  # noqa: ANN401 - as pluggy's
        """The object registered as *name* (the plugin itself, not its guarded stand-in)."""
        found = super().get_plugin(name)
        return found.plugin if isinstance(found, _Guarded) else found

    def is_registered(self, plugin: object) -> bool:
        """True if *plugin* (as given to :meth:`register`) is registered."""
        return super().is_registered(self._stand_ins.get(id(plugin), plugin))

    def get_name(self, plugin: object) -> str | None:
        """The name *plugin* (as given to :meth:`register`) is registered under."""
        return super().get_name(self._stand_ins.get(id(plugin), plugin))

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:  # noqa: ANN401 - as pluggy's
        """Unregister by the object given to :meth:`register`, or by name, as pluggy does.

        Returns:
            That object, or ``None`` if nothing was registered under *name*.
        """
        if plugin is None and name is not None:
            plugin = self.get_plugin(name)
        # pluggy removes hook functions by the object registered: the stand-in. Given only a
        # name, pluggy looks the object up through get_plugin(), which answers the plugin
        # itself, and would leave the stand-in's hooks in place, still called, in every
        # pluggy version (a test's throwaway plugin went on holding the refresher thread).
        stand_in = self._stand_ins.get(id(plugin), plugin) if plugin is not None else None
        removed = super().unregister(stand_in, name)
        if plugin is not None:
            self._stand_ins.pop(id(plugin), None)
        return removed.plugin if isinstance(removed, _Guarded) else removed
