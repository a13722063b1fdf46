"""The file cache on its own: layout, modes, atomic writes and damage."""

from __future__ import annotations

import os
import stat
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memoram_auth import MemoramAuthWarning
from memoram_auth.cache import FileCache, MemoryOnlyCache, slot_for
from memoram_auth.plugins._backends import default_cache
from memoram_auth.token import Token, token_digest

KEY = "mem_" + "ab" * 24
TOKEN = Token("header.payload.signature", obtained_at=1_000.0, expires_at=4_600.0)
SLOT = slot_for("https://api.memoram.app/api/v1", KEY)


def store(cache: FileCache, token: Token = TOKEN) -> None:
    cache.store(SLOT, token, base_url="https://api.memoram.app/api/v1", key_fingerprint="sha256:x")


def test_round_trip(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    assert cache.load(SLOT) is None
    store(cache)
    assert cache.load(SLOT) == TOKEN
    cache.delete(SLOT)
    assert cache.load(SLOT) is None


def test_round_trip_keeps_which_rejected_token_the_token_replaces(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    store(cache)
    loaded = cache.load(SLOT)
    assert loaded is not None
    assert loaded.replaces is None
    assert not loaded.after_rejection
    assert "replaces" not in (tmp_path / f"{SLOT}.token").read_text()
    digest = token_digest("the.rejected.token")
    store(cache, Token(TOKEN.value, 1_000.0, 4_600.0, replaces=digest))
    loaded = cache.load(SLOT)
    assert loaded is not None
    assert loaded.replaces == digest
    assert loaded.after_rejection
    assert "the.rejected.token" not in (tmp_path / f"{SLOT}.token").read_text()


@pytest.mark.parametrize(
    "line",
    ["after_rejection: 1", "replaces: not-a-digest", "replaces: ", f"replaces: {'A' * 32}"],
    ids=["older-version-yes-no", "damaged", "empty", "upper-case"],
)
def test_a_mark_that_names_no_token_reads_as_unmarked(tmp_path: Path, line: str) -> None:
    # What the version before wrote ("after_rejection: 1" said "after a rejection", not which),
    # or a damaged line: the token is read, as one that replaces nothing. A provider then takes
    # it only if it was obtained after the rejection it is replacing a token for.
    cache = FileCache(tmp_path)
    store(cache)
    path = tmp_path / f"{SLOT}.token"
    path.write_text(path.read_text() + line + "\n")
    loaded = cache.load(SLOT)
    assert loaded == TOKEN
    assert loaded is not None
    assert loaded.replaces is None


def test_a_yes_no_mark_is_not_written(tmp_path: Path) -> None:
    # Token(after_rejection=True) without replaces (from a backend that kept only the yes/no)
    # replaces an unknown token: marked, but matching no rejection, so nothing to write.
    token = Token(TOKEN.value, 1_000.0, 4_600.0, after_rejection=True)
    assert token.after_rejection
    assert token.replaces == ""
    cache = FileCache(tmp_path)
    store(cache, token)
    assert "replaces" not in (tmp_path / f"{SLOT}.token").read_text()


def test_missing_directory_is_created_private(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "cache"
    cache = FileCache(directory)
    store(cache)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(cache.path(SLOT)).stat().st_mode) == 0o600
    with cache.lock(SLOT, timeout=1) as acquired:
        assert acquired
    lock_file = directory / f"{SLOT}.lock"
    assert lock_file.exists(), "the lock file is never deleted"
    assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600


def test_files_hold_no_key_and_are_named_by_digest(tmp_path: Path) -> None:
    store(FileCache(tmp_path))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{SLOT}.token"]
    text = (tmp_path / names[0]).read_text()
    assert KEY not in text
    assert KEY[4:] not in text
    assert text.splitlines()[0] == "memoram-auth token cache v1"
    assert f"token: {TOKEN.value}" in text.splitlines()
    assert KEY not in SLOT


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    for i in range(5):
        store(cache, Token(f"t{i}", obtained_at=0.0, expires_at=60.0))
    assert [p.name for p in tmp_path.iterdir()] == [f"{SLOT}.token"]
    assert cache.load(SLOT) == Token("t4", obtained_at=0.0, expires_at=60.0)


H = b"memoram-auth token cache v1\n"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(H + b"obtained_at: 0\nexpires_at: 60\ntok", id="truncated"),
        pytest.param(b"\x00\xff garbage", id="binary"),
        pytest.param(b'{"format": 1, "token": "abc", "obtained_at": 0}', id="json"),
        pytest.param(
            b"memoram-auth token cache v9\nobtained_at: 0\nexpires_at: 60\ntoken: abc\n",
            id="foreign-version",
        ),
        pytest.param(H + b"obtained_at: 0\nexpires_at: 60\ntoken: a b\n", id="unsafe-token"),
        pytest.param(H + b"obtained_at: 60\nexpires_at: 0\ntoken: abc\n", id="backwards"),
        pytest.param(H + b"obtained_at: 0\nexpires_at: nan\ntoken: abc\n", id="nan"),
        pytest.param(H + b"obtained_at: 0\nexpires_at: inf\ntoken: abc\n", id="infinite"),
        pytest.param(H + b"obtained_at: soon\nexpires_at: 60\ntoken: abc\n", id="not-a-number"),
        pytest.param(H + b"obtained_at: 0\ntoken: abc\n", id="no-expiry"),
    ],
)
def test_damaged_files_are_misses_that_heal(tmp_path: Path, content: bytes) -> None:
    cache = FileCache(tmp_path)
    Path(cache.path(SLOT)).write_bytes(content)
    Path(cache.path(SLOT)).chmod(0o600)  # private, as the cache writes it: only damaged
    with pytest.warns(MemoramAuthWarning, match="damaged or from another version") as caught:
        assert cache.load(SLOT) is None
    assert "abc" not in str(caught[0].message)
    store(cache)
    assert cache.load(SLOT) == TOKEN


