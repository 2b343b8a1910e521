"""Errors a stage raises for input it cannot work with.

    StageError
    └── InvalidInputError   bad input; gRPC INVALID_ARGUMENT, a function Fatal result

Adapters (gRPC servicer, Crossplane function) translate these; nothing else escapes a stage
as an exception.
"""

from __future__ import annotations


class StageError(Exception):
    """Base class of the errors a stage raises on purpose."""


class InvalidInputError(StageError):
    """The input is malformed. ``field`` names the offending field, e.g. ``consumer.metadata``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
