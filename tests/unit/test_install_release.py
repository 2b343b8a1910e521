"""install's Helm side without a cluster: the chart, finding helm, helm's arguments, and
whether and how helm runs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from connector.helm import Helm, HelmError, Release, find_helm, tool_cache
from connector.install import ClusterAccess, InstallError, InstallOptions, find_chart
from connector.install.options import CHART_ANNOTATION
from connector.install.release import (
    ExistingRelease,
    carried_over,
    inspect_release,
    is_our_chart,
    plan_release,
)
from tests.support import NOP_BOUND

from . import assert_same

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "package" / "helm" / "api-connector"


# -- the chart ------------------------------------------------------------------------------


def test_default_chart_is_the_one_in_the_repository() -> None:
    chart, directory = find_chart(None, None)
    assert directory == CHART_DIR
    assert chart == str(directory)


def test_chart_version_must_match_a_local_chart() -> None:
    with pytest.raises(InstallError, match=r"--version 9\.9\.9: the chart in .* is version 0\."):
        find_chart(None, "9.9.9")


def test_chart_reference_is_passed_to_helm_as_is() -> None:
    assert find_chart("oci://registry.example.org/charts/api-connector", "1.2.3") == (
        "oci://registry.example.org/charts/api-connector",
        None,
    )


def test_chart_directory_without_chart_yaml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="no Chart.yaml"):
        find_chart(str(tmp_path), None)


# -- finding helm ---------------------------------------------------------------------------


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def no_helm_around(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty PATH and an empty tool cache; returns the cache's bin directory."""
    empty = tmp_path / "path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("API_CONNECTOR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "bin"


@dataclass(frozen=True)
class FindCase:
    reason: str
    #: Files to create, relative to the tmp dir (``path/`` is PATH, ``cache/bin/`` the cache).
    files: list[str]
    flag: str | None
    #: The path found, relative to the tmp dir.
    want: str


@pytest.mark.parametrize(
    "case",
    [
        FindCase("--helm wins over PATH", ["path/helm", "mine/helm"], "mine/helm", "mine/helm"),
        FindCase(
            "helm on PATH wins over the cache",
            ["path/helm", "cache/bin/helm-v3.19.0-0123456789ab/helm"],
            None,
            "path/helm",
        ),
        FindCase(
            "else the cached build of tools/build.sh",
            ["cache/bin/helm-v3.19.0-0123456789ab/helm"],
            None,
            "cache/bin/helm-v3.19.0-0123456789ab/helm",
        ),
        FindCase(
            "the newest cached version, compared as numbers",
            [
                "cache/bin/helm-v3.9.0-aaaaaaaaaaaa/helm",
                "cache/bin/helm-v3.19.0-bbbbbbbbbbbb/helm",
            ],
            None,
            "cache/bin/helm-v3.19.0-bbbbbbbbbbbb/helm",
        ),
        FindCase(
            "never a build still in progress",
            [
                "cache/bin/helm-v3.18.0-aaaaaaaaaaaa/helm",
                "cache/bin/helm-v3.19.0-bbbbbbbbbbbb.tmp.4242/helm",
            ],
            None,
            "cache/bin/helm-v3.18.0-aaaaaaaaaaaa/helm",
        ),
    ],
    ids=lambda c: c.reason,
)
def test_find_helm(case: FindCase, tmp_path: Path, no_helm_around: Path) -> None:
    for name in case.files:
        executable(tmp_path / name)
    flag = str(tmp_path / case.flag) if case.flag else None
    assert find_helm(flag) == str(tmp_path / case.want), case.reason


def test_without_helm_the_message_says_how_to_get_it(no_helm_around: Path) -> None:
    with pytest.raises(HelmError) as raised:
        find_helm(None)
    message = str(raised.value)
    assert message.startswith("helm is not on PATH")
    assert str(no_helm_around / "helm-*" / "helm") in message
    assert "pass --helm /path/to/helm" in message
    assert "run tools/build.sh helm in a checkout" in message


