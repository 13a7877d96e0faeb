"""Log output: readable lines for people, or one JSON object per line for collectors.

The JSON formatter is the standard library's ``logging.Formatter`` plus a
``json.dumps``: the fields are few and fixed, so a dependency
(python-json-logger) would add nothing but its own configuration. Fields given
with ``extra=`` become keys of the object; the node's are ``device`` and
``session`` (:func:`orac_node.ingest.session.log_fields`), so a collector can
follow one satellite's session.

What never goes into a log record: audio (payloads are only ever measured, by
length) and the broker password (a ``SecretStr``; config errors are reported
without the offending values). tests/integration/test_logging.py greps a DEBUG
log for both.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from typing import TextIO

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
"""Attributes every LogRecord has; anything else on a record came from ``extra=``."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the fields a log pipeline indexes."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as JSON, its ``extra=`` fields as top-level keys."""
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


@functools.cache
def _log_stream() -> TextIO:
    """The log's own duplicate of stderr's file descriptor (one per process).

    pywhispercpp silences whisper.cpp by pointing fd 2 at /dev/null while it
    loads a model, in a worker thread; whatever the event loop logged meanwhile
    ("connected to ...") went to /dev/null too. A duplicate of fd 2 still
    reaches the terminal or the journal.
    """
    try:
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no real fd (e.g. captured in tests)
        return sys.stderr
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace")


def setup_logging(level: str = "INFO", *, json_format: bool = False) -> None:
    """Configure the root logger once for the process (stderr)."""
    handler = logging.StreamHandler(_log_stream())
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        formatter.converter = time.localtime
        handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # aiomqtt/paho chatter is only useful when debugging the connection itself.
    logging.getLogger("orac_node.paho").setLevel(max(logging.getLevelName(level), logging.ERROR))
    # pywhispercpp logs two INFO lines per decode; our final's log line says more.
    logging.getLogger("pywhispercpp").setLevel(max(logging.getLevelName(level), logging.WARNING))
