"""The latency floor: the smallest relay written with the connector's client library.

An Informer whose handler queues the key, a WorkQueue, ``CONNECTOR_WORKERS`` workers, one
server-side apply per change: it copies ``spec`` (consumer → provider) or ``status``
(provider → consumer) of every NopResource in one namespace; with ``--twin``, the whole twin
the object-syncer stage builds (origin labels and annotations), as the connector writes it.
``sync_latency.py`` runs it in its own process, as it runs the connector (``python
bench/_relay.py SOURCE TARGET NS PART``, kubeconfig paths; it prints ``synced`` once its cache
has listed and runs until SIGTERM), or in the benchmark's process with the connector
(``--in-process``, ``--trace``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _harness import CONNECTOR_WORKERS, NOP, BenchError

from connector import logs
from connector.kube import KubeClient, client_from_kubeconfig_file
from connector.runtime import Informer, WorkQueue, run_workers
from functions.common.clock import now_rfc3339
from functions.object_syncer.logic import desired_twin

RELAY_MANAGER = "bench-relay"
#: The consumer cluster the twin floor (``twin=True``) names in its twins' origin labels.
RELAY_CLUSTER = "bench-relay"
#: What the relay prints once its cache has listed.
SYNCED = "synced"


@contextlib.contextmanager
def relay(
    source: KubeClient,
    target: KubeClient,
    namespace: str,
    part: str,
    *,
    workers: int = CONNECTOR_WORKERS,
    write_back: bool = False,
    twin: bool = False,
) -> Iterator[None]:
    """Copy ``part`` ("spec" or "status") of every NopResource in ``namespace`` from
    ``source`` to ``target``: Informer → WorkQueue → workers → server-side apply.

    ``write_back`` (spec only): then also write a condition into the source object's
    status, as the connector writes ``APIBound`` after each twin write: a floor that does
    the API work a consumer must see, not only the copy. ``twin`` (spec only): write the
    twin the object-syncer stage builds from the object (its origin labels and annotations
    are fields the provider's server-side apply tracks), not only its spec."""
    queue: WorkQueue[tuple[str, str]] = WorkQueue(name=f"relay-{part}")

    def on_event(event: str, obj: dict[str, Any]) -> None:
        if event != "DELETED":
            queue.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))

    informer = Informer(source, NOP, namespace=namespace, handler=on_event, name=f"relay-{part}")

    #: Write-back: the generation each object was last copied at (its status write comes
    #: back through the watch, and must not be copied again).
    copied: dict[tuple[str, str], object] = {}

    def copy_one(key: tuple[str, str]) -> None:
        obj = informer.get(key[0], key[1])
        if obj is None or part not in obj:
            return
        generation = obj["metadata"].get("generation")
        if write_back and copied.get(key) == generation:
            return
        out = (
            desired_twin(obj, consumer_cluster=RELAY_CLUSTER)
            if twin
            else {
                "apiVersion": NOP.api_version,
                "kind": NOP.kind,
                "metadata": {"name": key[1], "namespace": key[0]},
                part: obj[part],
            }
        )
        if part == "spec":
            target.apply(NOP, out, RELAY_MANAGER)
            if write_back:
                source.apply_status(NOP, relayed(obj), RELAY_MANAGER)
                copied[key] = generation
        else:
            target.apply_status(NOP, out, RELAY_MANAGER)

    informer.start()
    pool = run_workers(queue, workers, copy_one, f"relay-{part}")
    try:
        if not informer.wait_synced(30):
            raise BenchError("The relay's informer did not sync.")
        yield
    finally:
        pool.stop()
        informer.stop()


def relayed(obj: dict[str, Any]) -> dict[str, Any]:
    """The status the write-back floor writes on ``obj`` once its spec was copied."""
    meta = obj["metadata"]
    condition = {
        "type": "Relayed",
        "status": "True",
        "reason": "Copied",
        "message": f"Copied at generation {meta.get('generation')}.",
        "observedGeneration": meta.get("generation"),
        "lastTransitionTime": now_rfc3339(),
    }
    return {
        "apiVersion": NOP.api_version,
        "kind": NOP.kind,
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "status": {"conditions": [condition]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="kubeconfig of the cluster to copy from")
    parser.add_argument("target", type=Path, help="kubeconfig of the cluster to copy to")
    parser.add_argument("namespace")
    parser.add_argument("part", choices=["spec", "status"])
    parser.add_argument("--write-back", action="store_true", help="see relay()")
    parser.add_argument("--twin", action="store_true", help="see relay()")
    args = parser.parse_args()
    logs.configure(level=logging.ERROR)  # as in the benchmark: stdout says only "synced"
    parent = os.getppid()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Clients built as the connector builds its provider clients (same QPS and burst).
    source = client_from_kubeconfig_file(args.source, name="relay-source")
    target = client_from_kubeconfig_file(args.target, name="relay-target")
    with relay(
        source, target, args.namespace, args.part, write_back=args.write_back, twin=args.twin
    ):
        print(SYNCED, flush=True)
        # Until told to stop, or until the benchmark that started it is gone (killed).
        while not stop.wait(1.0) and os.getppid() == parent:
            pass


if __name__ == "__main__":
    main()