def test_an_explicit_helm_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    (tmp_path / "helm").write_text("")
    with pytest.raises(HelmError, match="--helm .*: no executable file there"):
        find_helm(str(tmp_path / "helm"))


def test_the_tool_cache_is_where_tools_build_sh_puts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_CONNECTOR_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/x")
    assert tool_cache() == Path("/x/api-connector/bin")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert tool_cache() == Path(os.path.expanduser("~/.cache/api-connector/bin"))
    script = (ROOT / "tools" / "build.sh").read_text()
    assert (
        "cache_root=${API_CONNECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/api-connector}" in script
    )
    assert 'bin_root="$cache_root/bin"' in script


# -- helm's arguments -----------------------------------------------------------------------


@dataclass
class FakeHelm:
    """Answers helm commands from canned outputs and records every argv."""

    release: dict[str, Any] | None = None
    values: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(
        default_factory=lambda: {"annotations": {CHART_ANNOTATION: "true"}}
    )
    fail: str = ""
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        if self.fail and self.fail in argv:
            return subprocess.CompletedProcess(argv, 1, "", "Error: boom\nsecond line")
        if argv[1] == "list":
            return subprocess.CompletedProcess(
                argv, 0, json.dumps([self.release] if self.release else []), ""
            )
        if argv[1:3] == ["get", "values"]:
            return subprocess.CompletedProcess(argv, 0, json.dumps(self.values), "")
        if argv[1:3] == ["get", "metadata"]:
            return subprocess.CompletedProcess(argv, 0, json.dumps(self.metadata), "")
        return subprocess.CompletedProcess(argv, 0, "", "")


def helm_with(fake: FakeHelm) -> Helm:
    return Helm("helm", kubeconfig=Path("/k"), context="ctx", run=fake, timeout=60)


def test_helm_install_passes_cluster_values_file_and_skips_crds() -> None:
    fake = FakeHelm()
    helm_with(fake).install("api-connector", "/chart", "upbound-system", {"a": 1})
    (argv,) = fake.calls
    assert argv[:4] == ["helm", "install", "api-connector", "/chart"]
    assert argv[-4:] == ["--kubeconfig", "/k", "--kube-context", "ctx"]
    assert "--skip-crds" in argv
    assert argv[argv.index("--namespace") + 1] == "upbound-system"
    assert "--values" in argv


def test_helm_upgrade_installs_if_missing_and_passes_the_version() -> None:
    fake = FakeHelm()
    helm_with(fake).install(
        "api-connector", "oci://x/c", "ns", {}, upgrade=True, version="1.0.0", skip_crds=False
    )
    (argv,) = fake.calls
    assert argv[1:3] == ["upgrade", "--install"]
    assert argv[argv.index("--version") + 1] == "1.0.0"
    assert "--skip-crds" not in argv


def test_helm_failure_carries_the_end_of_its_output() -> None:
    fake = FakeHelm(fail="uninstall")
    with pytest.raises(
        HelmError, match="helm uninstall api-connector failed: Error: boom second line"
    ):
        helm_with(fake).uninstall("api-connector", "ns")


def test_helm_release_lists_all_states_and_matches_the_name_exactly() -> None:
    fake = FakeHelm(
        release={
            "name": "api-connector",
            "namespace": "ns",
            "status": "failed",
            "chart": "api-connector-0.1.0",
            "revision": "3",
        }
    )
    release = helm_with(fake).release("api-connector", "ns")
    assert release is not None
    assert (release.status, release.revision) == ("failed", "3")
    argv = fake.calls[0]
    assert "--all" in argv
    assert argv[argv.index("--filter") + 1] == "^api-connector$"


# -- whether and how helm runs --------------------------------------------------------------

