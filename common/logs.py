"""Logging set-up: one line per event (JSON by default), the camera id on every line of camera work,
credentials redacted from every message as a last line of defence."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from common.redaction import redact_text

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                event[key] = redact_text(value) if isinstance(value, str) else value
        if record.exc_info:
            event["error"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(event, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={redact_text(v) if isinstance(v, str) else v}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD_ATTRS and not k.startswith("_")
        )
        line = (f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {record.levelname:<7} "
                f"{record.name}: {redact_text(record.getMessage())}")
        if extras:
            line += f" [{extras}]"
        if record.exc_info:
            line += "\n" + redact_text(self.formatException(record.exc_info))
        return line


def setup_logging(level: str = "INFO", fmt: str = "json", stream=None) -> None:
    """Configure the root logger once per process; called by each service's entry point."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "werkzeug", "PIL", "h5py", "absl", "tensorflow"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


class _FieldsAdapter(logging.LoggerAdapter):
    """Adds fixed fields to every record and keeps the call's own `extra` fields too."""

    def process(self, msg, kwargs):
        kwargs["extra"] = {**self.extra, **(kwargs.get("extra") or {})}
        return msg, kwargs


def camera_logger(name: str, camera_id: str, **fields: Any) -> logging.LoggerAdapter:
    """A logger whose every line carries `camera` (and any other fixed fields)."""
    return _FieldsAdapter(logging.getLogger(name), {"camera": camera_id, **fields})
