"""The environment of a local Airflow stack, as a dict and as `.local/airflow.env`.

One place says which settings make the processes of a local stack (api-server, scheduler,
dag-processor, triggerer, workers) and the plain `airflow` CLI agree with each other: the Airflow
home, the metadata database, the DAG and plugin folders, the connections to the blob emulator and
the warehouse, and the login of the UI / REST API.

    from hr_pipeline.local.env import write_airflow_env
    path = write_airflow_env(root)          # -> <root>/.local/airflow.env
    # then, in a shell:  set -a; . .local/airflow.env; set +a; airflow dags list

CLI: ``python -m hr_pipeline.local.env [--root DIR] [--warehouse-uri JSON] [--blob-port N] [--api-port N]``
writes the file and prints its path.

Metadata database: SQLite (``<AIRFLOW_HOME>/airflow.db``). Airflow 3 runs LocalExecutor on SQLite
(task processes do not touch the metadata database; they talk to the api-server's execution
API, and ``airflow standalone`` uses the same pair), which is enough for one developer's stack.
A stack that needs concurrent schedulers or Celery workers passes a PostgreSQL ``metadata_uri``.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shlex
from collections.abc import Mapping
from pathlib import Path

from hr_pipeline.local import PROJECT_ROOT

AZURITE_ACCOUNT = "devstoreaccount1"
# The emulator's fixed, publicly documented development key: not a secret.
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
DEFAULT_API_PORT = 8080
DEFAULT_BLOB_PORT = 10000
ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin"
PASSWORDS_FILE_NAME = "simple_auth_manager_passwords.json.generated"
ENV_FILE_NAME = "airflow.env"

# Failure alerts (hr_pipeline.ops.alerts): channel -> connection id. Their variables are the
# only AIRFLOW_CONN_* a stack takes from the environment of `make up`, and the only lines of the
# env file a rewrite keeps.
ALERT_CHANNELS = {"email": "hr_alerts_smtp", "webhook": "hr_alerts_webhook"}
ALERT_VARIABLE_PREFIX = "AIRFLOW_CONN_HR_ALERTS_"


def connection_variable(conn_id: str) -> str:
    """The environment variable Airflow reads a connection from: ``AIRFLOW_CONN_<ID>``."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def alert_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The alert connections (``AIRFLOW_CONN_HR_ALERTS_*``) of an environment or env file."""
    return {key: value for key, value in env.items() if key.startswith(ALERT_VARIABLE_PREFIX)}


def azurite_connection(port: int) -> str:
    """`AIRFLOW_CONN_AZURE_BLOB` (JSON) for the Azurite blob service on 127.0.0.1:<port>."""
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )
    return json.dumps({"conn_type": "wasb", "extra": {"connection_string": connection_string}})


def sqlite_warehouse_connection(path: Path) -> str:
    """`AIRFLOW_CONN_WAREHOUSE` (JSON) for an SQLite file."""
    return json.dumps({"conn_type": "sqlite", "host": str(path)})


def postgres_warehouse_connection(
    database: str, host: str = "127.0.0.1", port: int = 5432, login: str = "postgres"
) -> str:
    """`AIRFLOW_CONN_WAREHOUSE` (JSON) for a PostgreSQL database."""
    return json.dumps(
        {"conn_type": "postgres", "host": host, "port": port, "login": login, "schema": database}
    )


def airflow_env(
    root: Path,
    *,
    airflow_home: Path,
    api_port: int = DEFAULT_API_PORT,
    blob_port: int = DEFAULT_BLOB_PORT,
    warehouse_uri: str | None = None,
    metadata_uri: str | None = None,
    executor: str = "LocalExecutor",
    jwt_secret: str | None = None,
    raw_container: str = "raw-data",
    backups_container: str = "backups",
    log_server_port: int = 8793,
    trigger_log_server_port: int = 8794,
) -> dict[str, str]:
    """Every variable a process of the stack needs, as strings.

    ``warehouse_uri`` is an ``AIRFLOW_CONN_WAREHOUSE`` value (JSON or URI); by default the SQLite
    file ``<root>/.local/warehouse.db``. ``metadata_uri`` is a SQLAlchemy URL; by default SQLite in
    ``airflow_home``. ``jwt_secret`` signs the tokens that the api-server, the scheduler and the
    workers exchange: every process of one stack must share it (a fresh random one if omitted).
    """
    root = Path(root).resolve()
    airflow_home = Path(airflow_home).resolve()
    return {
        **_core_settings(root, airflow_home, executor, metadata_uri),
        **_api_settings(airflow_home, api_port, jwt_secret),
        **_login_settings(airflow_home),
        **_process_settings(log_server_port, trigger_log_server_port),
        **_pipeline_settings(root, blob_port, warehouse_uri, raw_container, backups_container),
    }


