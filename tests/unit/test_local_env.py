"""`.local/airflow.env`: what `make up`, `make demo` and the plain `airflow` CLI read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hr_pipeline.local import env as local_env

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _sourced_by_bash(env_file: Path) -> dict[str, str]:
    """The variables a shell gets from `set -a; . FILE`."""
    script = f"set -a; . '{env_file}'; set +a; env -0"
    output = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"}
    ).stdout
    return dict(item.split("=", 1) for item in output.split("\0") if "=" in item)


def test_the_env_file_is_read_back_by_the_shell_unchanged(tmp_path):
    path = local_env.write_airflow_env(tmp_path)
    assert path == tmp_path.resolve() / ".local" / "airflow.env"
    written = local_env.read_env_file(path)
    sourced = _sourced_by_bash(path)
    assert {key: sourced[key] for key in written} == written

    root = tmp_path.resolve()
    assert written["AIRFLOW_HOME"] == str(root / ".local" / "airflow")
    assert written["AIRFLOW__CORE__DAGS_FOLDER"] == str(root / "dags")
    assert written["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    blob = json.loads(sourced["AIRFLOW_CONN_AZURE_BLOB"])
    assert blob["conn_type"] == "wasb"
    assert "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;" in blob["extra"]["connection_string"]
    assert json.loads(sourced["AIRFLOW_CONN_WAREHOUSE"]) == {
        "conn_type": "sqlite",
        "host": str(root / ".local" / "warehouse.db"),
    }
    assert (sourced["AZURE_BLOB_CONTAINER_RAW_DATA"], sourced["AZURE_BLOB_CONTAINER_BACKUPS"]) == (
        "raw-data",
        "backups",
    )


def test_the_known_login_is_written_for_the_simple_auth_manager(tmp_path):
    env = local_env.read_env_file(local_env.write_airflow_env(tmp_path))
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert passwords.parent == Path(env["AIRFLOW_HOME"])
    assert json.loads(passwords.read_text()) == {"admin": "admin"}


def test_rewriting_keeps_the_jwt_secret_and_takes_new_options(tmp_path):
    first = local_env.read_env_file(local_env.write_airflow_env(tmp_path))
    warehouse = local_env.postgres_warehouse_connection("hr_demo")
    second = local_env.read_env_file(
        local_env.write_airflow_env(tmp_path, warehouse_uri=warehouse, blob_port=10555)
    )
    assert second["AIRFLOW__API_AUTH__JWT_SECRET"] == first["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert json.loads(second["AIRFLOW_CONN_WAREHOUSE"])["schema"] == "hr_demo"
    assert ":10555/" in second["AIRFLOW_CONN_AZURE_BLOB"]


def test_the_cli_writes_the_file_and_prints_its_path(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hr_pipeline.local.env",
            "--root",
            str(tmp_path),
            "--api-port",
            "18080",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    path = Path(result.stdout.strip())
    assert path.exists()
    env = local_env.read_env_file(path)
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"


def test_rewriting_keeps_the_ports_unless_given(tmp_path):
    """`make demo` rewrites the file with the emulator's port only: the API and log server
    ports a running `make up` wrote stay as they are."""
    local_env.write_airflow_env(tmp_path, api_port=18080, blob_port=10555, log_server_port=18793)
    kept = local_env.read_env_file(local_env.write_airflow_env(tmp_path))
    assert local_env.env_ports(kept) == {
        "api_port": 18080,
        "blob_port": 10555,
        "log_server_port": 18793,
        "trigger_log_server_port": 8794,
    }
    moved = local_env.read_env_file(local_env.write_airflow_env(tmp_path, blob_port=10600))
    assert local_env.env_ports(moved)["blob_port"] == 10600
    assert local_env.env_ports(moved)["api_port"] == 18080
    assert moved["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"


def test_alert_connections_written_into_the_file_survive_a_rewrite(tmp_path):
    """Lines an operator adds to .local/airflow.env (a way to switch alerts on for `make up` and
    the CLI) are kept when `make up` or `make azurite-start` rewrites the file; no other line is."""
    path = local_env.write_airflow_env(tmp_path)
    smtp = json.dumps({"conn_type": "smtp", "host": "smtp.hr.test", "port": 25, "extra": {"to": "a@hr.test"}})
    with path.open("a") as file:
        file.write(f"AIRFLOW_CONN_HR_ALERTS_SMTP='{smtp}'\n")
        file.write("AIRFLOW_CONN_SOMETHING_ELSE=http://elsewhere\n")
    rewritten = local_env.read_env_file(local_env.write_airflow_env(tmp_path, blob_port=10600))
    assert rewritten["AIRFLOW_CONN_HR_ALERTS_SMTP"] == smtp
    assert _sourced_by_bash(path)["AIRFLOW_CONN_HR_ALERTS_SMTP"] == smtp
    assert "AIRFLOW_CONN_SOMETHING_ELSE" not in rewritten
    assert ":10600/" in rewritten["AIRFLOW_CONN_AZURE_BLOB"]
