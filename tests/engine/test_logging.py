"""revsync logs through stdlib ``logging`` unless the app configured structlog, and
keeps identities out of info-level lines unless asked to."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from services.common.logs import configure_logging
from tests.engine.conftest import NodeFactory, claims


class Lines(logging.Handler):
    """What an app's own handler on the root logger receives."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self) -> list[str]:
        return [str(getattr(r, "event", "")) for r in self.records]

    def text(self) -> str:
        return "\n".join(self.format(r) for r in self.records)


@pytest.fixture
def root_handler() -> Iterator[Lines]:
    """``logging.basicConfig``-style: one handler on the root logger, structlog left
    unconfigured (as an app that never heard of it)."""
    structlog.reset_defaults()
    assert not structlog.is_configured()
    handler = Lines()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def test_the_apps_logging_configuration_gets_revsyncs_lines(
    make_node: NodeFactory, sqlite_url: str, root_handler: Lines
) -> None:
    node = await make_node(sqlite_url)
    token = claims(identity="alice@example.com")
    await node.revoke(token)
    await node.revoke_identity("bob@example.com")
    revoked = [r for r in root_handler.records if getattr(r, "event", "") == "revsync.revoked"]
    assert len(revoked) == 1
    record = revoked[0]
    assert (record.name, record.levelno) == ("revsync", logging.INFO)
    # Rendered key=value into the message, and passed as attributes for formatters.
    assert record.getMessage().startswith(f"revsync.revoked jti='{token['jti']}' seq=")
    assert record.pathname.endswith("_extension.py")  # revsync's caller, not the router
    assert record.jti == token["jti"]  # type: ignore[attr-defined]
    assert isinstance(record.seq, int)  # type: ignore[attr-defined]
    assert "revsync.identity_revoked" in root_handler.events()
    # No identity at info level by default.
    text = root_handler.text()
    assert "alice@example.com" not in text
    assert "bob@example.com" not in text
    assert not any(hasattr(r, "identity") for r in root_handler.records)

    # The app's level filter applies to revsync's lines.
    logging.getLogger("revsync").setLevel(logging.WARNING)
    before = len(root_handler.records)
    await node.revoke(claims())
    assert len(root_handler.records) == before


async def test_identities_are_logged_at_debug_or_when_enabled(
    make_node: NodeFactory, sqlite_url: str, root_handler: Lines
) -> None:
    plain = await make_node(sqlite_url)
    logging.getLogger("revsync").setLevel(logging.DEBUG)
    await plain.revoke(claims(identity="carol"))
    logging.getLogger("revsync").setLevel(logging.INFO)
    loud = await make_node(sqlite_url, log_identities=True)
    await loud.revoke(claims(identity="dave"))
    await loud.revoke_identity("erin")
    shown = {
        (getattr(r, "event", ""), getattr(r, "identity", None))
        for r in root_handler.records
        if hasattr(r, "identity")
    }
    assert shown == {
        ("revsync.revoked", "carol"),
        ("revsync.revoked", "dave"),
        ("revsync.identity_revoked", "erin"),
    }


async def test_an_app_that_configured_structlog_keeps_its_pipeline(
    make_node: NodeFactory, sqlite_url: str, root_handler: Lines
) -> None:
    node = await make_node(sqlite_url)
    with capture_logs() as captured:
        await node.revoke(claims(identity="frank"))
    assert [e["event"] for e in captured] == ["revsync.revoked"]
    # capture_logs lets every level through, debug included: the identity is there.
    assert captured[0]["identity"] == "frank"
    assert "revsync.revoked" not in root_handler.events()


def test_the_services_json_format(capsys: pytest.CaptureFixture[str]) -> None:
    from revsync._logging import get_logger

    structlog.reset_defaults()
    configure_logging("info", "json")
    log = get_logger("revsync.api")
    log.debug("revsync.api.hidden")
    log.warning("revsync.api.something", path="/x", name="clash")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "revsync.api.something"
    assert (line["level"], line["logger"], line["path"]) == ("warning", "revsync.api", "/x")
    assert line["revsync_name"] == "clash"  # a LogRecord attribute's name, kept apart


def test_the_services_console_format_is_text(capsys: pytest.CaptureFixture[str]) -> None:
    from revsync._logging import get_logger

    structlog.reset_defaults()
    configure_logging("warning", "console")
    get_logger().info("revsync.hidden")
    get_logger().error("revsync.shown", seq=3)
    err = capsys.readouterr().err
    assert "revsync.hidden" not in err
    assert "[ERROR] revsync: revsync.shown seq=3" in err
    with pytest.raises(json.JSONDecodeError):
        json.loads(err.splitlines()[0])


def test_revsync_alone_never_prints_to_stdout(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing configured: the line is a stdlib record (here pytest's caplog takes it),
    not structlog's print logger writing to stdout."""
    from revsync._logging import get_logger

    structlog.reset_defaults()
    get_logger().warning("revsync.something", key=1)
    assert capsys.readouterr().out == ""
    assert [r.getMessage() for r in caplog.records] == ["revsync.something key=1"]


def test_exceptions_and_context_reach_the_record(root_handler: Lines) -> None:
    from revsync._logging import get_logger

    with structlog.contextvars.bound_contextvars(request_id="r1"):
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            get_logger("revsync.api").exception("revsync.api.unexpected_error", path="/p")
    (record,) = root_handler.records
    assert record.name == "revsync.api"
    assert record.exc_info is not None
    assert record.exc_info[0] is ZeroDivisionError
    assert record.getMessage() == "revsync.api.unexpected_error request_id='r1' path='/p'"
