"""Logging, configured once in ``main``: JSON lines in production, console with ``--debug``.

Every line the process writes to stderr goes through the same renderer: the connector's own
structlog calls, the standard library loggers of the libraries it uses (urllib3, kubernetes,
grpc; their lines carry ``logger``), ``warnings.warn`` (logger ``py.warnings``), and
exceptions no code caught (in the main thread or any other). So a log pipeline that parses
JSON never meets a line it cannot read.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType

import structlog

log = structlog.get_logger(__name__)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that configuring again replaces it and leaves other handlers (a test
    runner's capture) alone."""


def configure(
    *, debug: bool = False, json_output: bool | None = None, level: int | None = None
) -> None:
    """Configure structlog and the standard library logging for the whole process.

    ``json_output`` defaults to JSON unless ``debug`` is set; ``level`` defaults to DEBUG
    with ``debug`` and INFO otherwise. Libraries' own loggers log from WARNING up (INFO up
    with ``debug``), never below ``level``. Calling it again reconfigures.
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
        # One write per line (PrintLogger writes the newline separately), so a line never
        # interleaves with one the standard library's handler writes from another thread.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        # Not cached: a command may reconfigure (the demo turns routine logs down).
        cache_logger_on_first_use=False,
    )
    _route_standard_logging(processors, renderer, level=level, debug=debug)
    _route_uncaught_exceptions()


def _route_standard_logging(
    processors: list[structlog.typing.Processor],
    renderer: structlog.typing.Processor,
    *,
    level: int,
    debug: bool,
) -> None:
    handler = _Handler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *processors],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries log routine details at INFO and below (urllib3: every connection it opens);
    # only their warnings and errors are the operator's business, unless debugging.
    root.setLevel(max(level, logging.INFO if debug else logging.WARNING))
    logging.captureWarnings(True)


def _route_uncaught_exceptions() -> None:
    def main_thread_hook(
        exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        log.critical("The process ended on an uncaught exception.", exc_info=(exc_type, exc, tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return
        log.error(
            "A thread ended on an uncaught exception.",
            thread=args.thread.name if args.thread is not None else "",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = main_thread_hook
    threading.excepthook = thread_hook
