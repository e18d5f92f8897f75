"""Where revsync's log lines go: the app's structlog pipeline, else stdlib ``logging``.

An app that configured structlog (``structlog.is_configured()``) keeps its own
pipeline, and so do tests under ``structlog.testing.capture_logs``.  Otherwise every
event goes to the standard logger of the same name ("revsync", "revsync.api"), so the
app's ``logging`` configuration filters and formats it like any other library's: the
message is the event name followed by its fields as ``key=value``, and the fields are
also attributes of the record (``extra``), for JSON formatters.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

# LogRecord's own attributes: an event field of the same name would clash in ``extra``.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}


def render(event: str, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The stdlib message (``event key=value ...``) and the record's extra attributes
    (the fields, a clashing name prefixed ``revsync_``, and ``event``)."""
    pairs = " ".join(f"{key}={value!r}" for key, value in fields.items())
    extra = {(f"revsync_{k}" if k in _RECORD_ATTRIBUTES else k): v for k, v in fields.items()}
    extra["event"] = event
    return (f"{event} {pairs}" if pairs else event), extra


class Logger:
    """structlog's calling convention (``logger.info("revsync.event", key=value)``),
    routed at each call so that configuring structlog later still takes effect."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger = logging.getLogger(name)

    def _emit(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():
            getattr(structlog.get_logger(self.name), method)(event, **fields)
            return
        if not self._logger.isEnabledFor(level):  # a filtered line costs nothing more
            return
        exc_info = fields.pop("exc_info", method == "exception")
        context = structlog.contextvars.get_contextvars()
        message, extra = render(event, {**context, **fields} if context else fields)
        # No args, so the message is never %-formatted; stacklevel 3: revsync's caller.
        self._logger.log(level, message, exc_info=exc_info, extra=extra, stacklevel=3)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, "error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error line with the exception being handled."""
        self._emit(logging.ERROR, "exception", event, fields)

    def debug_enabled(self) -> bool:
        """Whether debug lines are written (False when the pipeline cannot say)."""
        if not structlog.is_configured():
            return self._logger.isEnabledFor(logging.DEBUG)
        bound = structlog.get_logger(self.name).bind()
        check = getattr(bound, "is_enabled_for", None) or getattr(bound, "isEnabledFor", None)
        return bool(check(logging.DEBUG)) if callable(check) else False

    def identity(self, identity: object, *, always: bool) -> dict[str, Any]:
        """``{"identity": identity}`` for a log line when identities may be logged:
        ``always`` (REVSYNC_LOG_IDENTITIES) or debug logging on; else nothing."""
        if always or self.debug_enabled():
            return {"identity": identity}
        return {}


def get_logger(name: str = "revsync") -> Logger:
    """The logger ``name`` ("revsync" or a child of it)."""
    return Logger(name)
