"""``[logging] format = "json"``: one JSON object per line, for log shippers.

Each line holds ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``,
``message`` (formatted), the record's own fields (``extra=``: a node event's fields, see
zraft/node/events.py), and ``exc`` (the traceback) when there is one. A field whose name
would shadow one of those four is written as ``field_<name>``. Values JSON cannot hold are
written as their ``str``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

_RESERVED = frozenset({"time", "level", "logger", "message", "exc"})
# attributes every LogRecord has: anything else came from ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            out[f"field_{key}" if key in _RESERVED else key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=False)
