"""Logging for every careflow process: readable lines by default, or JSON lines (one object per line,
with the current trace and span ids) for a log pipeline: CAREFLOW_LOG_FORMAT=json."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from opentelemetry import trace

from careflow.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The dev Temporal UI's codec credential travels in the path (api/routes/codec.py); the API strips it
# before anything logs the path, and this filter catches any line that still carries one.
_CODEC_UI_CREDENTIAL = re.compile(r"/codec/ui/[^/\s\"?]+/")


class RedactCodecCredential(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/codec/ui/" in message:
            record.msg, record.args = _CODEC_UI_CREDENTIAL.sub("/codec/ui/***/", message), None
        return True


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, trace_id/span_id when in a span."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: Settings, level: int = logging.INFO) -> None:
    """Root handler for the process; uvicorn's loggers propagate to it (run uvicorn with log_config=None)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLinesFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactCodecCredential())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
