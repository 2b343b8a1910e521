"""The orchestrator's controllers, each split like kube-bind's konnector.

``*_controller.py`` wires informers, work queues and clients; ``*_reconcile.py`` holds the
logic, with every side effect passed in as a narrow callable so that unit tests pass plain
functions. A reconcile is keyed and level-based: it reads current state from caches, never
trusts the event that woke it, and writes nothing when nothing changed.
"""
