"""Child processes that never outlive us.

Each child gets its own session (so a Ctrl-C in the terminal reaches only us, and we stop
children in order) and, on Linux, a parent-death signal: the kernel SIGKILLs it when its
parent dies, even if the parent is SIGKILLed and runs no cleanup.

The kernel sends the parent-death signal when the *thread* that forked the child exits, not
the process. Children are therefore always forked from one long-lived daemon thread, so that
starting a cluster from a short-lived worker thread does not kill it when the worker ends.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1

# Resolved once in the parent: the code that runs between fork and exec must not load
# libraries or take locks that another thread might hold.
_prctl: Callable[..., int] | None = None
if sys.platform == "linux":
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _prctl = _libc.prctl


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    prctl = _prctl

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl; then no signal will ever come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def _popen(
    argv: Sequence[str], log_path: Path, cwd: Path, env: Mapping[str, str] | None
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509 - see module docstring
        )


_Request = tuple[
    "concurrent.futures.Future[subprocess.Popen[bytes]]",
    Sequence[str],
    Path,
    Path,
    Mapping[str, str] | None,
]
_requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
_spawner: list[threading.Thread] = []
_spawner_lock = threading.Lock()


def _serve_spawn_requests() -> None:
    while True:
        future, argv, log_path, cwd, env = _requests.get()
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(_popen(argv, log_path, cwd, env))
        except BaseException as e:
            future.set_exception(e)


def spawn(
    argv: Sequence[str], *, log_path: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log_path``; see the module doc.

    ``env`` adds to (or overrides) this process's environment.
    """
    with _spawner_lock:
        if not _spawner or not _spawner[0].is_alive():
            thread = threading.Thread(
                target=_serve_spawn_requests, name="envtest-spawner", daemon=True
            )
            thread.start()
            _spawner[:] = [thread]
    future: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
    _requests.put((future, argv, log_path, cwd, env))
    try:
        return future.result(timeout=60)
    except TimeoutError:
        # Raised as an OSError to the caller; a process that starts after all is not ours.
        if not future.cancel():
            future.add_done_callback(_kill_late_process)
        raise


def _kill_late_process(future: concurrent.futures.Future[subprocess.Popen[bytes]]) -> None:
    if not future.cancelled() and future.exception() is None:
        terminate(future.result(), timeout=5)


def terminate(proc: subprocess.Popen[Any], *, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL and reap. Never raises."""
    if proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        # If it survives SIGKILL (D state), nothing more a user-space parent can do.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    except OSError:
        pass


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie counts as gone (PID 1 may never reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if sys.platform == "linux":
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # Field 3, after the parenthesised command name which may itself contain spaces.
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def pid_cmdline(pid: int) -> list[str]:
    """The command line of ``pid``, or an empty list if unknown."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def wait_pid_gone(pid: int, *, timeout: float) -> bool:
    """Wait until ``pid`` no longer runs; False if it still runs after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def wait_ready(
    proc: subprocess.Popen[bytes],
    *,
    role: str,
    ready: Callable[[], bool],
    log_path: Path,
    step: str,
    deadline: float,
    timeout: float,
    cancelled: Callable[[], bool] = lambda: False,
    last_answer: Callable[[], str] = lambda: "",
    interval: float = 0.2,
) -> None:
    """Poll ``ready()`` until it is true while ``proc`` runs.

    Raises:
        ClusterStartError: ``proc`` exited, ``deadline`` (of a ``timeout``-second start)
            passed, or ``cancelled()``; the message names ``step`` and shows the tail of
            ``log_path`` (and ``last_answer()``, the last reason ``ready`` was false).
    """
    from connector.envtest._errors import ClusterStartError

    while True:
        if cancelled():
            raise ClusterStartError(step, "cancelled: it is being stopped")
        code = proc.poll()
        if code is not None:
            raise ClusterStartError(
                step, f"{role} exited with code {code} before it was ready", log_path=log_path
            )
        if ready():
            return
        if time.monotonic() >= deadline:
            last = last_answer()
            raise ClusterStartError(
                step,
                f"{role} not ready within the start-up timeout of {timeout:.0f} s"
                + (f" (last answer: {last})" if last else ""),
                log_path=log_path,
            )
        time.sleep(interval)
