"""Logging for memoram-auth, without importing :mod:`logging` on the fast path.

Every record goes to the ``memoram_auth`` logger. Debug records are dropped while no one has
imported :mod:`logging`: then no handler can exist to receive them, and importing the module
just to discard them would cost the command line a fifth of its start-up. Warnings always go
out (Python's last-resort handler prints them when nothing is configured).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["LOGGER_NAME", "debug", "warning"]

LOGGER_NAME = "memoram_auth"


def debug(message: str, *args: Any) -> None:  # noqa: ANN401 - %-style arguments, as logging takes
    if "logging" in sys.modules:
        import logging

        logging.getLogger(LOGGER_NAME).debug(message, *args)


def warning(message: str, *args: Any) -> None:  # noqa: ANN401 - %-style arguments, as logging takes
    import logging

    logging.getLogger(LOGGER_NAME).warning(message, *args)
