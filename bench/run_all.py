"""Run every benchmark, one after the other, and merge their figures into one JSON report.

Each benchmark runs as its own process (its own clusters, its own connector), in sequence,
because they measure time and memory on the same cores. A benchmark that fails is reported
as failed in the summary; the others still run. The merged report is
``_out/bench/report.json``; every benchmark also leaves its own ``_out/bench/<name>.json``.

Run: ``.venv/bin/python bench/run_all.py [--quick] [--only NAME ...]`` (or ``hack/bench.sh``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _harness import OUT, machine

HERE = Path(__file__).resolve().parent

#: name → the script and its arguments (``--quick`` is added when asked).
BENCHES: dict[str, list[str]] = {
    "stages": ["stages_bench.py", "--json", str(OUT / "stages.json")],
    "sync_latency": ["sync_latency.py"],
    "bulk": ["bulk.py"],
    "scale": ["scale.py"],
}
#: Each benchmark stops by itself well before this; the limit only guards a hung run.
TIMEOUT_SECONDS = 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the shortened variant of each")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHES), help="run only these")
    args = parser.parse_args()
    names = args.only or list(BENCHES)

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "report.json"
    previous: dict[str, Any] = {}
    if args.only and path.exists():
        # A partial rerun updates those benchmarks' entries and keeps the others.
        previous = json.loads(path.read_text()).get("benches", {})
    report: dict[str, Any] = {
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "benches": {k: v for k, v in previous.items() if k not in names},
    }
    for name in names:
        script, *rest = BENCHES[name]
        result_path = OUT / f"{name}.json"
        result_path.unlink(missing_ok=True)
        command = [sys.executable, str(HERE / script), *rest, *(["--quick"] if args.quick else [])]
        print(f"==> {name}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        try:
            code = subprocess.run(command, timeout=TIMEOUT_SECONDS, check=False).returncode
        except subprocess.TimeoutExpired:
            code = -1
        entry: dict[str, Any] = {"exit_code": code, "seconds": round(time.monotonic() - started)}
        if result_path.exists():
            entry.update(json.loads(result_path.read_text()))
        else:
            entry["error"] = "The benchmark wrote no figures; see its output above."
        entry["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        report["benches"][name] = entry
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path.write_text(json.dumps(report, indent=2) + "\n")
    print_summary(report)
    print(f"report: {path}")


def print_summary(report: dict[str, Any]) -> None:
    rows = [("bench", "figure", "target", "measured", "floor", "ratio", "result")]
    for name, entry in report["benches"].items():
        if "figures" not in entry:
            rows.append((name, "(no figures)", "", "", "", "", "ERROR"))
            continue
        for f in entry["figures"]:
            verdict = {True: "PASS", False: "FAIL", None: "-"}[f["passed"]]
            rows.append(
                (
                    name,
                    f["name"],
                    f["target"],
                    f"{f['measured']:.2f} {f['unit']}",
                    "-" if f["floor"] is None else f"{f['floor']:.2f}",
                    "-" if f["ratio"] is None else f"{f['ratio']:.2f}",
                    verdict,
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
