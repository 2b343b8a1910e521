"""The ``api-connector`` command line.

Each command group lives in its own module and is registered here; this file only wires.
"""

from __future__ import annotations

import click

from connector import logs


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Verbose, human-readable logs.")
def main(debug: bool) -> None:
    """An API connector for Crossplane: bind a provider control plane's APIs into this cluster."""
    logs.configure(debug=debug)


def _register() -> None:
    from connector.cli.demo import demo
    from connector.cli.install import install, uninstall
    from connector.cli.run import run
    from connector.cli.serve import serve
    from connector.envtest.cli import clusters

    main.add_command(clusters)
    main.add_command(install)
    main.add_command(demo)
    main.add_command(run)
    main.add_command(serve)
    main.add_command(uninstall)


_register()
