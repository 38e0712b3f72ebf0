"""The app's log lines: text for a person at a terminal, or one JSON object per line (``log_format = "json"``) for a
server's log pipeline, with each line's structured fields (a job's id, state and trace id) as keys of their own; a line
written while a request that submitted a job is being served carries that job's trace id too."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Dict

from app.tracing import current_trace_id

STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
"""A record's own attributes: anything else on it came as ``extra=`` and is a field of the line."""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: Dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + ".%03dZ" % record.msecs,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({key: value for key, value in vars(record).items() if key not in STANDARD})
        if "trace_id" not in line:  # written inside a request that submitted a job: that job's trace
            trace_id = current_trace_id()
            if trace_id is not None:
                line["trace_id"] = trace_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(log_format: str) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
