"""`api-connector run` refuses contradictory flags before touching any cluster."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from connector.cli.main import main


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