def test_unreadable_file_is_a_miss(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    Path(cache.path(SLOT)).mkdir()  # unreadable as a file, even for root
    with pytest.warns(MemoramAuthWarning, match="cannot read the cached token"):
        assert cache.load(SLOT) is None


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(lambda tmp: tmp / "file" / "cache", id="under-a-file"),
        pytest.param(lambda tmp: Path("/proc/self"), id="unwritable"),
    ],
)
def test_unusable_directory_degrades_to_memory_once(tmp_path: Path, where: object) -> None:
    (tmp_path / "file").write_text("not a directory")
    cache = FileCache(where(tmp_path))  # type: ignore[operator]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store(cache)
        store(cache)
        with cache.lock(SLOT, timeout=1) as acquired:
            assert not acquired
    assert "keeping tokens in memory only" in str(caught[0].message)
    assert len(caught) == 1
    assert cache.disabled
    assert cache.load(SLOT) is None


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_any_bytes_are_a_token_or_a_miss(tmp_path: Path, content: bytes) -> None:
    import memoram_auth.cache

    # Damage at a path is reported once per process until a token replaces the file; each
    # example here is damage written by someone else, so it starts unreported.
    memoram_auth.cache._warned.discard(str(tmp_path / f"{SLOT}.token"))
    cache = FileCache(tmp_path)
    Path(cache.path(SLOT)).write_bytes(content)
    Path(cache.path(SLOT)).chmod(0o600)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = cache.load(SLOT)
    assert all(issubclass(w.category, MemoramAuthWarning) for w in caught)
    # A miss is reported; a (by chance) valid entry is not.
    assert (loaded is None) == (len(caught) == 1)


def test_default_cache_follows_arguments_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(default_cache(False), MemoryOnlyCache)
    chosen = default_cache(tmp_path)
    assert isinstance(chosen, FileCache)
    assert chosen.directory == str(tmp_path)
    monkeypatch.setenv("MEMORAM_AUTH_CACHE_DIR", str(tmp_path / "env"))
    from_env = default_cache()
    assert isinstance(from_env, FileCache)
    assert from_env.directory == str(tmp_path / "env")
    monkeypatch.setenv("MEMORAM_AUTH_DISK_CACHE", "off")
    assert isinstance(default_cache(), MemoryOnlyCache)
    assert isinstance(default_cache(tmp_path), FileCache)  # an explicit directory wins
    monkeypatch.delenv("MEMORAM_AUTH_DISK_CACHE")
    monkeypatch.delenv("MEMORAM_AUTH_CACHE_DIR")
    platform_default = default_cache()
    assert isinstance(platform_default, FileCache)
    assert os.path.basename(platform_default.directory) == "memoram-auth"


def test_default_directory_is_what_platformdirs_says(monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    from memoram_auth.plugins._defaults import default_directory

    monkeypatch.delenv("MEMORAM_AUTH_CACHE_DIR", raising=False)
    for xdg in (None, "/srv/cache-home"):
        if xdg is None:
            monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        assert default_directory() == platformdirs.user_cache_dir("memoram-auth", appauthor=False)
    # A relative XDG_CACHE_HOME is invalid and ignored (XDG Base Directory spec), as recent
    # platformdirs does too; 4.4 (the last for Python 3.9) still used it as given.
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
        monkeypatch.setenv("HOME", "/home/someone")
        assert default_directory() == "/home/someone/.cache/memoram-auth"


def test_a_warning_is_given_once_however_many_cache_objects_see_it(tmp_path: Path) -> None:
    # Every auth object with its own settings builds its own FileCache: each warned again,
    # whatever the warnings filter (issue 16: "today three, the first twice").
    damaged = FileCache(tmp_path / "damaged")
    store(damaged)
    Path(damaged.path(SLOT)).write_bytes(b"\x00garbage")
    linked = tmp_path / "linked"
    linked.symlink_to(tmp_path / "damaged")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert FileCache(tmp_path / "damaged").load(SLOT) is None
            store(FileCache(linked))  # a symlinked directory: memory only, said once
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert "damaged or from another version" in messages[0]
    assert "symbolic link" in messages[1]
    # Replaced by a token of ours, the file is good; damaged again, it is reported again.
    store(FileCache(tmp_path / "damaged"))
    Path(damaged.path(SLOT)).write_bytes(b"\x00garbage")
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        assert FileCache(tmp_path / "damaged").load(SLOT) is None
    assert len(again) == 1
