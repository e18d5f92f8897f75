"""Logging through the stdlib: a field named like a LogRecord attribute does not
crash logging and keeps its value; '%' in a value is not formatted; identities stay
out of info lines unless asked for."""

from __future__ import annotations

import logging

import pytest

from revsync._logging import get_logger


def test_record_attribute_names_do_not_crash(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="revsync")
    fields = {
        "name": "n1",
        "msg": "m1 %s %d",
        "args": ("a1",),
        "message": "mm",
        "levelname": "lv",
        "asctime": "t",
        "exc_text": "e",
        "stack_info": "s",
        "filename": "f",
    }
    get_logger("revsync").info("revsync.attack13", **fields)
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "revsync.attack13"]
    assert record.name == "revsync"
    assert record.levelname == "INFO"
    text = record.getMessage()
    for key, value in fields.items():
        assert f"{key}={value!r}" in text
        assert getattr(record, f"revsync_{key}") == value


def test_identity_only_when_debug_or_asked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="revsync")
    log = get_logger("revsync")
    assert log.identity("alice13", always=False) == {}
    assert log.identity("alice13", always=True) == {"identity": "alice13"}
