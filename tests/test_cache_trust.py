"""What the file cache trusts on disk: only what this user wrote, where this user alone can write.

The attacks are the review's (issue 12): a symlinked, shared or foreign directory; FIFOs,
devices, huge sparse files and other users' files in place of a token file; entries copied
from another slot or with absurd times; planted lock-file symlinks; ``clear --all`` in a
directory of other files. Tests run as root, so ``os.chown`` to another uid works.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from memoram_auth import MemoramAuthWarning
from memoram_auth.cache import FileCache, slot_for
from memoram_auth.token import Token

OTHER_UID = 12345
BASE_URL = "https://api.memoram.app/api/v1"
KEY = "mem_" + "cd" * 24
FP = "sha256:0123456789ab"
SLOT = slot_for(BASE_URL, KEY)
TOKEN = Token("header.payload.signature", obtained_at=1_000.0, expires_at=4_600.0)

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another uid needs root"
)


def private_dir(tmp_path: Path, name: str = "cache") -> Path:
    directory = tmp_path / name
    directory.mkdir(mode=0o700)
    directory.chmod(0o700)
    return directory


def entry(token: Token = TOKEN, *, base_url: str = BASE_URL, key: str = FP) -> bytes:
    return (
        "memoram-auth token cache v1\n"
        f"base_url: {base_url}\nkey: {key}\n"
        f"obtained_at: {token.obtained_at!r}\nexpires_at: {token.expires_at!r}\n"
        f"token: {token.value}\n"
    ).encode()


def plant(path: Path, data: bytes = b"", *, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def load_quietly(cache: FileCache, **kwargs: str) -> tuple[Token | None, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = cache.load(SLOT, **kwargs)
    assert all(issubclass(w.category, MemoramAuthWarning) for w in caught)
    return loaded, [str(w.message) for w in caught]


def store(cache: FileCache, token: Token = TOKEN) -> None:
    cache.store(SLOT, token, base_url=BASE_URL, key_fingerprint=FP)


class Recorded:
    """The MemoramAuthWarnings raised inside ``with Recorded() as seen:`` (and nothing else)."""

    def __enter__(self) -> list[str]:
        self._context = warnings.catch_warnings(record=True)
        self._caught = self._context.__enter__()
        warnings.simplefilter("always")
        self.messages: list[str] = []
        return self.messages

    def __exit__(self, *exc_info: object) -> None:
        self._context.__exit__(*exc_info)
        assert all(issubclass(w.category, MemoramAuthWarning) for w in self._caught)
        self.messages += [str(w.message) for w in self._caught]


# -- 1. the directory ---------------------------------------------------------------------------


def test_a_symlinked_directory_is_not_used(tmp_path: Path) -> None:
    real = private_dir(tmp_path, "elsewhere")
    plant(real / f"{SLOT}.token", entry())
    link = tmp_path / "cache"
    link.symlink_to(real)
    cache = FileCache(link)
    loaded, messages = load_quietly(cache)
    assert loaded is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store(cache, Token("other", 0.0, 60.0))
        with cache.lock(SLOT, timeout=1) as acquired:
            assert not acquired
    assert cache.disabled
    assert "symbolic link" in " ".join(messages + [str(w.message) for w in caught])
    assert len(messages) + len(caught) == 1, "one warning in all"
    assert sorted(p.name for p in real.iterdir()) == [f"{SLOT}.token"]  # nothing written there


@needs_root
def test_a_directory_of_another_user_is_not_used(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    plant(directory / f"{SLOT}.token", entry())
    os.chown(directory / f"{SLOT}.token", OTHER_UID, OTHER_UID)
    os.chown(directory, OTHER_UID, OTHER_UID)
    cache = FileCache(directory)
    with Recorded() as seen:
        assert cache.load(SLOT) is None
        store(cache)
    assert len(seen) == 1
    assert "owned by another user" in seen[0]
    assert cache.disabled
    assert os.stat(directory).st_uid == OTHER_UID  # not taken over either
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


def test_a_loose_directory_of_ours_is_tightened_with_one_warning(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    directory.chmod(0o777)
    cache = FileCache(directory)
    with Recorded() as seen:
        store(cache)
        store(cache)
        assert cache.load(SLOT) == TOKEN
    assert len(seen) == 1
    assert "0700" in seen[0]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert not cache.disabled


def test_a_shared_sticky_directory_is_not_taken_over(tmp_path: Path) -> None:
    # Like /tmp: world-writable with the sticky bit. Making it 0700 would break everyone else.
    directory = private_dir(tmp_path)
    directory.chmod(0o1777)
    cache = FileCache(directory)
    with pytest.warns(MemoramAuthWarning, match="memory only") as caught:
        store(cache)
    assert len(caught) == 1
    assert cache.disabled
    assert stat.S_IMODE(directory.stat().st_mode) == 0o1777
    assert list(directory.iterdir()) == []


def test_a_missing_directory_is_not_created_by_reading(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "absent")
    loaded, messages = load_quietly(cache)
    assert (loaded, messages) == (None, [])
    assert not (tmp_path / "absent").exists()
    store(cache)
    assert cache.load(SLOT) == TOKEN


# -- 2. token files -----------------------------------------------------------------------------


@needs_root
def test_a_token_file_of_another_user_is_a_miss_replaced_by_the_next_write(
    tmp_path: Path,
) -> None:
    # Session fixation: the attacker's token would carry the victim's API calls.
    import time

    directory = private_dir(tmp_path)
    now = time.time()
    planted = plant(directory / f"{SLOT}.token", entry(Token("attacker.token.x", now, now + 3600)))
    os.chown(planted, OTHER_UID, OTHER_UID)
    cache = FileCache(directory)
    loaded, messages = load_quietly(cache)
    assert loaded is None
    assert len(messages) == 1
    assert "attacker" not in messages[0]
    store(cache)
    assert cache.load(SLOT) == TOKEN
    assert os.stat(directory / f"{SLOT}.token").st_uid == os.geteuid()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o666], ids=oct)
def test_a_token_file_readable_or_writable_by_others_is_a_miss(tmp_path: Path, mode: int) -> None:
    directory = private_dir(tmp_path)
    plant(directory / f"{SLOT}.token", entry(), mode=mode)
    loaded, messages = load_quietly(FileCache(directory))
    assert loaded is None
    assert len(messages) == 1


def test_a_symlink_in_place_of_the_token_file_is_a_miss(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    target = plant(tmp_path / "target", entry())
    (directory / f"{SLOT}.token").symlink_to(target)
    cache = FileCache(directory)
    loaded, messages = load_quietly(cache)
    assert loaded is None
    assert len(messages) == 1
    store(cache, Token("mine", 0.0, 60.0))
    assert target.read_bytes() == entry(), "the write replaced the link, not its target"
    assert cache.load(SLOT) == Token("mine", 0.0, 60.0)


def test_a_token_file_over_64_kib_is_a_miss(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    padded = entry() + b"\n" * (64 * 1024)
    plant(directory / f"{SLOT}.token", padded)
    loaded, messages = load_quietly(FileCache(directory))
    assert loaded is None
    assert len(messages) == 1


_LOAD_IN_A_BOXED_PROCESS = textwrap.dedent(
    """
    import resource, sys, warnings
    # A regression must fail fast, not eat the machine: 1 GiB of address space at most.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    from memoram_auth.cache import FileCache
    warnings.simplefilter("ignore")
    print("loaded" if FileCache(sys.argv[1]).load(sys.argv[2]) else "miss")
    """
)


def load_in_a_boxed_process(directory: Path) -> str:
    """``FileCache.load`` in a child process with a memory cap and a timeout: never hangs."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", _LOAD_IN_A_BOXED_PROCESS, str(directory), SLOT],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("loading the token file hung for 20 s")
    assert result.returncode == 0, result.stderr[-500:]
    return result.stdout.strip()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda path: os.mkfifo(path, 0o600), id="fifo"),
        pytest.param(lambda path: os.symlink("/dev/zero", path), id="dev-zero"),
        pytest.param(lambda path: os.truncate(plant(path, entry()), 2 << 30), id="sparse-2-gib"),
    ],
)
def test_special_files_are_a_miss_without_hanging_or_growing(tmp_path: Path, make: object) -> None:
    directory = private_dir(tmp_path)
    make(directory / f"{SLOT}.token")  # type: ignore[operator]
    assert load_in_a_boxed_process(directory) == "miss"


