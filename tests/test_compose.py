"""docker-compose.yml is a valid Compose file that runs the Procfile's processes in production.

No Docker engine is needed: the file is checked against the Compose Specification's JSON
schema (tests/data/compose_spec.json, see tests/data/README.md) and against the Procfile.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from common.development.cli import read_procfile
from common.platform.settings import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
SCHEMA_FILE = Path(__file__).parent / "data" / "compose_spec.json"

# The Procfile's development-only processes: production uses the real service instead.
DEVELOPMENT_ONLY = {"stripe", "smtp", "drand"}  # the emulator, the SMTP sink, the drand beacon
# Settings that have no safe default in production: compose must refuse to start without them.
REQUIRED_FROM_ENV = ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET",
                     "JWT_SECRET_KEY")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services built from this repository (the others run upstream images)."""
    return {name: service for name, service in services.items() if "build" in service}


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    # The file names draft 2019-09 with a trailing "#", which jsonschema does not recognise
    # (it would warn and fall back to its latest draft): say which draft it means.
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft201909Validator)
    validator_class.check_schema(schema)
    return validator_class(schema)


def test_compose_file_follows_the_compose_specification(compose, compose_validator):
    errors = sorted(compose_validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors)


def test_the_schema_rejects_what_compose_would_reject(compose, compose_validator):
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["deploy"]["replica"] = 3
    broken["services"]["api"]["healthcheck"]["retries"] = "five"
    paths = {"/".join(map(str, e.path)) for e in compose_validator.iter_errors(broken)}
    assert {"services/worker/deploy", "services/api/healthcheck/retries"} <= paths


def test_services_are_the_procfile_processes_except_the_development_emulator(services):
    procfile = read_procfile()
    assert procfile.keys() >= DEVELOPMENT_ONLY, "the Procfile no longer names the emulator"
    assert not DEVELOPMENT_ONLY & services.keys(), "production must not run the Stripe emulator"
    # Services of a profile (monitoring) start only when it is asked for.
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == set(procfile) - DEVELOPMENT_ONLY


def test_app_services_run_the_same_command_as_their_procfile_line(services):
    procfile = read_procfile()
    built = app_services(services)
    assert set(built) == {"api", "worker", "decider", "beat"}
    for name, service in built.items():
        assert command_of(service) == shlex.split(procfile[name]), name


def test_redis_persists_with_aof_on_a_volume(compose, services):
    redis = services["redis"]
    assert re.fullmatch(r"redis:7(\D.*)?", redis["image"])
    command = command_of(redis)
    assert command[command.index("--appendonly") + 1] == "yes"
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data" and volume in compose["volumes"]


def test_mongodb_is_a_replica_set_that_initiates_itself(compose, services):
    mongodb = services["mongodb"]
    assert re.fullmatch(r"mongo:7(\D.*)?", mongodb["image"])
    command = command_of(mongodb)
    assert command[command.index("--replSet") + 1] == "rs0"
    probe = " ".join(mongodb["healthcheck"]["test"])
    assert "mongosh" in probe and "rs.initiate(" in probe and "'rs0'" in probe
    # Idempotent: initiate only when rs.status() says there is no replica set yet.
    assert probe.index("rs.status()") < probe.index("rs.initiate(")
    assert any(v.endswith(":/data/db") and v.split(":")[0] in compose["volumes"]
               for v in mongodb["volumes"])


def test_app_services_are_configured_for_production(services):
    for name, service in app_services(services).items():
        env = service["environment"]
        assert env["APP_ENV"] == "production", name
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert env["MONGODB_URI"].startswith("mongodb://mongodb:27017/"), name
        assert "replicaSet=rs0" in env["MONGODB_URI"], name
        assert "STRIPE_API_BASE" not in env, f"{name} must talk to real Stripe"
        for var in REQUIRED_FROM_ENV:
            assert re.fullmatch(rf"\$\{{{var}:\?[^}}]+\}}", env[var]), (name, var)
        depends = service["depends_on"]
        assert depends == {"redis": {"condition": "service_healthy"},
                           "mongodb": {"condition": "service_healthy"}}, name


def test_api_is_published_and_healthy_only_when_ready(services):
    api = services["api"]
    assert api["environment"]["HOST"] == "0.0.0.0"
    assert any(str(port).endswith(":8000") for port in api["ports"])
    assert "/readyz" in " ".join(api["healthcheck"]["test"])


def test_workers_scale_out_and_beat_runs_once(services):
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["decider"]["deploy"]["replicas"] >= 2
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1


def test_dockerfile_builds_the_front_end_and_the_python_package():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert stages[0].startswith("node:") and stages[-1] == "python:3.12-slim"
    assert "npm run build" in dockerfile and "COPY --from=frontend" in dockerfile
    assert re.search(r"^RUN pip install \.", dockerfile, re.MULTILINE)
