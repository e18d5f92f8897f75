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
from collections.abc import MutableMapping
from typing import Any

import structlog

# LogRecord's own attributes: an event field of the same name would clash in ``extra``.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}


def _to_stdlib(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The last processor: (args, kwargs) of the stdlib call."""
    kwargs: dict[str, Any] = {}
    for key in ("exc_info", "stack_info"):
        if key in event_dict:
            kwargs[key] = event_dict.pop(key)
    event = str(event_dict.pop("event", ""))
    fields = " ".join(f"{key}={value!r}" for key, value in event_dict.items())
    extra = {(f"revsync_{k}" if k in _RECORD_ATTRIBUTES else k): v for k, v in event_dict.items()}
    extra["event"] = event
    kwargs["extra"] = extra
    # No args: the message is never %-formatted, whatever a value contains.
    return (f"{event} {fields}" if fields else event,), kwargs


class Logger:
    """structlog's calling convention (``logger.info("revsync.event", key=value)``),
    routed at each call so that configuring structlog later still takes effect."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stdlib = structlog.wrap_logger(
            logging.getLogger(name),
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.filter_by_level,
                _to_stdlib,
            ],
            wrapper_class=structlog.stdlib.BoundLogger,
            context_class=dict,
            cache_logger_on_first_use=True,
        )

    def _target(self) -> Any:
        if structlog.is_configured():
            return structlog.get_logger(self.name)
        return self._stdlib

    def debug(self, event: str, **fields: Any) -> None:
        self._target().debug(event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._target().info(event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._target().warning(event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._target().error(event, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._target().exception(event, **fields)

    def debug_enabled(self) -> bool:
        """Whether debug lines are written (False when the pipeline cannot say)."""
        if not structlog.is_configured():
            return logging.getLogger(self.name).isEnabledFor(logging.DEBUG)
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
