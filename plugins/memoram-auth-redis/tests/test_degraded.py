"""Degraded mode is loud, and a setting or a right to fix is not taken for an outage.

Each wrong set-up against a real redis-server: the warning names the kind, the hooks and the
log hear of every transition, ``health()`` (what ``memoram-auth status`` shows) says what is
wrong, strict mode raises, and the URL mistakes that used to slip through are refused.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from _servers import Server
from memoram_auth_redis import Breaker, RedisTokenCache, RedisUnavailableError, Settings

from memoram_auth import ConfigurationError, MemoramAuthWarning, hookimpl, plugins
from memoram_auth.emulator import Emulator
from memoram_auth.provider import TokenProvider

ACL_RULE = next(
    line
    for line in (Path(__file__).parent.parent / "acl.conf").read_text().splitlines()
    if line.startswith("user memoram-auth ")
)


def acl_user(server: Server, *rules: str) -> str:
    """The least-privilege user of acl.conf (with *rules* on top); its URL."""
    admin = server.client()
    admin.execute_command("ACL", "SETUSER", "memoram-auth", "reset", *ACL_RULE.split()[2:])
    admin.execute_command("ACL", "SETUSER", "memoram-auth", ">s3cret-pass", *rules)
    return f"redis://memoram-auth:s3cret-pass@127.0.0.1:{server.port}/0"


def wrong_password(server: Server) -> Settings:
    return Settings(acl_user(server).replace("s3cret-pass", "wrong-pass"))


def missing_acl_right(server: Server) -> Settings:
    return Settings(acl_user(server, "-evalsha"))


def wrong_db(server: Server) -> Settings:
    return Settings(f"redis://127.0.0.1:{server.port}/99")  # 16 databases by default


def cluster_flag_on_a_plain_server(server: Server) -> Settings:
    return Settings(server.url, cluster=True)


def sentinel_flag_on_a_plain_server(server: Server) -> Settings:
    return Settings(server.url, sentinel="mymaster")


def tls_to_a_plaintext_port(server: Server) -> Settings:
    return Settings(f"rediss://127.0.0.1:{server.port}/0")


def full(server: Server) -> Settings:
    server.client().config_set("maxmemory", "1")  # noeviction: every write is refused
    return Settings(server.url)


#: The kind, or "either": TLS to a plaintext port is refused at once or times out (the server
#: reads the TLS hello as a command, and answers only if its random bytes hold a newline).
CASES: list[tuple[Callable[[Server], Settings], str, str]] = [
    (wrong_password, "configuration", "check the user and password"),
    (missing_acl_right, "permission", "acl.conf"),
    (wrong_db, "configuration", "database number"),
    (cluster_flag_on_a_plain_server, "configuration", "not a Redis Cluster node"),
    (sentinel_flag_on_a_plain_server, "configuration", "names a Sentinel"),
    (tls_to_a_plaintext_port, "either", "does not speak TLS"),
    (full, "full", "maxmemory"),
]


class Events:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.recovered = 0

    @hookimpl
    def memoram_auth_cache_unavailable(self, backend: str, error: str, retry_in: float) -> None:
        self.errors.append(error)

    @hookimpl
    def memoram_auth_cache_recovered(self, backend: str) -> None:
        self.recovered += 1


@pytest.fixture
def events() -> Events:
    seen = Events()
    manager = plugins.get_plugin_manager()
    manager.register(seen, name="events")
    try:
        yield seen
    finally:
        manager.unregister(name="events")


@pytest.mark.parametrize(("setup", "kind", "advice"), CASES, ids=[c[0].__name__ for c in CASES])
def test_a_wrong_set_up_is_named_not_taken_for_an_outage(
    server: Server,
    tmp_path: Path,
    emu: Emulator,
    events: Events,
    caplog: pytest.LogCaptureFixture,
    setup: Callable[[Server], Settings],
    kind: str,
    advice: str,
) -> None:
    settings = setup(server)
    cache = RedisTokenCache.from_settings(settings, cache_dir=str(tmp_path / "a"))
    provider = TokenProvider(emu.api_key, emu.base_url, cache=cache)
    with pytest.warns(MemoramAuthWarning) as w:
        provider.get_token()  # degrades: the token comes all the same
    report = cache.health()
    if kind == "either":
        kind = str(report["kind"])
        assert kind in ("configuration", "outage")
    if kind == "outage":
        assert "is unavailable" in str(w[0].message)
    else:
        assert f"not usable ({kind}, not an outage)" in str(w[0].message)
        assert events.errors[0].startswith(f"{kind}: ")
        assert any(f"not usable ({kind}" in r.getMessage() for r in caplog.records)
        assert report["reachable"] is True  # it answered, with a refusal
    assert advice in str(w[0].message)
    assert emu.counters.token_requests == 1
    assert report["ok"] is False
    assert report["kind"] == kind
    assert advice in str(report["problem"])
    # Strict mode: the same set-up fails the caller instead.
    strict = RedisTokenCache.from_settings(
        Settings(settings.url, cluster=settings.cluster, sentinel=settings.sentinel, strict=True),
        cache_dir=str(tmp_path / "b"),
    )
    with pytest.raises(RedisUnavailableError, match=kind):
        TokenProvider(emu.api_key, emu.base_url, cache=strict).get_token()


def test_an_outage_is_an_outage_and_every_transition_is_logged(
    server: Server,
    tmp_path: Path,
    emu: Emulator,
    events: Events,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="memoram_auth.redis")
    clock = [0.0]
    breaker = Breaker("test", clock=lambda: clock[0])
    cache = RedisTokenCache.from_settings(Settings(server.url), cache_dir=str(tmp_path / "a"))
    cache.breaker = breaker
    server.kill()
    provider = TokenProvider(emu.api_key, emu.base_url, cache=cache)
    with pytest.warns(MemoramAuthWarning, match="is unavailable"):
        provider.get_token()
    report = cache.health()
    assert (report["ok"], report["kind"], report["reachable"]) == (False, "outage", False)
    clock[0] += 61
    cache.local.delete(provider.slot)  # so that load() asks Redis
    cache.load(provider.slot)  # tries again: still down, opens again, logged again
    server.start()
    clock[0] += 61
    cache.load(provider.slot)  # back
    messages = [r.getMessage() for r in caplog.records if r.name == "memoram_auth.redis"]
    assert [m.split(" is ")[1].split(" ")[0] for m in messages] == [
        "unavailable",
        "unavailable",
        "back",
    ]
    assert len(events.errors) == 2
    assert events.recovered == 1
    assert cache.health()["ok"] is True


def status(emu: Emulator, url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MEMORAM_API_KEY": emu.api_key,
        "MEMORAM_BASE_URL": emu.base_url,
        "MEMORAM_AUTH_CACHE_BACKEND": "redis",
        "MEMORAM_AUTH_REDIS_URL": url,
        "MEMORAM_AUTH_CACHE_DIR": str(tmp_path / "cli"),
    }
    return subprocess.run(
        [sys.executable, "-m", "memoram_auth", "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_status_shows_the_backend_and_fails_when_it_is_not_usable(
    server: Server, tmp_path: Path, emu: Emulator
) -> None:
    good = status(emu, server.url, tmp_path)
    assert good.returncode == 0, good.stderr
    assert "redis at redis://127.0.0.1" in good.stdout
    assert "reachable, authorised, takes writes" in good.stdout
    bad = status(emu, acl_user(server).replace("s3cret-pass", "wrong"), tmp_path)
    assert bad.returncode == 2
    assert "NOT USABLE (configuration)" in bad.stdout
    assert "wrong" not in bad.stdout.replace("wrong number", "")  # never the password
    server.kill()
    down = status(emu, server.url, tmp_path)
    assert down.returncode == 4
    assert "NOT USABLE (outage)" in down.stdout


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://127.0.0.1:6379/zero", "database number"),
        ("redis://cache internal:6379/0", "a space"),
        ("redis://cache%20internal:6379/0", "a space"),
    ],
    ids=["db-not-a-number", "space-in-host", "encoded-space-in-host"],
)
def test_url_mistakes_that_slipped_through_are_configuration_errors(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        Settings(url)


def test_a_tls_url_that_turns_off_the_certificate_check_warns() -> None:
    with pytest.warns(MemoramAuthWarning, match="ssl_cert_reqs=none"):
        Settings("rediss://127.0.0.1:6380/0?ssl_cert_reqs=none")
