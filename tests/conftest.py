"""Shared fixtures: an isolated Airflow home, Azurite, and SQLite / PostgreSQL warehouses.

Everything a test touches is real: the Azurite emulator (npm package, run with Node.js), SQLite
files, and fresh databases on the PostgreSQL server. Nothing here mocks a service.

When a service cannot be had (no Node.js, no PostgreSQL) the tests that need it skip with the
reason, except under CI (``CI=true`` or ``HR_REQUIRE_SERVICES=1``), where the skip becomes a
failure: a CI run that quietly skipped its integration tests proves nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = PROJECT_ROOT / "include" / "sample_data"
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
POSTGRES_DSN = os.environ.get("HR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")

# Airflow reads its configuration at import: point it at a throw-away home before any test
# module imports it.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="hr-tests-"))
os.environ["AIRFLOW_HOME"] = str(_SESSION_DIR / "airflow")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_ROOT / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_SESSION_DIR / 'airflow' / 'airflow.db'}"
# One Fernet key for the session and the processes it starts (they share its metadata database:
# the landing watchers' trigger arguments are stored encrypted), made now, never shipped.
if not os.environ.get("AIRFLOW__CORE__FERNET_KEY"):
    from cryptography.fernet import Fernet

    os.environ["AIRFLOW__CORE__FERNET_KEY"] = Fernet.generate_key().decode()


def services_required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("HR_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str):
    if services_required():
        pytest.fail(f"{reason} (required under CI; the test cannot be skipped)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def blob_connection_uri(port: int) -> str:
    connection_string = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    return json.dumps({"conn_type": "wasb", "extra": {"connection_string": connection_string}})


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated Airflow metadata database (SQLite) for dag.test() runs."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return home


@pytest.fixture(scope="session")
def azurite_port():
    """A private Azurite blob service for this test session, on a free port."""
    if shutil.which("node") is None:
        skip_or_fail("Node.js is not installed: Azurite cannot run")
    port = free_port()
    data_dir = _SESSION_DIR / "azurite"
    script = PROJECT_ROOT / "scripts" / "azurite.sh"
    subprocess.run(["bash", str(script), "start", str(data_dir), str(port)], check=True)
    yield port
    subprocess.run(["bash", str(script), "stop", str(data_dir), str(port)], check=False)


@pytest.fixture
def blob_store(azurite_port, monkeypatch):
    """A BlobStore on Azurite with fresh, empty containers for this test."""
    monkeypatch.setenv("AIRFLOW_CONN_AZURE_BLOB", blob_connection_uri(azurite_port))
    suffix = uuid.uuid4().hex[:8]
    monkeypatch.setenv("AZURE_BLOB_CONTAINER_RAW_DATA", f"raw-{suffix}")
    monkeypatch.setenv("AZURE_BLOB_CONTAINER_BACKUPS", f"backups-{suffix}")
    from hr_pipeline.storage.blob_store import BlobStore

    store = BlobStore()
    store.ensure_container(f"raw-{suffix}")
    store.ensure_container(f"backups-{suffix}")
    return store


@pytest.fixture
def sqlite_warehouse(tmp_path, monkeypatch):
    path = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    from hr_pipeline.warehouse.facade import Warehouse

    warehouse = Warehouse()
    warehouse.ensure_tables()
    return warehouse


def _postgres_admin():
    try:
        import psycopg

        return psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=3)
    except Exception as error:  # noqa: BLE001 - any failure to reach the server means: no PostgreSQL here (skip_or_fail)
        skip_or_fail(f"PostgreSQL is not reachable at {POSTGRES_DSN}: {error}")


@pytest.fixture
def postgres_database():
    """A fresh PostgreSQL database for one test, dropped afterwards; yields its name."""
    admin = _postgres_admin()
    name = f"hr_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def postgres_connection_uri(database: str) -> str:
    return json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": database}
    )


@pytest.fixture
def postgres_warehouse(postgres_database, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", postgres_connection_uri(postgres_database))
    from hr_pipeline.warehouse.facade import Warehouse

    warehouse = Warehouse()
    warehouse.ensure_tables()
    return warehouse


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse(request):
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_warehouse")


FIGURE_PREFIXES = ("[stack]", "[celery]", "probe run")


def pytest_terminal_summary(terminalreporter):
    """Repeat the figures the stack tests print (start-up and run durations, tasks per worker)
    at the end of the run, where a CI log reader finds them without -s."""
    lines = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            for line in (getattr(report, "capstdout", "") or "").splitlines():
                if line.startswith(FIGURE_PREFIXES) and line not in lines:
                    lines.append(line)
    if lines:
        terminalreporter.section("figures measured by the tests")
        for line in lines:
            terminalreporter.write_line(line)
