"""Structured logs: one JSON object per line, with the record's extra fields.

Payload bodies and secrets are never logged: callers pass ids, names, statuses
and counts, and :func:`offload.security.redact.redact_headers` guards headers.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON text."""
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                body[key] = value
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(body, default=str).decode()


def configure(level: str = "info") -> None:
    """Send offload's logs to stderr as JSON lines at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("offload")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


_runs = logging.getLogger("offload.runs")


def log_run(run_id: str, function_id: str, status: str, *, attempt: int | None = None,
            correlation_id: str | None = None, step: str | None = None,
            error: dict[str, Any] | None = None, **extra: Any) -> None:
    """One line for a run's state change: ids, status, attempt, the step, the error's name.

    Payloads and error messages are never logged (they may hold user data or secrets);
    the error's *name* is. Runs being queued are logged at debug level only, so the
    ingest path pays nothing for it at the default level.
    """
    level = logging.DEBUG if status == "queued" and not attempt else logging.INFO
    if not _runs.isEnabledFor(level):
        return
    fields: dict[str, Any] = {"run_id": run_id, "function_id": function_id, "status": status}
    if attempt is not None:
        fields["attempt"] = attempt
    if correlation_id:
        fields["correlation_id"] = correlation_id
    if step:
        fields["step"] = step
    if error:
        fields["error"] = error.get("name")
    fields.update(extra)
    _runs.log(level, f"run {status}", extra=fields)
