"""The API key never shows up in an error, a repr or a log line of the token exchange."""

from __future__ import annotations

import pytest

from memoram_auth import MemoramAuthError
from memoram_auth.emulator import Emulator
from memoram_auth.exchange import request_token

from .conftest import FAST

FAULTS = {
    "rejected": lambda emu: emu.remove_key(emu.api_key),
    "bad-request": lambda emu: emu.fail_next(1, status=400),
    "unavailable": lambda emu: emu.fail_next(3, status=503),
    "html": lambda emu: emu.malformed_next(1),
    "dropped": lambda emu: emu.drop_next(3),
    "redirect": lambda emu: emu.fail_next(
        1, status=307, headers={"Location": "https://x.invalid/"}
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_key_stays_out_of_errors_and_logs(
    memoram_emulator: Emulator, debug_log: pytest.LogCaptureFixture, fault: str
) -> None:
    key = memoram_emulator.api_key
    FAULTS[fault](memoram_emulator)
    with pytest.raises(MemoramAuthError) as caught:
        request_token(memoram_emulator.base_url, key, policy=FAST)
    seen = [str(caught.value), repr(caught.value)]
    cause = caught.value.__cause__
    while cause is not None:
        seen += [str(cause), repr(cause)]
        cause = cause.__cause__
    seen += [record.getMessage() for record in debug_log.records]
    assert debug_log.records, "the exchange logs at DEBUG"
    for text in seen:
        assert key not in text
        assert key[4:] not in text


def test_token_stays_out_of_logs(
    memoram_emulator: Emulator, debug_log: pytest.LogCaptureFixture
) -> None:
    token = request_token(memoram_emulator.base_url, memoram_emulator.api_key)
    assert debug_log.records
    for record in debug_log.records:
        assert token.value not in record.getMessage()
        assert memoram_emulator.api_key not in record.getMessage()