COMPUTED = {
    "consumerClusterDisplayName": "team-a",
    "pollInterval": "10m",
    "boundAPIs": [{"group": "nop.example.org", "resources": ["nopresources"]}],
}
DEPLOYED = {"name": "api-connector", "status": "deployed", "chart": "api-connector-0.1.0"}


def options(*, upgrade: bool = False, values: dict[str, Any] | None = None) -> InstallOptions:
    return InstallOptions(
        consumer=ClusterAccess(kubeconfig=Path("/k")),
        provider=ClusterAccess(kubeconfig=Path("/p")),
        upgrade=upgrade,
        values=values or {},
    )


def existing(release: dict[str, Any] | None, values: dict[str, Any], *, ours: bool = True) -> Any:
    if release is None:
        return None
    return ExistingRelease(
        release=Release(
            name=release["name"],
            namespace="upbound-system",
            status=release["status"],
            chart=release["chart"],
            revision="1",
        ),
        values=values,
        ours=ours,
    )


@dataclass(frozen=True)
class ReleaseCase:
    reason: str
    opts: InstallOptions
    release: dict[str, Any] | None
    current: dict[str, Any]
    want_run: bool
    want_values: dict[str, Any]


@pytest.mark.parametrize(
    "case",
    [
        ReleaseCase("no release: install", options(), None, {}, True, COMPUTED),
        ReleaseCase(
            "same values, deployed: leave it (a rerun resumes)",
            options(),
            DEPLOYED,
            COMPUTED,
            False,
            COMPUTED,
        ),
        ReleaseCase(
            "--set values go over the computed ones",
            options(values={"workers": 2, "pollInterval": "1h"}),
            None,
            {},
            True,
            {**COMPUTED, "workers": 2, "pollInterval": "1h"},
        ),
        ReleaseCase(
            "upgrade keeps APIs another connection bound",
            options(upgrade=True),
            DEPLOYED,
            {**COMPUTED, "boundAPIs": [{"group": "a.org", "resources": ["xs"]}]},
            True,
            {
                **COMPUTED,
                "boundAPIs": [
                    {"group": "a.org", "resources": ["xs"]},
                    {"group": "nop.example.org", "resources": ["nopresources"]},
                ],
            },
        ),
        ReleaseCase(
            "upgrade with boundAPIs given explicitly replaces them",
            options(upgrade=True, values={"boundAPIs": []}),
            DEPLOYED,
            {**COMPUTED, "boundAPIs": [{"group": "a.org", "resources": ["xs"]}]},
            True,
            {**COMPUTED, "boundAPIs": []},
        ),
    ],
    ids=lambda c: c.reason,
)
def test_plan_release(case: ReleaseCase) -> None:
    plan = plan_release(
        case.opts, existing(case.release, case.current), CHART_DIR, "team-a", [NOP_BOUND]
    )
    assert plan.run_helm == case.want_run, case.reason
    assert not plan.takeover, case.reason
    assert_same(case.want_values, plan.values, case.reason)


@pytest.mark.parametrize(
    ("release", "current"),
    [
        (DEPLOYED, {**COMPUTED, "pollInterval": "1h"}),
        ({**DEPLOYED, "status": "failed"}, COMPUTED),
        ({**DEPLOYED, "chart": "api-connector-0.0.1"}, COMPUTED),
    ],
    ids=["other values", "failed release", "other chart version"],
)
def test_existing_release_without_upgrade_is_refused(
    release: dict[str, Any], current: dict[str, Any]
) -> None:
    with pytest.raises(InstallError) as e:
        plan_release(options(), existing(release, current), CHART_DIR, "team-a", [NOP_BOUND])
    assert "the Helm release api-connector already exists in namespace upbound-system" in str(
        e.value
    )
    assert "rerun with --upgrade" in str(e.value)


UPBOUND_RELEASE = {"name": "api-connector", "status": "deployed", "chart": "api-connector-0.4.2"}
UPBOUND_VALUES = {"consumerClusterDisplayName": "team-a-prod", "pollInterval": "1m", "x": 1}