def _core_settings(root: Path, airflow_home: Path, executor: str, metadata_uri: str | None) -> dict[str, str]:
    """Airflow's home, the DAG and plugin folders, the executor and the metadata database."""
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_uri or f"sqlite:///{airflow_home / 'airflow.db'}",
    }


def _api_settings(airflow_home: Path, api_port: int, jwt_secret: str | None) -> dict[str, str]:
    """The UI and REST API, and the execution API the task processes report to (with lineage)."""
    api_url = f"http://127.0.0.1:{api_port}"
    return {
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": api_url,  # the links in alerts point at this stack's UI
        **_lineage_settings(airflow_home),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret or secrets.token_urlsafe(32),
    }


def _lineage_settings(airflow_home: Path) -> dict[str, str]:
    """Lineage: the OpenLineage events of every task, with the datasets it read and wrote
    (hr_pipeline.ops.lineage), one JSON document a line in <AIRFLOW_HOME>/openlineage.jsonl."""
    return {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(airflow_home / "openlineage.jsonl"), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__EXTRACTORS": "hr_pipeline.ops.lineage.HrAssetsExtractor",
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "hr-local",
    }


def _login_settings(airflow_home: Path) -> dict[str, str]:
    """Login: Airflow 3's SimpleAuthManager with one known admin user (see write_passwords_file)."""
    return {
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(airflow_home / PASSWORDS_FILE_NAME),
    }


def _process_settings(log_server_port: int, trigger_log_server_port: int) -> dict[str, str]:
    """The log servers, DAG parsing and how many task processes run at once."""
    return {
        # The log servers of the workers and the triggerer (fixed ports by default: a second
        # stack on the same machine needs its own).
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_server_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_server_port),
        # The pipeline runs by itself: its DAGs start unpaused (ingest_on_landing reacts to files
        # landing, publish_metrics to the tables changing). In production this is the platform's
        # choice (see the README's deployment notes).
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # New DAG files show up within seconds, not minutes.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        # Two cores: a few task processes at a time is plenty. Parsing a DAG file in a busy
        # task process can take longer than the 30 s default allows.
        "AIRFLOW__CORE__PARALLELISM": "4",
        # The LocalExecutor's workers forked from a forkserver that imported what the tasks
        # import: each task process (forked from a worker) starts with them loaded
        # (hr_pipeline.ops.preload). The dag-processor and triggerer are not concerned.
        "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
        "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": "hr_pipeline.ops.preload",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
    }


def _pipeline_settings(
    root: Path, blob_port: int, warehouse_uri: str | None, raw_container: str, backups_container: str
) -> dict[str, str]:
    """Connections and containers of the pipeline (see docs/CONTRACT.md)."""
    return {
        "AIRFLOW_CONN_AZURE_BLOB": azurite_connection(blob_port),
        "AIRFLOW_CONN_WAREHOUSE": warehouse_uri
        or sqlite_warehouse_connection(root / ".local" / "warehouse.db"),
        "AZURE_BLOB_CONTAINER_RAW_DATA": raw_container,
        "AZURE_BLOB_CONTAINER_BACKUPS": backups_container,
    }


def write_passwords_file(airflow_home: Path, users: dict[str, str] | None = None) -> Path:
    """Write SimpleAuthManager's passwords file with known passwords (default admin/admin)."""
    airflow_home = Path(airflow_home)
    airflow_home.mkdir(parents=True, exist_ok=True)
    path = airflow_home / PASSWORDS_FILE_NAME
    path.write_text(json.dumps(users or {ADMIN_USER: ADMIN_PASSWORD}) + "\n")
    return path


