"""API keys: clean up what users paste, and name a key without revealing it."""

from __future__ import annotations

from .exceptions import ConfigurationError

__all__ = ["ApiKey", "fingerprint", "normalize_api_key", "sha256_hex"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _load_sha256() -> Callable[[bytes], Any]:
    # The interpreter's built-in SHA-256, the one hashlib itself falls back to: importing
    # hashlib loads OpenSSL (python -X importtime: 3 to 5 ms, _hashlib most of it), more
    # than all of the warm command line's own modules; the built-in module costs ~0.1 ms.
    import importlib

    for name in ("_sha2", "_sha256"):  # Python 3.12+, then 3.9 to 3.11
        try:
            module = importlib.import_module(name)  # a name only known at run time
        except ImportError:
            continue
        sha256: Callable[[bytes], Any] | None = getattr(module, "sha256", None)
        if sha256 is not None:
            return sha256
    from hashlib import sha256 as from_hashlib

    return from_hashlib


_sha256 = _load_sha256()


def sha256_hex(text: str) -> str:
    """The hex SHA-256 digest of *text* (UTF-8)."""
    return str(_sha256(text.encode("utf-8")).hexdigest())


def normalize_api_key(api_key: str | ApiKey) -> str:
    """Return *api_key* without surrounding whitespace, or raise if it cannot be a key.

    A pasted key often drags a newline along, so leading and trailing whitespace is dropped.
    Whitespace or control characters inside the key mean it was mangled (two values joined,
    a stray escape); sending it would only earn a 401 that hides the real mistake.

    Raises:
        ConfigurationError: the key is empty, has inner whitespace or control characters, is
            wrapped in quotes, or is a ``Bearer`` header or a JWT pasted in its place. The
            message says which, and never contains the key.
    """
    if isinstance(api_key, ApiKey):
        api_key = api_key.reveal()
    if not isinstance(api_key, str):
        raise ConfigurationError(
            f"the API key must be a string, not {type(api_key).__name__}; "
            "pass it as text or set MEMORAM_API_KEY"
        )
    key = api_key.strip()
    mistake = _mistake(key)
    if mistake is None:
        return key
    # The key is dropped from this frame before raising: traceback formatters that print
    # locals would show it otherwise.
    del api_key, key
    raise ConfigurationError(mistake)


def _mistake(key: str) -> str | None:
    """What makes *key* (stripped) impossible as an API key, in words without the key, or None.

    Each of these was pasted as a key by real users; each would only earn a 401 from the token
    endpoint, which cannot say what went wrong.
    """
    if not key:
        return "the API key is empty; set MEMORAM_API_KEY or pass api_key="
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "\"'":
        return (
            "the API key is wrapped in quotes, which are not part of it; "
            "remove them (in a .env file or a shell, write the key bare)"
        )
    if key[:7].lower() == "bearer ":
        return (
            "the API key looks like an Authorization header (Bearer ...); "
            "give the API key itself (mem_...), memoram-auth makes the header"
        )
    if key.startswith("eyJ") and key.count(".") == 2:
        return (
            "the API key looks like a token (a JWT, eyJ...), which memoram-auth fetches for "
            "you; give the long-lived API key instead (mem_...)"
        )
    if any(char.isspace() or _is_control(char) for char in key):
        return (
            "the API key contains whitespace or control characters; copy it again "
            "from the Memoram dashboard (keys look like mem_ followed by hex digits)"
        )
    return None


def _is_control(char: str) -> bool:
    if char < "\x80":  # ASCII, the usual case, without importing unicodedata
        return char < " " or char == "\x7f"
    import unicodedata

    # Control, format (zero-width, bidi), surrogate, private-use and unassigned characters.
    return unicodedata.category(char).startswith("C")


def fingerprint(api_key: str) -> str:
    """A short one-way name for *api_key*, safe to show in messages, reprs and logs.

    Twelve hex digits of SHA-256: enough to tell a user's keys apart, and since real keys
    carry ~192 bits of randomness the digest reveals nothing usable.
    """
    return f"sha256:{sha256_hex(api_key)[:12]}"


class ApiKey:
    """An API key held so that it shows up nowhere by accident.

    ``repr``/``str`` give only the fingerprint, so traceback formatters that print locals
    (``pytest --showlocals``, rich, error trackers) show ``ApiKey(sha256:…)``; pickling and
    copying are refused, as for every object that holds the key. :meth:`reveal` is the one way
    to the value: call it where the key is sent, not earlier.

    Args:
        value: the key.
        source: where it came from, in the words a message uses to send the user there
            (``MEMORAM_API_KEY``, ``--api-key KEY``, ``the keyring plugin``), or ``None``.
            Not part of the key: two keys with the same value are equal whatever their source.
    """

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str | None = None) -> None:
        self._value = value  # checked by normalize_api_key() where it is used
        #: Where the key came from (see the class's docstring): a 401 names it.
        self.source = source

    @classmethod
    def of(cls, value: str | ApiKey, source: str | None = None) -> ApiKey:
        """*value* as an :class:`ApiKey` (one given already is returned as it is)."""
        return value if isinstance(value, ApiKey) else cls(value, source)

    @property
    def fingerprint(self) -> str:
        """See :func:`fingerprint`."""
        return fingerprint(self._value) if isinstance(self._value, str) else "not-text"

    def reveal(self) -> str:
        """The key itself."""
        return self._value

    def __repr__(self) -> str:
        return f"ApiKey({self.fingerprint})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError(refusal("an ApiKey"))

    def __copy__(self) -> ApiKey:
        raise TypeError(refusal("an ApiKey"))

    def __deepcopy__(self, memo: object) -> ApiKey:
        raise TypeError(refusal("an ApiKey"))


def refusal(what: str) -> str:
    """The message of the TypeError that every holder of the key raises when pickled or copied."""
    return (
        f"{what} holds the API key and cannot be pickled or copied; create a new one where "
        "it is needed (same arguments: the token cache is shared)"
    )
