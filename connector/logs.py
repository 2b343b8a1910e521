"""Logging, configured once in ``main``: JSON lines in production, console with ``--debug``."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(
    *, debug: bool = False, json_output: bool | None = None, level: int | None = None
) -> None:
    """Configure structlog and the standard library logging for the whole process.

    ``json_output`` defaults to JSON unless ``debug`` is set; ``level`` defaults to DEBUG
    with ``debug`` and INFO otherwise. Calling it again reconfigures.
    """
    use_json = (not debug) if json_output is None else json_output
    if level is None:
        level = logging.DEBUG if debug else logging.INFO
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        # Not cached: a command may reconfigure (the demo turns routine logs down).
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING if not debug else logging.INFO, stream=sys.stderr)
