"""The plugin system: throwaway plugins registered in-process, and broken ones."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from memoram_auth import (
    ConfigurationError,
    MemoramAuth,
    MemoramAuthWarning,
    RetryPolicy,
    hookimpl,
    plugins,
)
from memoram_auth.cache import FileCache, MemoryOnlyCache
from memoram_auth.emulator import Emulator
from memoram_auth.plugins._backends import default_cache, local_front
from memoram_auth.provider import TokenProvider


@pytest.fixture(autouse=True)
def fresh_plugin_manager() -> Iterator[None]:
    plugins._reset_for_tests()
    yield
    plugins._reset_for_tests()


def registered(plugin: object) -> Any:
    """Register *plugin* for the duration of a with block."""

    class Registration:
        def __enter__(self) -> object:
            plugins.get_plugin_manager().register(plugin, name="throwaway")
            return plugin

        def __exit__(self, *exc: object) -> None:
            plugins.get_plugin_manager().unregister(name="throwaway")

    return Registration()


class KeyPlugin:
    def __init__(self, key: str | None) -> None:
        self.key = key
        self.asked: list[str] = []

    @hookimpl
    def memoram_auth_get_api_key(self, base_url: str) -> str | None:
        self.asked.append(base_url)
        return self.key


class EagerKeyPlugin(KeyPlugin):
    @hookimpl(tryfirst=True)
    def memoram_auth_get_api_key(self, base_url: str) -> str | None:
        return self.key


def test_a_key_plugin_answers_when_the_environment_does_not(emu: Emulator, tmp_path: Path) -> None:
    plugin = KeyPlugin(emu.api_key)
    with registered(plugin):
        auth = MemoramAuth(base_url=emu.base_url, cache_dir=tmp_path)
    assert plugin.asked == [emu.base_url]
    assert requests.get(f"{emu.base_url}/tags", auth=auth, timeout=10).status_code == 200


def test_the_environment_comes_before_an_ordinary_plugin(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMORAM_API_KEY", emu.api_key)
    plugin = KeyPlugin("mem_from_plugin")
    with registered(plugin):
        assert plugins.get_api_key(emu.base_url) == emu.api_key
    assert plugin.asked == []


def test_the_environment_comes_before_even_a_tryfirst_plugin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEMORAM_API_KEY", "mem_from_env")
    eager = EagerKeyPlugin("mem_from_plugin")
    with registered(eager):
        assert plugins.get_api_key("https://api.memoram.app/api/v1") == "mem_from_env"
        monkeypatch.delenv("MEMORAM_API_KEY")
        assert plugins.get_api_key("https://api.memoram.app/api/v1") == "mem_from_plugin"


def test_a_raising_plugin_is_skipped_with_a_warning_naming_it() -> None:
    class Broken:
        @hookimpl
        def memoram_auth_get_api_key(self, base_url: str) -> str | None:
            raise RuntimeError("keychain locked")

    with (
        registered(Broken()),
        pytest.warns(MemoramAuthWarning, match="'throwaway' failed") as caught,
    ):
        assert plugins.get_api_key("https://api.memoram.app/api/v1") is None
    assert "keychain locked" in str(caught[0].message)


def test_a_non_string_key_is_ignored_with_a_warning() -> None:
    with registered(KeyPlugin(42)), pytest.warns(MemoramAuthWarning, match="not a string"):  # type: ignore[arg-type]
        assert plugins.get_api_key("https://api.memoram.app/api/v1") is None


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def memoram_auth_token_acquired(
        self, base_url: str, key_fingerprint: str, expires_at: float
    ) -> None:
        self.seen.append(
            ("acquired", {"base_url": base_url, "key": key_fingerprint, "expires_at": expires_at})
        )

    @hookimpl
    def memoram_auth_refresh_failed(self, base_url: str, key_fingerprint: str, error: str) -> None:
        self.seen.append(("failed", {"base_url": base_url, "key": key_fingerprint, "error": error}))


def test_events_carry_metadata_and_never_secrets(emu: Emulator) -> None:
    events = Events()
    provider = TokenProvider(
        emu.api_key, emu.base_url, cache=MemoryOnlyCache(), policy=RetryPolicy(backoff=0.01)
    )
    with registered(events):
        token = provider.get_token()
        emu.fail_next(3, status=503)
        provider.invalidate(token.value)
        with pytest.raises(Exception, match="unavailable"):
            provider.get_token()
    assert [name for name, _ in events.seen] == ["acquired", "failed"]
    acquired, failed = events.seen[0][1], events.seen[1][1]
    assert acquired["key"] == provider.fingerprint
    assert acquired["expires_at"] == token.expires_at
    assert "503" in failed["error"]
    text = repr(events.seen)
    assert emu.api_key not in text
    assert token.value not in text


def test_a_plugin_cache_backend_is_selected_by_name(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[MemoryOnlyCache] = []

    class Backend:
        @hookimpl
        def memoram_auth_cache_backends(self) -> dict[str, Any]:
            def factory(cache_dir: Path | None) -> MemoryOnlyCache:
                made.append(MemoryOnlyCache())
                return made[-1]

            return {"mine": factory, "file": factory}  # "file" stays the built-in one

    with registered(Backend()):
        monkeypatch.setenv("MEMORAM_AUTH_CACHE_BACKEND", "mine")
        auth = MemoramAuth(emu.api_key, base_url=emu.base_url)
        assert auth.provider.cache is made[0]
        monkeypatch.delenv("MEMORAM_AUTH_CACHE_BACKEND")
        assert type(default_cache(backend="file")).__name__ == "FileCache"
    assert len(made) == 1


def test_an_unknown_cache_backend_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Installed plugins (the Redis one, say) would add their backends to the list.
    monkeypatch.setenv("MEMORAM_AUTH_DISABLE_PLUGINS", "1")
    with pytest.raises(
        ConfigurationError, match=r"cache backend 'nope' \(available: file, memory\)"
    ):
        default_cache(backend="nope")


def make_distribution(root: Path, name: str, entry_points: str) -> None:
    """A minimal installed distribution, as pip would leave it, declaring entry points."""
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def test_a_plugin_that_fails_to_import_is_named_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_distribution(tmp_path, "broken_plugin", "[memoram_auth]\nbroken = no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("MEMORAM_API_KEY", raising=False)
    assert plugins.third_party_plugins_installed()
    with pytest.warns(MemoramAuthWarning, match="'broken' .* failed to load"):
        key = plugins.get_api_key("https://api.memoram.app/api/v1")
    assert key is None  # the host goes on, and says "no API key" as usual


def test_a_working_entry_point_plugin_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tiny_key_plugin.py").write_text(
        "from memoram_auth import hookimpl\n\n"
        "@hookimpl\n"
        "def memoram_auth_get_api_key(base_url):\n"
        "    return 'mem_tiny'\n"
    )
    make_distribution(tmp_path, "tiny_key_plugin", "[memoram_auth]\ntiny = tiny_key_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert plugins.get_api_key("https://api.memoram.app/api/v1") == "mem_tiny"
    assert plugins.get_plugin_manager().get_plugin("tiny") is not None


def test_only_a_backend_declared_file_in_front_is_read_from_its_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_distribution(
        tmp_path,
        "front_plugin",
        """\
        [memoram_auth]
        front = front_plugin

        [memoram_auth.file_in_front]
        front = front_plugin:make_cache
        # a comment, then another group: not declared
        [console_scripts]
        other = front_plugin:main
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    directory = str(tmp_path / "cache")
    front = local_front(directory, backend="front")
    assert isinstance(front, FileCache)
    assert front.directory == directory
    assert local_front(directory, backend="other") is None
    assert local_front(directory, backend="memory") is None
    assert local_front(False, backend="front") is None  # memory only wins, as it does
    file_front = local_front(directory)
    assert isinstance(file_front, FileCache)
    monkeypatch.setenv("MEMORAM_AUTH_DISABLE_PLUGINS", "1")
    assert local_front(directory, backend="front") is None