def test_a_fifo_does_not_block_the_writer_either(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    os.mkfifo(directory / f"{SLOT}.token", 0o600)
    cache = FileCache(directory)
    store(cache)  # os.replace swaps the FIFO out; nothing opens it
    assert cache.load(SLOT) == TOKEN


# -- 3. a file belongs to its slot --------------------------------------------------------------


def test_an_entry_for_another_base_url_or_key_is_a_miss(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    cache = FileCache(directory)
    store(cache)
    assert cache.load(SLOT, base_url=BASE_URL, key_fingerprint=FP) == TOKEN
    assert cache.load(SLOT) == TOKEN  # third-party style call: no identity to check
    other_url, messages = load_quietly(cache, base_url="https://evil.example/api/v1")
    assert other_url is None
    assert len(messages) == 1
    other_key, _ = load_quietly(cache, base_url=BASE_URL, key_fingerprint="sha256:ffffffffffff")
    assert other_key is None


@pytest.mark.parametrize(
    ("obtained", "expires"),
    [
        pytest.param("inf", "inf", id="infinite"),
        pytest.param("-inf", "inf", id="minus-infinite"),
        pytest.param("1e308", "1e308", id="huge"),
        pytest.param(None, None, id="obtained-a-day-ahead"),
        pytest.param("nan", "nan", id="nan"),
    ],
)
def test_absurd_or_future_times_are_a_miss(
    tmp_path: Path, obtained: str | None, expires: str | None
) -> None:
    import time

    if obtained is None:  # the clock moved back a day since the token was fetched
        ahead = time.time() + 86_400
        obtained, expires = repr(ahead), repr(ahead + 3600)
    directory = private_dir(tmp_path)
    data = (
        "memoram-auth token cache v1\n"
        f"base_url: {BASE_URL}\nkey: {FP}\n"
        f"obtained_at: {obtained}\nexpires_at: {expires}\ntoken: abc\n"
    ).encode()
    plant(directory / f"{SLOT}.token", data)
    loaded, messages = load_quietly(FileCache(directory))
    assert loaded is None
    assert len(messages) == 1


def test_obtained_a_little_ahead_is_still_a_hit(tmp_path: Path) -> None:
    # Another process's clock read, or an NTP step of a few seconds, is not an attack.
    import time

    directory = private_dir(tmp_path)
    soon = time.time() + 30
    cache = FileCache(directory)
    store(cache, Token("abc", soon, soon + 3600))
    assert cache.load(SLOT, base_url=BASE_URL, key_fingerprint=FP) == Token(
        "abc", soon, soon + 3600
    )


# -- 4. lock files ------------------------------------------------------------------------------


def test_a_symlink_at_the_lock_path_is_never_followed(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    victim = plant(tmp_path / "bashrc", b"export PATH=/usr/bin\n", mode=0o644)
    (directory / f"{SLOT}.lock").symlink_to(victim)
    cache = FileCache(directory)
    with Recorded() as seen:
        for _ in range(2):
            with cache.lock(SLOT, timeout=1) as acquired:
                assert not acquired
    assert len(seen) == 1
    assert "symbolic link" in seen[0]
    assert victim.read_bytes() == b"export PATH=/usr/bin\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert (directory / f"{SLOT}.lock").is_symlink()


@needs_root
def test_a_lock_file_of_another_user_is_not_used_or_changed(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    planted = plant(directory / f"{SLOT}.lock", b"theirs", mode=0o644)
    os.chown(planted, OTHER_UID, OTHER_UID)
    cache = FileCache(directory)
    with Recorded() as seen, cache.lock(SLOT, timeout=1) as acquired:
        assert not acquired
    assert "lock file" in seen[0]
    assert planted.read_bytes() == b"theirs"
    assert stat.S_IMODE(planted.stat().st_mode) == 0o644
    assert planted.stat().st_uid == OTHER_UID


def test_a_fifo_at_the_lock_path_is_not_used(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    os.mkfifo(directory / f"{SLOT}.lock", 0o600)
    cache = FileCache(directory)
    with Recorded() as seen, cache.lock(SLOT, timeout=1) as acquired:
        assert not acquired
    assert "not a regular file" in seen[0]


def test_an_existing_lock_file_of_ours_is_used_and_left_as_it_is(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    mine = plant(directory / f"{SLOT}.lock", b"", mode=0o640)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with FileCache(directory).lock(SLOT, timeout=1) as acquired:
            assert acquired
    assert stat.S_IMODE(mine.stat().st_mode) == 0o640  # not chmod-ed: we did not create it


# -- 5. clear --all -----------------------------------------------------------------------------


def test_clear_all_deletes_only_the_names_the_library_creates(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    cache = FileCache(directory)
    store(cache)
    other_slot = "f" * 32
    ours_temp = plant(directory / f".{other_slot}.k2j_9x0a.tmp", b"half")
    user_files = {
        "notes.tmp": b"my notes",
        "session.token": b"a session",
        f"{'g' * 32}.token": b"not hex",
        f"{other_slot.upper()}.token": b"upper case",
        f"{other_slot}.token.bak": b"backup",
        f".{other_slot}.tmp.keep": b"x",
    }
    for name, data in user_files.items():
        plant(directory / name, data)
    assert cache.clear_all() == 1
    assert not (directory / f"{SLOT}.token").exists()
    assert not ours_temp.exists()
    for name, data in user_files.items():
        assert (directory / name).read_bytes() == data, name
