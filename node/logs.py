"""JSON-line logging. Records carry UIDs and states, never patient names or IDs."""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from .redact import scrub

__all__ = ["AUDIT_LOGGER", "audit", "configure_logging", "log"]


_FREE_TEXT_FIELDS = frozenset({"reason", "traceback", "error", "detail"})
"""Fields that may quote an exception's text: scrubbed of attribute values like messages."""


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage() if record.name.startswith("ainode") else scrub(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update({k: scrub(v) if k in _FREE_TEXT_FIELDS and isinstance(v, str) else v
                          for k, v in fields.items()})
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines.

    pynetdicom logs dataset contents at DEBUG level, so it is held at WARNING. Python
    warnings are captured into the log too; third-party messages (and tracebacks) are
    passed through :func:`node.redact.scrub`.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("pynetdicom", "highdicom", "pydicom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # warnings.warn (pydicom, highdicom) become scrubbed JSON records
    if _RESOURCE_TRACKER_QUIET not in sys.warnoptions:
        sys.warnoptions.append(_RESOURCE_TRACKER_QUIET)


_RESOURCE_TRACKER_QUIET = "ignore:resource_tracker:UserWarning"
"""multiprocessing's resource tracker is a process of its own, outside this log, started with
this interpreter's ``-W`` options. When a worker process killed at a stop left a semaphore, it
frees it at exit and would print a plain-text warning into the JSON stream; this keeps it quiet."""


def log(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """Log ``msg`` with structured ``fields`` (UIDs, states, counts: no patient data)."""
    logger.log(level, msg, extra={"fields": fields})


AUDIT_LOGGER = "ainode.audit"
"""The logger of audit records: one per association and one per delivery."""


def audit(event: str, **fields: Any) -> None:
    """One audit record (``"audit": event``): who sent what, when; never patient data or secrets.

    It names the process (``pid``): several listener processes of one node share a log.
    """
    logging.getLogger(AUDIT_LOGGER).info(event, extra={"fields": {"audit": event, "pid": os.getpid(), **fields}})
