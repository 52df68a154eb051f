"""Logging setup: colour on a terminal, plain text or JSON lines; request and session ids on each line."""

import logging
import sys
import time
from typing import Any

import colorlog
import ujson

from core.context import request_id_var, session_id_var

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [req=%(request_id)s session=%(session_id)s] %(message)s"


class ContextFilter(logging.Filter):
    """Stamps each record with the ids of the request and session it belongs to."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        if not hasattr(record, "session_id"):
            record.session_id = session_id_var.get()
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "session_id": getattr(record, "session_id", "-"),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return ujson.dumps(entry, ensure_ascii=False, escape_forward_slashes=False)


def _formatter(log_format: str, stream: Any) -> logging.Formatter:
    if log_format == "auto":
        log_format = "color" if hasattr(stream, "isatty") and stream.isatty() else "text"
    if log_format == "json":
        return JSONFormatter()
    if log_format == "color":
        return colorlog.ColoredFormatter("%(log_color)s" + TEXT_FORMAT + "%(reset)s")
    return logging.Formatter(TEXT_FORMAT)


def setup_logging(level: str, log_format: str, stream: Any = None) -> None:
    """Replace the root handlers with one that writes to stderr in the chosen format."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_formatter(log_format, stream))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
