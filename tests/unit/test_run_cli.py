"""`api-connector run` refuses contradictory flags before touching any cluster."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli.main import main


@pytest.fixture(autouse=True)
def _switch_interval() -> Iterator[None]:
    """``run`` sets the interpreter's switch interval; the rest of the session keeps its own."""
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_stage_tls_without_a_stage_address_is_refused_with_a_clear_message(
    tmp_path: Path,
) -> None:
    result = CliRunner().invoke(
        main, ["run", "--kubeconfig", __file__, "--stages-tls-certs-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "--stages-tls-certs-dir needs a stage address" in result.output


def test_context_without_a_kubeconfig_is_refused() -> None:
    result = CliRunner().invoke(main, ["run", "--context", "elsewhere"])
    assert result.exit_code == 2
    assert "--context needs --kubeconfig" in result.output


def test_the_consumer_rate_limit_defaults_are_the_client_layers() -> None:
    from connector.cli.run import run
    from connector.kube.config import CONSUMER_BURST, CONSUMER_QPS

    defaults = {p.name: p.default for p in run.params}
    assert (defaults["consumer_qps"], defaults["consumer_burst"]) == (CONSUMER_QPS, CONSUMER_BURST)


def test_a_consumer_rate_limit_below_one_is_refused() -> None:
    result = CliRunner().invoke(main, ["run", "--consumer-qps", "0"])
    assert result.exit_code == 2
    assert "--consumer-qps" in result.output


def test_the_connector_hands_the_interpreter_over_sooner_than_pythons_default() -> None:
    from connector.cli.run import GIL_SWITCH_INTERVAL

    sys.setswitchinterval(0.005)
    CliRunner().invoke(main, ["run", "--context", "elsewhere"])  # set before any check
    assert sys.getswitchinterval() == GIL_SWITCH_INTERVAL < 0.005
