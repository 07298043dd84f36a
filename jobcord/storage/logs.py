"""Process-wide structured logging (structlog): JSON in production, pretty in a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging"]


#: Libraries that log every call at INFO (an HTTP request, a credential lookup).
_CHATTY = ("httpx", "httpcore", "botocore", "boto3", "s3transfer", "urllib3", "asyncio")


def configure_logging(fmt: str = "json", level: str = "INFO") -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    # The bound context (request_id, app, job, attempt, worker, device while an attempt
    # runs) goes on every line, structlog's or the standard library's (a job's own logger).
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # one write a line
        # Module-level loggers bind once, not on every call (the hot path logs per job);
        # every process configures logging before its first log line.
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.getLevelName(level.upper()))
    for name in _CHATTY:  # quiet, but their warnings still show
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
