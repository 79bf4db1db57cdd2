"""Helpers of the stack tests: a running local stack as a user sees it (REST API, blob uploads,
the warehouse's SQL). The fixtures that start it are in conftest.py beside this file.

The stack is the topology of `make up` (api-server, scheduler, dag-processor, triggerer, Azurite;
LocalExecutor), started by ``hr_pipeline.local.stack`` with everything private to the session:
AIRFLOW_HOME in a temporary directory, free ports, its own Azurite, and fresh PostgreSQL
databases for the warehouse and Airflow's metadata (dropped at the end).

Fixtures build on each other so that every module can ask only for what it needs and the work
is done once: ``local_stack`` (started, healthy) -> ``ingested`` (the real extracts uploaded and
ingested through the REST API) -> ``published`` (publish_metrics ran from the asset events).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from hr_pipeline.local import env as local_env
from hr_pipeline.local import stack as stack_driver

# The skip-locally / fail-under-CI rule and free ports are the suite's own (tests/conftest.py).
from tests.conftest import free_port, skip_or_fail  # noqa: F401 - the stack tests import them from here

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DATA = PROJECT_ROOT / "include" / "sample_data"
TABLES = ("departments", "jobs", "hired_employees")  # load order: hires reference the others
DAG_IDS = ("ingest_table", "backup_tables", "restore_table", "publish_metrics")
POSTGRES_DSN = os.environ.get("HR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def postgres_url(database: str, scheme: str) -> str:
    """The URL of ``database`` on the test server, with ``scheme`` (a SQLAlchemy dialect+driver)."""
    server = POSTGRES_DSN.split("://", 1)[1].rsplit("/", 1)[0]
    return f"{scheme}://{server}/{database}"


# The test stacks pass their caller's alert connections on (as `make up` does): they must alert
# the test suite's own servers, never the channels of whoever runs the suite.
for _name in local_env.alert_variables(os.environ):
    del os.environ[_name]


@contextmanager
def caller_environment(variables: dict[str, str]) -> Iterator[None]:
    """``variables`` set in this process's environment for the block, as an operator exports
    them in the shell that runs `make up`; the previous values back after it."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def alert_connection_variables(smtp, webhook) -> dict[str, str]:
    """``AIRFLOW_CONN_HR_ALERTS_SMTP`` / ``_WEBHOOK`` (JSON, as the README shows them) pointing
    the alerts at an SmtpSink and a WebhookSink (tests/unit/test_notifications.py)."""
    return {
        local_env.connection_variable(local_env.ALERT_CHANNELS["email"]): json.dumps(smtp.connection()),
        local_env.connection_variable(local_env.ALERT_CHANNELS["webhook"]): json.dumps(webhook.connection()),
    }


def parse_instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class LocalStack:
    """A running stack and what a test needs to use it like a user."""

    stack: stack_driver.Stack
    api: stack_driver.AirflowApi
    warehouse_database: str
    startup_seconds: float
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.stack.config.api_url

    @property
    def env(self) -> dict[str, str]:
        return local_env.read_env_file(self.stack.config.env_file)

    # -- blob storage ---------------------------------------------------------------------------
    def blob_service(self):
        import json

        from azure.storage.blob import BlobServiceClient

        extra = json.loads(self.env["AIRFLOW_CONN_AZURE_BLOB"])["extra"]
        return BlobServiceClient.from_connection_string(extra["connection_string"])

    def upload_extract(self, table: str, source: Path | None = None, name: str | None = None) -> str:
        """Upload a CSV to ``incoming/<table>/`` of the raw container; return the blob name."""
        source = source or SAMPLE_DATA / f"{table}.csv"
        blob_name = f"incoming/{table}/{name or source.name}"
        container = self.blob_service().get_container_client(self.env["AZURE_BLOB_CONTAINER_RAW_DATA"])
        with open(source, "rb") as data:
            container.upload_blob(blob_name, data, overwrite=True)
        return blob_name

    def blob_names(self, container_key: str, prefix: str) -> list[str]:
        container = self.blob_service().get_container_client(self.env[container_key])
        return sorted(blob.name for blob in container.list_blobs(name_starts_with=prefix))

    # -- warehouse ------------------------------------------------------------------------------
    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        dsn = POSTGRES_DSN.rsplit("/", 1)[0] + f"/{self.warehouse_database}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def row_count(self, table: str) -> int:
        assert table.replace("_", "").isalnum()
        return self.sql(f'SELECT count(*) FROM "{table}"')[0][0]

    # -- DAG runs ---------------------------------------------------------------------------------
    def run_to_end(self, dag_id: str, conf: dict, timeout: float = 900.0) -> dict:
        """Trigger ``dag_id`` through the REST API, wait for the end, assert success."""
        run_id = self.api.trigger_run(dag_id, conf)
        run = self.api.wait_for_run(dag_id, run_id, timeout=timeout)
        assert run["state"] == "success", (
            f"{dag_id} {conf} ended {run['state']}:\n{self.api.failure_report(dag_id, run_id)}"
        )
        return run


def wait_for_metrics_run(stack: LocalStack, after: datetime, asset_name: str, timeout: float = 900.0) -> dict:
    """Wait until publish_metrics has a successful asset-triggered run that consumed an event of
    ``asset_name`` emitted after ``after``, and no run of it is queued or running."""
    api = stack.api
    deadline = time.monotonic() + timeout
    seen: list = []
    while time.monotonic() < deadline:
        runs = api.json(
            "GET", "/api/v2/dags/publish_metrics/dagRuns", params={"order_by": "-run_after", "limit": 20}
        )["dag_runs"]
        seen = [(run["dag_run_id"], run["run_type"], run["state"]) for run in runs]
        busy = any(run["state"] in ("queued", "running") for run in runs)
        for run in runs:
            if busy or run["run_type"] != "asset_triggered" or run["state"] != "success":
                continue
            events = api.json(
                "GET", f"/api/v2/dags/publish_metrics/dagRuns/{run['dag_run_id']}/upstreamAssetEvents"
            )["asset_events"]
            if any(
                event.get("name") == asset_name and parse_instant(event["timestamp"]) >= after
                for event in events
            ):
                return run
        failed = [
            run for run in runs if run["state"] == "failed" and parse_instant(run["run_after"]) >= after
        ]
        if failed:
            pytest.fail(
                "publish_metrics failed:\n" + api.failure_report("publish_metrics", failed[0]["dag_run_id"])
            )
        time.sleep(1)
    pytest.fail(f"no successful asset-triggered publish_metrics run after {after}: {seen}")
