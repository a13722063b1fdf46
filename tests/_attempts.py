"""What the token exchange did, read from its DEBUG log: the behaviour a timing would guess at.

A test about retries asserts how many token requests began and how long each pause between
them was meant to be, not how long the whole took: a busy machine stretches the clock, never
these counts.
"""

from __future__ import annotations

import logging

from memoram_auth._log import LOGGER_NAME


class Attempts(logging.Handler):
    """Counts the token requests the exchange begins (``begun``) and records each pause it
    takes before a retry (``pauses``, in seconds), while installed (``with Attempts() as a``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.begun = 0
        self.pauses: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not isinstance(record.msg, str):
            return
        if record.msg.startswith("requesting a token for key"):
            self.begun += 1
        elif record.msg.startswith("token request failed") and isinstance(record.args, tuple):
            self.pauses.append(float(record.args[-1]))  # type: ignore[arg-type] - the delay, a float

    def __enter__(self) -> Attempts:
        logging.getLogger(LOGGER_NAME).addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.getLogger(LOGGER_NAME).removeHandler(self)
