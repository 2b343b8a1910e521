"""``python -m connector.envtest``: the ``clusters`` commands; ``up --detach`` runs this."""

from __future__ import annotations

from connector import logs
from connector.envtest.cli import clusters

logs.configure()
clusters(prog_name="api-connector clusters")
