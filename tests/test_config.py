"""Base URLs and API keys as users type them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memoram_auth import ConfigurationError
from memoram_auth._urls import is_loopback_host, origin_of, validate_base_url
from memoram_auth.keys import fingerprint, normalize_api_key

KEY = "mem_71c8d4fd816f195801803cd4c801735dfbafaaba72a88eea"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.memoram.app/api/v1", "https://api.memoram.app/api/v1"),
        ("https://api.memoram.app/api/v1/", "https://api.memoram.app/api/v1"),
        ("  https://api.memoram.app/api/v1\n", "https://api.memoram.app/api/v1"),
        ("http://127.0.0.1:8765/api/v1", "http://127.0.0.1:8765/api/v1"),
        ("http://127.1.2.3/api/v1", "http://127.1.2.3/api/v1"),
        ("http://localhost:1/api/v1", "http://localhost:1/api/v1"),
        ("http://[::1]:80/api/v1", "http://[::1]:80/api/v1"),
    ],
)
def test_accepted_base_urls(url: str, expected: str) -> None:
    assert validate_base_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://api.memoram.app/api/v1", "refusing plain http://"),
        ("http://10.0.0.1/api/v1", "refusing plain http://"),
        ("http://127.0.0.1.nip.io/api/v1", "refusing plain http://"),
        ("ftp://api.memoram.app", "not an absolute http"),
        ("api.memoram.app/api/v1", "not an absolute http"),
        ("", "not an absolute http"),
        ("https://:443/", "not an absolute http"),
        ("https://api.memoram.app:99999/", "not an absolute http"),
        ("https://user:pw@api.memoram.app/", "user name or password"),
        ("https://api.memoram.app/api/v1?x=1", "query or fragment"),
    ],
)
def test_refused_base_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        validate_base_url(url)


def test_refusals_do_not_echo_what_may_be_a_key() -> None:
    with pytest.raises(ConfigurationError) as caught:
        validate_base_url(KEY)
    assert KEY not in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        validate_base_url(f"https://api.memoram.app/?api_key={KEY}")
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        # Only exactly "localhost": this machine's resolver sends *.localhost (and a trailing
        # dot) to DNS, where a spoofed answer would get the key in the clear.
        ("localhost.", False),
        ("a.localhost", False),
        ("api.localhost", False),
        ("127.0.0.1.", False),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("128.0.0.1", False),
        ("localhost.example", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize("host", ["api.localhost", "a.b.localhost", "localhost."])
def test_plain_http_to_a_localhost_subdomain_is_refused(host: str) -> None:
    with pytest.raises(ConfigurationError, match="refusing plain http"):
        validate_base_url(f"http://{host}:8080/api/v1")
    assert validate_base_url(f"https://{host}:8080/api/v1") == f"https://{host}:8080/api/v1"


def test_origins_apply_default_ports() -> None:
    assert origin_of("https://API.memoram.app/x") == ("https", "api.memoram.app", 443)
    assert origin_of("http://127.0.0.1/x") == ("http", "127.0.0.1", 80)
    assert origin_of("http://127.0.0.1:8080") == ("http", "127.0.0.1", 8080)
    assert origin_of("mailto:x@y") is None


@pytest.mark.parametrize(
    "raw", [KEY, f"  {KEY}\n", f"\t{KEY}\r\n"], ids=["plain", "spaces", "crlf"]
)
def test_surrounding_whitespace_is_stripped(raw: str) -> None:
    assert normalize_api_key(raw) == KEY


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        (f"{KEY[:10]} {KEY[10:]}", "whitespace or control"),
        (f"{KEY}\nmem_other", "whitespace or control"),
        (f"{KEY}\x00", "whitespace or control"),
        (f"{KEY[:10]}\u200b{KEY[10:]}", "whitespace or control"),
        (None, "must be a string"),
        (b"mem_bytes", "must be a string"),
        (f'"{KEY}"', "wrapped in quotes"),
        (f"'{KEY}'\n", "wrapped in quotes"),
        (f"Bearer {KEY}", "Authorization header"),
        (f"bearer {KEY}", "Authorization header"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", "a JWT"),
    ],
    ids=[
        "empty",
        "blank",
        "inner-space",
        "two-keys",
        "nul",
        "zero-width-space",
        "none",
        "bytes",
        "double-quoted",
        "single-quoted",
        "bearer-header",
        "bearer-lowercase",
        "jwt",
    ],
)
def test_mangled_keys_are_refused_without_echo(raw: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        normalize_api_key(raw)  # type: ignore[arg-type]
    assert KEY[4:20] not in str(caught.value)


def test_fingerprint_is_short_stable_and_one_way() -> None:
    assert fingerprint(KEY) == fingerprint(KEY)
    assert fingerprint(KEY) != fingerprint(KEY + "0")
    assert fingerprint(KEY).startswith("sha256:")
    assert len(fingerprint(KEY)) == len("sha256:") + 12
    assert KEY[4:] not in fingerprint(KEY)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("0127.0.0.1", False),
        ("127.00.0.1", False),
        ("127.1", False),
        ("2130706433", False),
        ("127.0.0.256", False),
        ("127.255.255.254", True),
    ],
)
def test_only_canonical_loopback_literals_count(host: str, loopback: bool) -> None:
    # "0127.0.0.1" is octal 87.0.0.1 to some resolvers: not loopback, so not plain-http safe.
    assert is_loopback_host(host) is loopback


BASE_URL_PARTS = st.tuples(
    st.sampled_from(["http", "https", "HTTPS"]),
    st.sampled_from(["127.0.0.1", "localhost", "[::1]", "api.memoram.app", "a-b.example", "x"]),
    st.one_of(st.just(""), st.integers(min_value=1, max_value=65535).map(lambda p: f":{p}")),
    st.text(alphabet="abc/._-~%", max_size=20).map(lambda path: "/" + path),
)


@given(parts=BASE_URL_PARTS)
def test_the_strict_base_url_parser_agrees_with_urllib(parts: tuple[str, str, str, str]) -> None:
    scheme, host, port, path = parts
    url = f"{scheme}://{host}{port}{path}"
    try:
        accepted = validate_base_url(url)
    except ConfigurationError:
        return  # plain http to a non-loopback host
    from memoram_auth._urls import base_url_origin

    assert base_url_origin(accepted) == origin_of(accepted)


# -- issue 12, point 13: settings are checked when the object is built, before any network ----

NO_NETWORK = "https://api.invalid/api/v1"  # never contacted: construction does no I/O


@pytest.mark.parametrize("api_key", [123, b"mem_abc", ["mem_abc"], 1.5], ids=repr)
def test_a_key_that_is_not_text_is_a_configuration_error(api_key: object) -> None:
    from memoram_auth import MemoramAuth

    with pytest.raises(ConfigurationError, match="API key must be a string"):
        MemoramAuth(api_key, base_url=NO_NETWORK)  # type: ignore[arg-type]


BAD_EXPIRES_IN = [-1, 0, True, False, "3600", "3600.5", 3600.0, [3600], {"s": 1}]


@pytest.mark.parametrize("expires_in", BAD_EXPIRES_IN, ids=repr)
def test_a_bad_expires_in_is_refused_when_built(expires_in: object, tmp_path: Path) -> None:
    from memoram_auth import MemoramAuth
    from memoram_auth.cache import MemoryOnlyCache
    from memoram_auth.provider import TokenProvider, get_provider

    builders = [
        lambda: MemoramAuth(KEY, base_url=NO_NETWORK, cache_dir=False, expires_in=expires_in),
        lambda: get_provider(KEY, NO_NETWORK, cache_dir=tmp_path, expires_in=expires_in),
        lambda: TokenProvider(KEY, NO_NETWORK, cache=MemoryOnlyCache(), expires_in=expires_in),
    ]
    for build in builders:
        with pytest.raises(ConfigurationError, match="expires_in must be a positive"):
            build()


def test_a_good_expires_in_is_kept() -> None:
    from memoram_auth.cache import MemoryOnlyCache
    from memoram_auth.provider import TokenProvider

    provider = TokenProvider(KEY, NO_NETWORK, cache=MemoryOnlyCache(), expires_in=600)
    assert provider.expires_in == 600


@pytest.mark.parametrize("policy", [{"attempts": 3}, (3, 10.0), "fast"], ids=repr)
def test_a_policy_that_is_not_a_retry_policy_is_refused_when_built(policy: object) -> None:
    from memoram_auth import MemoramAuth

    with pytest.raises(ConfigurationError, match="policy must be a RetryPolicy"):
        MemoramAuth(KEY, base_url=NO_NETWORK, cache_dir=False, policy=policy)  # type: ignore[arg-type]


@pytest.mark.parametrize("relative", ["cache", "./cache", "a/b"])
def test_a_relative_cache_dir_from_the_environment_is_refused(
    relative: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memoram_auth import MemoramAuth

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEMORAM_AUTH_CACHE_DIR", relative)
    with pytest.raises(ConfigurationError, match="MEMORAM_AUTH_CACHE_DIR must be an absolute"):
        MemoramAuth(KEY, base_url=NO_NETWORK)
    assert list(tmp_path.iterdir()) == []


def test_a_home_relative_cache_dir_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    from memoram_auth.plugins._defaults import default_directory

    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.setenv("MEMORAM_AUTH_CACHE_DIR", "~/tokens")
    assert default_directory() == "/home/someone/tokens"


# -- messages that show what was given, and where (issue 16, point 4) ---------------------------


@pytest.mark.parametrize(
    ("given", "env", "option", "source", "shown"),
    [
        pytest.param(
            "api.memoram.app/api/v1",
            None,
            "base_url=",
            "base_url=",
            "'api.memoram.app/api/v1'",
            id="argument",
        ),
        pytest.param(
            "ftp://x.example/",
            None,
            "--base-url",
            "--base-url",
            "'ftp://x.example/'",
            id="cli-option",
        ),
        pytest.param(
            None,
            "http://10.0.0.1/api/v1",
            "base_url=",
            "MEMORAM_BASE_URL",
            "'http://10.0.0.1/api/v1'",
            id="environment",
        ),
        pytest.param(
            "https://bob:hunter2@api.memoram.app/?token=abc",
            None,
            "base_url=",
            "base_url=",
            "'https://...@api.memoram.app/?...'",
            id="credentials-and-query-hidden",
        ),
        pytest.param(
            KEY,
            None,
            "base_url=",
            "base_url=",
            "not shown, it looks like an API key",
            id="a-key-in-the-wrong-place",
        ),
        pytest.param(
            "https://api.memoram.app/\x1b[31m",
            None,
            "base_url=",
            "base_url=",
            "'https://api.memoram.app/?[31m'",
            id="control-characters",
        ),
    ],
)
def test_a_bad_base_url_shows_the_value_and_where_it_came_from(
    monkeypatch: pytest.MonkeyPatch,
    given: str | None,
    env: str | None,
    option: str,
    source: str,
    shown: str,
) -> None:
    from memoram_auth.settings import resolve_base_url

    if env is not None:
        monkeypatch.setenv("MEMORAM_BASE_URL", env)
    with pytest.raises(ConfigurationError) as caught:
        resolve_base_url(given, option=option)
    message = str(caught.value)
    assert message.endswith(f"(from {source}: {shown})"), message
    for secret in ("hunter2", "bob", "token=abc", KEY, "\x1b"):
        assert secret not in message


@pytest.mark.parametrize(
    ("option", "words"),
    [
        pytest.param("api_key=", "pass api_key=", id="python"),
        pytest.param("--api-key KEY", "pass --api-key KEY", id="cli"),
        pytest.param("--auth KEY (-a KEY)", "pass --auth KEY (-a KEY)", id="httpie"),
    ],
)
def test_no_key_names_the_way_to_pass_one_where_it_appears(
    monkeypatch: pytest.MonkeyPatch, option: str, words: str
) -> None:
    from memoram_auth.settings import KEY_OPTIONS, resolve_api_key

    monkeypatch.setenv("MEMORAM_AUTH_DISABLE_PLUGINS", "1")
    assert option in KEY_OPTIONS.values()
    with pytest.raises(ConfigurationError) as caught:
        resolve_api_key(None, "https://api.memoram.app/api/v1", option=option)
    assert "set MEMORAM_API_KEY" in str(caught.value)
    assert words in str(caught.value)
    others = [o for o in KEY_OPTIONS.values() if o != option and o not in option]
    assert not [o for o in others if o in str(caught.value)]


def test_memoram_auth_says_api_key_equals(monkeypatch: pytest.MonkeyPatch) -> None:
    from memoram_auth import MemoramAuth

    monkeypatch.setenv("MEMORAM_AUTH_DISABLE_PLUGINS", "1")
    with pytest.raises(ConfigurationError, match="pass api_key="):
        MemoramAuth(base_url="https://api.memoram.app/api/v1")
    with pytest.raises(ConfigurationError, match=r"\(from base_url=: 'api.memoram.app'\)"):
        MemoramAuth("mem_x", base_url="api.memoram.app")


def test_a_base_url_that_is_the_key_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    from memoram_auth.settings import resolve_base_url

    secret = "0f3a9c2e7b"  # a key without mem_: only knowing the key can hide it
    with pytest.raises(ConfigurationError) as given:
        resolve_base_url(secret, api_key=secret)
    monkeypatch.setenv("MEMORAM_API_KEY", secret)
    monkeypatch.setenv("MEMORAM_BASE_URL", f"x{secret}x")
    with pytest.raises(ConfigurationError) as from_environment:
        resolve_base_url()
    for caught in (given, from_environment):
        assert secret not in str(caught.value)
        assert "not shown" in str(caught.value)
