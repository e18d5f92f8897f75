"""The example nodes' log output: revsync's lines through stdlib ``logging``.

The nodes do not configure structlog, so revsync's events (the library's and the
node's own, loggers "revsync" and "revsync.api") reach the standard logger "revsync"
(revsync._logging) and are written here as text or as one JSON object a line.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

FORMATS = ("console", "json")
_HANDLER = "revsync.services"
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "event",
}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, event, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or record.getMessage(),
        }
        line.update((k, v) for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str, fmt: str = "console") -> None:
    """Write the "revsync" logger's lines from ``level`` (debug, info, ...) up to
    stderr, as text or JSON; calling it again replaces the earlier set-up."""
    log = logging.getLogger("revsync")
    for handler in [h for h in log.handlers if h.get_name() == _HANDLER]:
        log.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.set_name(_HANDLER)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(level.upper())
    log.propagate = False  # written once, here, whatever the root logger does
