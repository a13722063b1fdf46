"""The names of every environment variable memoram-auth reads, and nothing else.

A leaf module: it imports nothing, so any module may import it without creating a loop.
"""

from __future__ import annotations

__all__ = [
    "API_KEY_ENV",
    "AUTH_SOCK_ENV",
    "BACKGROUND_REFRESH_ENV",
    "BASE_URL_ENV",
    "CACHE_BACKEND_ENV",
    "CACHE_DIR_ENV",
    "CA_BUNDLE_ENV",
    "CLIENT_CERT_ENV",
    "CLIENT_KEY_ENV",
    "DEBUG_ENV",
    "DISABLE_PLUGINS_ENV",
    "DISK_CACHE_ENV",
    "OFF_VALUES",
    "ON_VALUES",
    "PROXY_ENV",
]

API_KEY_ENV = "MEMORAM_API_KEY"
#: The agent's socket (memoram-auth agent): tokens come from it instead of a key.
AUTH_SOCK_ENV = "MEMORAM_AUTH_SOCK"
BASE_URL_ENV = "MEMORAM_BASE_URL"
CACHE_DIR_ENV = "MEMORAM_AUTH_CACHE_DIR"
CACHE_BACKEND_ENV = "MEMORAM_AUTH_CACHE_BACKEND"
DISK_CACHE_ENV = "MEMORAM_AUTH_DISK_CACHE"
DISABLE_PLUGINS_ENV = "MEMORAM_AUTH_DISABLE_PLUGINS"
DEBUG_ENV = "MEMORAM_AUTH_DEBUG"
#: ``0``/``false``/``no``/``off``: refresh tokens on the request path, never in a thread.
BACKGROUND_REFRESH_ENV = "MEMORAM_AUTH_BACKGROUND_REFRESH"
#: The command line's token request (MemoramAuth takes verify=, cert=, proxy= instead).
CA_BUNDLE_ENV = "MEMORAM_AUTH_CA_BUNDLE"
CLIENT_CERT_ENV = "MEMORAM_AUTH_CLIENT_CERT"
CLIENT_KEY_ENV = "MEMORAM_AUTH_CLIENT_KEY"
PROXY_ENV = "MEMORAM_AUTH_PROXY"

#: How a boolean variable is read (case-insensitive, surrounding spaces ignored).
ON_VALUES = frozenset({"1", "true", "yes", "on"})
OFF_VALUES = frozenset({"0", "false", "no", "off"})
