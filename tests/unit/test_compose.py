"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

CI has no Docker, so instead of `docker compose up` this validates the compose file against the
Compose Specification's JSON schema (vendored in tests/data/compose-spec/, see its README) and
runs each stage service's exact command, with only its port moved to a free local one,
probing it with the service's own healthcheck.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = ROOT / "tests" / "data" / "compose-spec" / "compose_spec.json"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CHART_VALUES = ROOT / "package" / "helm" / "api-connector" / "values.yaml"
# The console script of this virtualenv: the same entry point the image's ENTRYPOINT names.
API_CONNECTOR = Path(sys.executable).parent / "api-connector"

STAGES = ("crd-puller", "binder", "object-syncer")
HEALTHY_WITHIN_SECONDS = 30.0


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _compose()["services"][name]
    return service


def _flag(command: list[str], name: str) -> str:
    """The value of `--name VALUE` or `--name=VALUE` in an argument list."""
    for i, arg in enumerate(command):
        if arg == name:
            return command[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not found in {command}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _compose_validator() -> jsonschema.Draft201909Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    # The file's $schema misspells the draft 2019-09 URI, so name the draft explicitly instead
    # of letting jsonschema guess from it.
    validator = jsonschema.Draft201909Validator
    return validator(schema, format_checker=validator.FORMAT_CHECKER)


def test_compose_file_is_valid_compose_specification() -> None:
    errors = [f"{e.json_path}: {e.message}" for e in _compose_validator().iter_errors(_compose())]
    assert errors == [], "docker-compose.yml violates the Compose Specification:\n" + "\n".join(
        errors
    )


def test_compose_schema_rejects_a_misspelt_key() -> None:
    # Guards the check above: a schema that accepted anything would make it pass vacuously.
    broken = _compose()
    broken["services"]["binder"]["healthcheck"]["intervall"] = "5s"
    assert any(True for _ in _compose_validator().iter_errors(broken))


def test_compose_runs_every_stage_and_the_connector_from_the_repository_image() -> None:
    services = _compose()["services"]
    assert set(services) == {*STAGES, "connector"}
    for name, service in services.items():
        # One image for all four: built from the Dockerfile, started with different arguments.
        assert service["build"] == ".", name
        assert service["image"] == services["connector"]["image"], name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name


def test_connector_service_calls_the_stage_services_where_they_listen() -> None:
    connector = _service("connector")["command"]
    assert connector[0] == "run"
    for stage in STAGES:
        listen = _flag(_service(stage)["command"], "--address")
        assert _flag(connector, f"--{stage}") == listen, stage
        assert _service("connector")["depends_on"][stage] == {"condition": "service_healthy"}


def test_connector_service_reads_the_consumer_kubeconfig_from_its_mounted_volume() -> None:
    service = _service("connector")
    kubeconfig = _flag(service["command"], "--kubeconfig")
    mounts = [v.split(":") for v in service["volumes"]]
    assert any(kubeconfig.startswith(target + "/") for _, target, *_ in mounts), (
        f"{kubeconfig} is not inside any of the mounted volumes {service['volumes']}"
    )
    # Read-only: the connector never writes kubeconfigs.
    assert all(options == ["ro"] for _, _, *options in mounts)


def test_connector_service_uses_only_options_that_run_accepts() -> None:
    help_text = subprocess.run(
        [str(API_CONNECTOR), "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    accepted = set(re.findall(r"--[a-z][a-z0-9-]*", help_text))
    used = {arg.split("=", 1)[0] for arg in _service("connector")["command"] if arg[:2] == "--"}
    assert used <= accepted, f"api-connector run does not accept {sorted(used - accepted)}"


@contextlib.contextmanager
def _running(command: list[str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [str(API_CONNECTOR), *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


@pytest.mark.parametrize("stage", STAGES)
def test_stage_service_command_serves_grpc_health_that_its_healthcheck_accepts(stage: str) -> None:
    service = _service(stage)
    address = _flag(service["command"], "--address")
    host, _, _ = address.rpartition(":")
    local = f"{host}:{_free_port()}"
    # The service's exact command and healthcheck, with only the port moved to a free one and
    # the healthcheck's `python` being this interpreter.
    command = [local if arg == address else arg for arg in service["command"]]
    test = service["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"], "the image has python, not grpc_health_probe"
    probe = [sys.executable, *(local if arg == address else arg for arg in test[2:])]

    with _running(command) as process:
        deadline = time.monotonic() + HEALTHY_WITHIN_SECONDS
        last_error = ""
        while time.monotonic() < deadline:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"`api-connector {shlex.join(command)}` exited:\n{output}")
            result = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
            if result.returncode == 0:
                return
            last_error = (result.stderr.strip().splitlines() or [""])[-1]
            time.sleep(0.3)
    pytest.fail(f"{stage} not SERVING on {local} within {HEALTHY_WITHIN_SECONDS}s: {last_error}")


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    pairs = []
    for instruction in logical:
        keyword, _, arguments = instruction.partition(" ")
        pairs.append((keyword.upper(), arguments.strip()))
    return pairs


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_image_runs_as_the_non_root_user_the_chart_expects() -> None:
    users = [arguments for keyword, arguments in _final_stage() if keyword == "USER"]
    assert users, "the runtime stage sets no USER, so the image would run as root"
    uid = users[-1].split(":")[0]
    # Numeric, so that Kubernetes' runAsNonRoot can verify it without an /etc/passwd lookup.
    assert uid.isdigit() and int(uid) != 0
    values = yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8"))
    assert values["podSecurityContext"]["runAsUser"] == int(uid)


def test_image_entrypoint_is_the_api_connector_command() -> None:
    entrypoints = [arguments for keyword, arguments in _final_stage() if keyword == "ENTRYPOINT"]
    assert entrypoints, "the runtime stage has no ENTRYPOINT"
    # Exec form, so that the process gets SIGTERM directly when a pod or container stops.
    assert json.loads(entrypoints[-1]) == ["api-connector"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "api-connector" in pyproject["project"]["scripts"]


def test_image_is_built_in_stages_from_python_3_11_slim() -> None:
    instructions = _dockerfile_instructions()
    defaults: dict[str, str] = {}
    for keyword, arguments in instructions:
        if keyword == "ARG":
            name, _, default = arguments.partition("=")
            defaults[name] = default

    def resolve(match: re.Match[str]) -> str:
        return defaults[match.group(1)]

    bases = [
        re.sub(r"\$\{(\w+)\}", resolve, arguments.split()[0])
        for keyword, arguments in instructions
        if keyword == "FROM"
    ]
    assert len(bases) >= 2, "build tools would end up in the runtime image"
    assert set(bases) == {"python:3.11-slim"}


def test_docker_build_context_holds_what_the_dockerfile_copies() -> None:
    # .dockerignore excludes everything, then re-includes; a COPY of an excluded path fails.
    included = {
        line[1:].rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    for keyword, arguments in _dockerfile_instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            for source in arguments.split()[:-1]:
                assert source.rstrip("/") in included, source
