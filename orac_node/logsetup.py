"""Log output: readable lines for people, or one JSON object per line for collectors."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the fields a log pipeline indexes."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as JSON."""
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "INFO", *, json_format: bool = False) -> None:
    """Configure the root logger once for the process (stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        formatter.converter = time.localtime
        handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # aiomqtt/paho chatter is only useful when debugging the connection itself.
    logging.getLogger("orac_node.mqtt").setLevel(max(logging.getLevelName(level), logging.ERROR))
    # pywhispercpp logs two INFO lines per decode; our final's log line says more.
    logging.getLogger("pywhispercpp").setLevel(max(logging.getLevelName(level), logging.WARNING))
