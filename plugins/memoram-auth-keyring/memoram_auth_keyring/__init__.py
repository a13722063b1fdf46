"""memoram-auth plugin: the Memoram API key from the operating system's keyring.

Keys are stored under the service ``memoram-auth`` with the API's base URL as the user name,
so different APIs (production, a staging server, a local emulator) can have different keys::

    memoram-auth-keyring set                       # prompts for the key, for the default API
    memoram-auth-keyring set --base-url URL        # for another API
    keyring set memoram-auth https://api.memoram.app/api/v1   # the same, with keyring's own CLI

``MEMORAM_API_KEY``, when set, still comes first (memoram-auth's built-in plugin is ``tryfirst``).
"""

from __future__ import annotations

import logging

from memoram_auth import hookimpl

# keyring is imported inside the functions: loading it (and its backends) costs more than
# Python's own start-up, and a process whose key comes from MEMORAM_API_KEY never asks for it.

__all__ = [
    "SERVICE",
    "delete_api_key",
    "memoram_auth_get_api_key",
    "memoram_auth_no_key_hint",
    "store_api_key",
]

SERVICE = "memoram-auth"

logger = logging.getLogger("memoram_auth_keyring")


@hookimpl
def memoram_auth_get_api_key(base_url: str) -> str | None:
    """The key stored for *base_url*, or ``None`` (nothing stored, or no keyring here)."""
    import keyring
    import keyring.errors

    try:
        return keyring.get_password(SERVICE, base_url)
    except keyring.errors.KeyringError as exc:
        # No usable keyring (a headless machine without a backend) is not an error: the next
        # key source, or the "no API key" message, tells the user what to do.
        logger.debug("no key from the keyring: %s", type(exc).__name__)
        return None


@hookimpl
def memoram_auth_no_key_hint(base_url: str) -> str:
    """What to run when no key was found: store one, or get a keyring backend first."""
    import keyring
    import keyring.backends.fail

    try:
        backend: object = keyring.get_keyring()
    except Exception:  # noqa: BLE001 - a keyring that cannot even be chosen is no keyring
        backend = None
    if backend is None or isinstance(backend, keyring.backends.fail.Keyring):
        return (
            "no keyring backend works here (a headless machine?): pip install keyrings.alt and "
            "export PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring, then run "
            "memoram-auth-keyring set; or set MEMORAM_API_KEY"
        )
    from memoram_auth.exceptions import MemoramAuthError
    from memoram_auth.settings import resolve_base_url

    try:
        default = resolve_base_url()  # the API `memoram-auth-keyring set` stores a key for
    except MemoramAuthError:
        default = None
    option = "" if base_url == default else f" --base-url {base_url}"
    return f"run memoram-auth-keyring set{option}"


def store_api_key(base_url: str, api_key: str) -> None:
    """Store *api_key* for *base_url* in the keyring."""
    import keyring

    keyring.set_password(SERVICE, base_url, api_key)


def delete_api_key(base_url: str) -> None:
    """Remove the key stored for *base_url*.

    Raises:
        keyring.errors.PasswordDeleteError: no key is stored for it.
    """
    import keyring

    keyring.delete_password(SERVICE, base_url)
