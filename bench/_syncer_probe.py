"""The memory of one object syncer holding N bound objects, without API servers.

``scale.py`` runs this as its own process when bringing real clusters to 100,000 objects
would take longer than the benchmark may (each object costs three writes; on a shared
2-core machine, ~30 objects/s). What runs is the connector's real ``ObjectSyncer`` (its two
informers with their transforms, work queue, workers, the in-process object-syncer stage),
on clients that serve lists from memory:

- the objects are copies of a real bound object and its real twin as the API servers
  served them (``managedFields`` and all), read by ``scale.py`` from its clusters, each
  with its own name, uid and resourceVersion and the twin the stage wants for it (so
  every object is in sync); each copy is decoded from JSON on its own, as a list page is,
  so that it holds its own strings;
- lists hand them out page by page through the informer's transform, as
  ``KubeClient.list`` does; watches stay open and idle; any write is counted (and
  refused): an object in sync needs none.

Printed (JSON): VmRSS before anything was built (imports done) and once every object was
reconciled once, the reconciles, the writes attempted, and how long one full cyclic garbage
collection then takes (the heap settled at start as ``api-connector run`` settles it). What
it leaves out: the rest of the connector (its floor is measured separately, with the real
process) and the API requests' own buffers.

Run: ``python bench/_syncer_probe.py TEMPLATES.json N``.
"""

from __future__ import annotations

import gc
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from connector.cli.run import settle_heap
from connector.controllers.sync_controller import ObjectSyncer, SyncSpec
from connector.kube.errors import KubeError
from connector.runtime.events import EventRecorder
from connector.stages import InProcessStages
from functions.binder.types import BoundResource
from functions.object_syncer.logic import desired_twin

Object = dict[str, Any]
PAGE = 500


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class IdleStream:
    """A watch that stays open, silent, until closed."""

    def __init__(self) -> None:
        self._closed = threading.Event()
        self.idle_expired = False
        self.closed = False

    def open(self) -> bool:
        return True

    def __iter__(self) -> Iterator[Any]:
        self._closed.wait()
        return iter(())

    def __enter__(self) -> IdleStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True
        self._closed.set()


class MemoryClient:
    """What the syncer uses of a KubeClient, serving ``items()`` as its only list."""

    def __init__(self, name: str, items: Callable[[], Iterator[Object]]) -> None:
        self.name = name
        self.server = f"memory://{name}"
        self._items = items
        self.writes = 0
        self.listed = threading.Event()

    def reserve_connections(self, count: int) -> None:
        pass

    def release_connections(self, count: int) -> None:
        pass

    def list(
        self,
        res: Any,
        namespace: str | None = None,
        label_selector: str | None = None,
        *,
        transform: Callable[[Object], Object] | None = None,
        **_: Any,
    ) -> tuple[list[Object], str]:
        out: list[Object] = []
        for item in self._items():
            out.append(transform(item) if transform is not None else item)
        self.listed.set()
        return out, "1"

    def watch(self, *_: Any, **__: Any) -> IdleStream:
        return IdleStream()

    def get(self, *_: Any, **__: Any) -> Object:
        raise KubeError("The probe serves lists only.", status=500, reason="Probe")

    def _write(self, *_: Any, **__: Any) -> Object:
        self.writes += 1
        raise KubeError("The probe refuses writes.", status=500, reason="Probe")

    create = apply = apply_status = update = update_status = patch = delete = _write


def copies(template: Object, n: int, make: Callable[[Object, int], Object]) -> Iterator[Object]:
    """``n`` objects made from ``template``, each decoded from its own JSON text."""
    for i in range(n):
        yield json.loads(json.dumps(make(template, i)))


def main() -> None:
    templates = json.loads(Path(sys.argv[1]).read_text())
    n = int(sys.argv[2])
    settle_heap()
    floor = rss_mib()
    consumer_tpl, twin_tpl = templates["consumer"], templates["twin"]
    cluster = templates["consumer_cluster"]
    bound = BoundResource(**templates["resource"])

    def consumer_object(tpl: Object, i: int) -> Object:
        obj = dict(tpl)
        meta = dict(tpl["metadata"])
        uid = str(uuid.UUID(int=(1 << 96) + i))  # made again for its twin, never kept
        meta.update(name=f"scale-{i}", uid=uid, resourceVersion=str(10_000_000 + i))
        obj["metadata"] = meta
        return obj

    def twin_object(tpl: Object, i: int) -> Object:
        want = desired_twin(consumer_object(consumer_tpl, i), consumer_cluster=cluster)
        obj = dict(tpl)
        meta = dict(tpl["metadata"])
        meta.update(
            name=f"scale-{i}",
            uid=str(uuid.UUID(int=(2 << 96) + i)),
            resourceVersion=str(20_000_000 + i),
            labels=want["metadata"].get("labels", {}),
            annotations=want["metadata"].get("annotations", {}),
        )
        obj["metadata"] = meta
        obj["spec"] = {**tpl.get("spec", {}), **want.get("spec", {})}
        return obj

    provider = MemoryClient("provider", lambda: copies(twin_tpl, n, twin_object))

    def consumer_items() -> Iterator[Object]:
        # After the twins: a reconcile before the provider cache has listed reads twins
        # live, which the probe does not serve.
        provider.listed.wait()
        return copies(consumer_tpl, n, consumer_object)

    consumer = MemoryClient("consumer", consumer_items)
    stages = InProcessStages()
    reconciles = 0
    lock = threading.Lock()
    sync = stages.sync

    def counting_sync(req: Any) -> Any:
        nonlocal reconciles
        with lock:
            reconciles += 1
        return sync(req)

    stages.sync = counting_sync  # type: ignore[method-assign]
    spec = SyncSpec(
        connection="probe",
        resource=bound,
        namespaces=frozenset({consumer_tpl["metadata"]["namespace"]}),
        provider=provider,  # type: ignore[arg-type]
    )
    syncer = ObjectSyncer(
        spec,
        consumer=consumer,  # type: ignore[arg-type]
        stages=stages,
        recorder=EventRecorder(lambda _ns, _event: None),
        consumer_cluster=cluster,
        resync_period=3600.0,
        workers=4,
    )
    started = time.monotonic()
    syncer.start()
    while reconciles < n or len(syncer.controller.queue) > 0:
        time.sleep(0.2)
        if time.monotonic() - started > 1800:
            raise SystemExit(f"only {reconciles} of {n} reconciled in 30 min")
    took = time.monotonic() - started
    gc.collect()
    rss = rss_mib()
    collecting = time.perf_counter()
    gc.collect()
    full_collection_ms = (time.perf_counter() - collecting) * 1000
    syncer.stop()
    print(
        json.dumps(
            {
                "objects": n,
                "rss_mib_before": round(floor, 1),
                "rss_mib": round(rss, 1),
                "reconciles": reconciles,
                "reconcile_seconds": round(took, 1),
                "writes_attempted": consumer.writes + provider.writes,
                "full_collection_ms": round(full_collection_ms, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
