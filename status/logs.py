"""Logging: JSON lines in production, readable lines in the demo; never PHI.

Log calls pass ids and timings in `extra=`; names, dates of birth, medication names and message
bodies are never logged. Third-party loggers that would print request bodies (twilio's HTTP
client logs form data at INFO) are held at WARNING.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, overload

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
QUIET_LOGGERS = (
    "twilio", "twilio.http_client", "aiogram.event", "httpx", "uvicorn.access", "alembic",
)  # fmt: skip
DROPPED = {"color_message"}
MAX_VALUE = 200  # characters of any one logged value; the rest is cut, never written
MAX_LINE = 1000  # characters of the message or the error line
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


@overload
def clip(value: str, limit: int = MAX_VALUE) -> str: ...
@overload
def clip(value: object, limit: int = MAX_VALUE) -> object: ...
def clip(value: object, limit: int = MAX_VALUE) -> object:
    """A value as it may be logged: control bytes replaced, at most `limit` characters."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = _CONTROL.sub("?", str(value))
    return text if len(text) <= limit else f"{text[:limit]}...[{len(text) - limit} more]"


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {
        k: clip(v)
        for k, v in record.__dict__.items()
        if k not in _STANDARD and k not in DROPPED and not k.startswith("_")
    }


def _error(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    assert record.exc_info is not None  # the formatters call this only when there is one
    return clip(formatter.formatException(record.exc_info).splitlines()[-1], MAX_LINE)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": clip(record.getMessage(), MAX_LINE),
            **_extras(record),
        }
        if record.exc_info:
            entry["error"] = _error(self, record)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items() if v is not None)
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{stamp} {record.levelname:<7} {record.name}: {clip(record.getMessage(), MAX_LINE)}"
        if record.exc_info:
            line += " | " + _error(self, record)
        return f"{line}  {extras}".rstrip()


def configure(fmt: str = "text", level: str = "INFO", stream: IO[str] | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Neither formatter writes the caller's file and line, thread or process: skip finding
    # them for every record (the logging docs' "Optimization"; ~20 % of an access log line).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
