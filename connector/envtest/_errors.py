"""The errors of the envtest package (the tree is drawn in the package docstring)."""

from __future__ import annotations

from pathlib import Path


class EnvtestError(Exception):
    """Base of every error the envtest package raises on purpose."""


class BinariesError(EnvtestError):
    """A tool (kube-apiserver, etcd, Crossplane, ...) could not be found or built."""


class ClusterStartError(EnvtestError):
    """A cluster failed to start; whatever had already started has been stopped.

    ``step`` names what failed (e.g. ``start kube-apiserver for cluster 'consumer'``) and
    ``log_path`` is the log of the process involved, if any; the message carries its tail.
    """

    def __init__(self, step: str, reason: str, *, log_path: Path | None = None) -> None:
        self.step = step
        self.reason = reason
        self.log_path = log_path
        message = f"{step} failed: {reason}"
        if log_path is not None:
            message += "\n" + log_excerpt(log_path)
        super().__init__(message)


def log_excerpt(path: Path, *, lines: int = 20) -> str:
    """The last ``lines`` lines of a log, headed by its path, for error messages.

    Lines starting with ``Error:`` (how the Kubernetes commands report a fatal error before
    printing their usage) are shown first even when they are further up, because a long
    usage text would otherwise push the one line that matters out of the tail.
    """
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(log {path} unreadable: {e})"
    all_lines = text.splitlines()
    tail = all_lines[-lines:]
    early_errors = [line for line in all_lines[:-lines] if line.startswith("Error:")][-3:]
    body = [*early_errors, *(["..."] if early_errors else []), *tail]
    if not body:
        return f"(log {path} is empty)"
    indented = "\n".join("  " + line for line in body)
    return f"last {len(tail)} lines of {path}:\n{indented}"