def format_env_file(env: dict[str, str]) -> str:
    """KEY=VALUE lines, values quoted for the shell (``set -a; . FILE`` reads them back)."""
    lines = [
        "# Written by hr_pipeline.local.env: the environment of the local Airflow stack.",
        "# Use it with:  set -a; . .local/airflow.env; set +a",
    ]
    lines += [f"{key}={shlex.quote(value)}" for key, value in env.items()]
    return "\n".join(lines) + "\n"


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a file written by format_env_file (or any shell-quoted KEY=VALUE file)."""
    env: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        parts = shlex.split(value)
        env[key.strip()] = parts[0] if parts else ""
    return env


def write_env(path: Path, env: dict[str, str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_env_file(env))
    path.chmod(0o600)
    return path


# The ports of a stack, as airflow_env's options and the variables that carry them.
PORT_VARIABLES = {
    "api_port": "AIRFLOW__API__PORT",
    "log_server_port": "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
    "trigger_log_server_port": "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
}


def env_ports(env: dict[str, str]) -> dict[str, int]:
    """The ports an environment (a parsed env file) names: api_port, blob_port, log ports."""
    found = {}
    for option, key in PORT_VARIABLES.items():
        if env.get(key, "").isdigit():
            found[option] = int(env[key])
    match = re.search(r"BlobEndpoint=http://[^:/;]+:(\d+)/", env.get("AIRFLOW_CONN_AZURE_BLOB", ""))
    if match:
        found["blob_port"] = int(match.group(1))
    return found


def write_stack_env(root, state_dir, **options) -> Path:
    """Write ``<state_dir>/airflow.env`` (AIRFLOW_HOME ``<state_dir>/airflow``) and the passwords
    file with the known login (admin/admin); return the env file's path.

    A JWT secret already in the file is kept, so rewriting the file while the stack runs does not
    invalidate the running processes' tokens; so are its ports (api_port, blob_port, log server
    ports) unless given (not None), and so are the alert connections (``AIRFLOW_CONN_HR_ALERTS_*``)
    an operator wrote into it. ``options`` go to :func:`airflow_env`.
    """
    state_dir = Path(state_dir).resolve()
    path = state_dir / ENV_FILE_NAME
    existing = read_env_file(path) if path.exists() else {}
    if options.get("jwt_secret") is None and existing:
        options["jwt_secret"] = existing.get("AIRFLOW__API_AUTH__JWT_SECRET")
    previous_ports = env_ports(existing)
    for option in (*PORT_VARIABLES, "blob_port"):
        if options.get(option) is None:
            options.pop(option, None)
            if option in previous_ports:
                options[option] = previous_ports[option]
    airflow_home = state_dir / "airflow"
    env = {**airflow_env(root, airflow_home=airflow_home, **options), **alert_variables(existing)}
    write_passwords_file(airflow_home)
    return write_env(path, env)


def write_airflow_env(
    root, warehouse_uri: str | None = None, blob_port: int | None = None, **options
) -> Path:
    """Write ``<root>/.local/airflow.env`` for the stack of ``make up`` (and ``make demo``) and
    return its path. AIRFLOW_HOME is ``<root>/.local/airflow``; log in as admin/admin.
    ``options`` are passed on to :func:`airflow_env` (api_port, metadata_uri, executor, ...).
    A port left None keeps the file's current value (default: 8080, 10000, 8793, 8794).
    """
    root = Path(root).resolve()
    return write_stack_env(root, root / ".local", warehouse_uri=warehouse_uri, blob_port=blob_port, **options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write .local/airflow.env for the local stack.")
    parser.add_argument("--root", default=str(PROJECT_ROOT))
    parser.add_argument(
        "--warehouse-uri",
        default=None,
        help="AIRFLOW_CONN_WAREHOUSE value (default: SQLite .local/warehouse.db)",
    )
    parser.add_argument(
        "--blob-port", type=int, default=None, help="Azurite's port (default: the file's, else 10000)"
    )
    parser.add_argument(
        "--api-port", type=int, default=None, help="the API's port (default: the file's, else 8080)"
    )
    args = parser.parse_args(argv)
    print(write_airflow_env(args.root, args.warehouse_uri, args.blob_port, api_port=args.api_port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