def test_plugins_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(tmp_path, "broken_plugin", "[memoram_auth]\nbroken = no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MEMORAM_AUTH_DISABLE_PLUGINS", "1")
    assert not plugins.third_party_plugins_installed()
    assert plugins.get_plugin_manager().get_plugin("broken") is None  # and no warning
    assert plugins.get_plugin_manager().get_plugin("memoram_auth.builtin") is not None


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def test_the_manager_hands_back_the_plugin_as_registered() -> None:
    plugin = KeyPlugin("mem_x")
    manager = plugins.get_plugin_manager()
    with registered(plugin):
        assert manager.get_plugin("throwaway") is plugin
        assert manager.is_registered(plugin)
        assert manager.get_name(plugin) == "throwaway"
    assert not manager.is_registered(plugin)
    manager.register(plugin, name="again")
    manager.unregister(plugin)  # by the object, too
    assert manager.get_plugin("again") is None


@pytest.mark.parametrize("by", ["name", "object"])
def test_an_unregistered_plugin_is_no_longer_called(by: str) -> None:
    # Unregistering by name once left the guarded stand-in's hooks registered (pluggy looked
    # the plugin up through our get_plugin(), which answers the plugin, not the stand-in).
    plugin = KeyPlugin("mem_gone")
    manager = plugins.get_plugin_manager()
    manager.register(plugin, name="throwaway")
    assert manager.hook.memoram_auth_get_api_key(base_url="u") == "mem_gone"
    removed = manager.unregister(name="throwaway") if by == "name" else manager.unregister(plugin)
    assert removed is plugin
    assert manager.hook.memoram_auth_get_api_key(base_url="u") is None
    assert plugin.asked == ["u"]
    assert manager.unregister(name="throwaway") is None  # nothing left under the name


def test_hooks_go_through_pluggy_and_a_raising_plugin_does_not_hide_the_others() -> None:
    class Broken:
        @hookimpl(tryfirst=True)
        def memoram_auth_get_api_key(self, base_url: str) -> str | None:
            raise RuntimeError("boom")

    manager = plugins.get_plugin_manager()
    good = KeyPlugin("mem_good")
    manager.register(good, name="good")
    try:
        with registered(Broken()), pytest.warns(MemoramAuthWarning, match="'throwaway' failed"):
            # pluggy's own hook call: the broken plugin is asked first and answers None.
            assert manager.hook.memoram_auth_get_api_key(base_url="u") == "mem_good"
    finally:
        manager.unregister(name="good")
    assert good.asked == ["u"]