def test_a_release_of_another_chart_is_replaced_only_with_upgrade() -> None:
    foreign = existing(UPBOUND_RELEASE, UPBOUND_VALUES, ours=False)
    with pytest.raises(InstallError) as e:
        plan_release(options(), foreign, CHART_DIR, "team-a", [NOP_BOUND])
    message = str(e.value)
    assert "was installed by another chart (api-connector-0.4.2" in message
    assert "Rerun with --upgrade to replace it" in message
    assert "--dry-run" in message and "docs/migrate-from-upbound.md" in message


def test_replacing_another_chart_keeps_its_poll_interval_and_not_its_bound_apis() -> None:
    foreign = existing(
        UPBOUND_RELEASE,
        {**UPBOUND_VALUES, "boundAPIs": [{"group": "a.org", "resources": ["xs"]}]},
        ours=False,
    )
    plan = plan_release(options(upgrade=True), foreign, CHART_DIR, "team-a", [NOP_BOUND])
    assert plan.takeover and plan.run_helm
    assert_same(
        {**COMPUTED, "pollInterval": "1m"},
        plan.values,
        "pollInterval is carried over; the old chart's other values are not this chart's",
    )


def test_an_explicit_poll_interval_wins_over_the_old_releases() -> None:
    foreign = existing(UPBOUND_RELEASE, UPBOUND_VALUES, ours=False)
    opts = dataclasses.replace(options(upgrade=True), poll_interval="5m")
    plan = plan_release(opts, foreign, CHART_DIR, "team-a", [NOP_BOUND])
    assert plan.values["pollInterval"] == "5m"


def test_carried_over_values_come_only_from_another_charts_release() -> None:
    assert carried_over(existing(UPBOUND_RELEASE, UPBOUND_VALUES, ours=False), "pollInterval") == (
        "1m"
    )
    assert carried_over(existing(DEPLOYED, COMPUTED), "pollInterval") is None
    assert carried_over(None, "pollInterval") is None
    empty = existing(UPBOUND_RELEASE, {"consumerClusterDisplayName": ""}, ours=False)
    assert carried_over(empty, "consumerClusterDisplayName") is None


def test_inspect_release_tells_this_chart_by_its_annotation() -> None:
    for chart_annotations, ours in (({CHART_ANNOTATION: "true"}, True), ({}, False), (None, False)):
        fake = FakeHelm(
            release=DEPLOYED, values=COMPUTED, metadata={"annotations": chart_annotations}
        )
        found = inspect_release(helm_with(fake), "upbound-system")
        assert found is not None and found.ours is ours, chart_annotations
    assert inspect_release(helm_with(FakeHelm()), "upbound-system") is None


def test_the_shipped_chart_carries_the_annotation() -> None:
    assert is_our_chart(CHART_DIR)


# -- chart archives (up's --bundle) ---------------------------------------------------------


def packaged(tmp_path: Path, *charts: str) -> Path:
    archive = tmp_path / "chart.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in charts:
            tar.add(CHART_DIR, arcname=name)
    return archive


def test_a_chart_archive_is_unpacked_and_used_as_a_directory(tmp_path: Path) -> None:
    chart, directory = find_chart(str(packaged(tmp_path, "api-connector")), "0.1.0")
    assert directory is not None and chart == str(directory)
    assert (directory / "crds" / "connect.upbound.io_clusterconnections.yaml").is_file()
    assert is_our_chart(directory)


def test_an_archive_with_two_charts_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="expected one chart .* found 2"):
        find_chart(str(packaged(tmp_path, "a", "b")), None)


def test_a_file_that_is_no_archive_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "chart.tgz"
    bogus.write_text("not a tarball")
    with pytest.raises(InstallError, match="neither a chart directory nor a chart archive"):
        find_chart(str(bogus), None)
