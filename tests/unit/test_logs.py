"""Every line a configured process writes to stderr is one JSON object, whoever logs it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import logging, threading, warnings
    import structlog
    from connector import logs

    logs.configure()
    structlog.get_logger("connector.x").info("Our own line.", cluster="c1")
    structlog.get_logger("connector.x").debug("Not shown without --debug.")
    pool = logging.getLogger("urllib3.connectionpool")
    pool.warning("Connection pool is full, discarding connection: %s. Size: %s", "h", 10)
    pool.info("Not shown: a library's routine detail.")
    logging.getLogger("kubernetes.client.rest").error("multi\\nline")
    warnings.warn("deprecated thing")
    try:
        1 / 0
    except ZeroDivisionError:
        logging.getLogger("grpc").exception("A library caught it.")
    thread = threading.Thread(target=lambda: 1 / 0, name="worker-1")
    thread.start()
    thread.join()
    raise RuntimeError("uncaught in main")
    """
)


def test_our_lines_libraries_warnings_and_uncaught_exceptions_are_all_json() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}\nall of stderr:\n{done.stderr}") from None
    got = [(r["level"], r.get("logger"), r["event"].splitlines()[0]) for r in records]
    assert got == [
        ("info", None, "Our own line."),
        (
            "warning",
            "urllib3.connectionpool",
            "Connection pool is full, discarding connection: h. Size: 10",
        ),
        ("error", "kubernetes.client.rest", "multi"),
        ("warning", "py.warnings", got[3][2]),
        ("error", "grpc", "A library caught it."),
        ("error", None, "A thread ended on an uncaught exception."),
        ("critical", None, "The process ended on an uncaught exception."),
    ]
    assert "UserWarning: deprecated thing" in records[3]["event"]
    assert "ZeroDivisionError" in records[4]["exception"]
    assert records[5]["thread"] == "worker-1"
    assert "ZeroDivisionError" in records[5]["exception"]
    assert "RuntimeError: uncaught in main" in records[6]["exception"]
    assert all(r["timestamp"].endswith("Z") for r in records)
