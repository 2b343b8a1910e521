"""Serve the function: ``python -m function.main --tls-certs-dir DIR`` (or ``--insecure``).

The standard flags of Crossplane's Python SDK: ``--address`` (default 0.0.0.0:9443),
``--tls-certs-dir`` (tls.crt, tls.key and ca.crt; callers must present a certificate signed
by ca.crt), ``--insecure``, ``--debug``.
"""

from __future__ import annotations

from typing import Any

import click
from crossplane.function import cli as sdkcli

from function import fn


@click.command()
@sdkcli.standard_options
def cli(**kwargs: Any) -> None:
    sdkcli.run(fn.FunctionRunner(), **kwargs)


if __name__ == "__main__":
    cli()
