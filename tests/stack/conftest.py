"""One real local Airflow stack per test session, driven as a user would (REST API, blob uploads).

The stack is the topology of `make up` (api-server, scheduler, dag-processor, triggerer, Azurite;
LocalExecutor), started by ``hr_pipeline.local.stack`` with everything private to the session:
AIRFLOW_HOME in a temporary directory, free ports, its own Azurite, and two fresh PostgreSQL
databases, the warehouse and Airflow's metadata (both dropped at the end). The metadata is in
PostgreSQL, as in production, because SQLite takes one writer at a time: a trigger through the
API while the scheduler writes can fail with "database is locked" (a 500 to the caller). Its failure alerts go to the session's
own SMTP server and HTTP sink (``alert_sinks``), through ``AIRFLOW_CONN_HR_ALERTS_SMTP`` /
``_WEBHOOK`` exported in the environment that starts it, as the README tells an operator to do
for `make up`. Helpers: ``stack_support.py``.

Fixtures build on each other so that every module asks only for what it needs and the work is
done once: ``local_stack`` (started, healthy, DAGs unpaused) -> ``ingested`` (the real extracts
uploaded and ingested through the REST API) -> ``published`` (publish_metrics ran from the asset
events).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from stack_support import (
    DAG_IDS,
    POSTGRES_DSN,
    TABLES,
    LocalStack,
    alert_connection_variables,
    caller_environment,
    free_port,
    local_env,
    parse_instant,
    postgres_url,
    skip_or_fail,
    stack_driver,
    wait_for_metrics_run,
)


def _postgres_admin():
    try:
        import psycopg

        return psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=3)
    except Exception as error:  # noqa: BLE001 - any failure to reach the server means: no PostgreSQL here (skip_or_fail)
        skip_or_fail(f"PostgreSQL is not reachable at {POSTGRES_DSN}: {error}")


@pytest.fixture(scope="session")
def alert_sinks():
    """A real SMTP server and HTTP server that receive the stack's failure alerts, up before the
    stack starts and until after it stops: (smtp, webhook)."""
    from tests.unit.test_notifications import SmtpSink, WebhookSink

    with SmtpSink() as smtp, WebhookSink() as webhook:
        yield smtp, webhook


@pytest.fixture(scope="session")
def local_stack(alert_sinks):
    """The stack, started once per session and stopped at the end (process groups killed)."""
    if shutil.which("node") is None:
        skip_or_fail("Node.js is not installed: Azurite cannot run")
    admin = _postgres_admin()
    suffix = uuid.uuid4().hex[:12]
    database, metadata_database = f"hr_stack_{suffix}", f"hr_stack_airflow_{suffix}"
    for name in (database, metadata_database):
        admin.execute(f'CREATE DATABASE "{name}"')
    state_dir = Path(tempfile.mkdtemp(prefix="hr-stack-"))
    config = stack_driver.StackConfig(
        state_dir=state_dir,
        api_port=free_port(),
        blob_port=free_port(),
        log_server_port=free_port(),
        trigger_log_server_port=free_port(),
        executor="LocalExecutor",
        warehouse_uri=local_env.postgres_warehouse_connection(database),
        metadata_uri=postgres_url(metadata_database, "postgresql+psycopg2"),
        # The tests trigger runs themselves; ingest_on_landing stays paused until the test of
        # ingest on landing unpauses it (else it would race the tests' own runs for the files).
        extra_env={"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"},
    )
    stack = stack_driver.Stack(config)
    api = None
    try:
        # Set only while it starts: the session's own Airflow must not see them.
        with caller_environment(alert_connection_variables(*alert_sinks)):
            startup = stack.start(timeout=600)
        stack.wait_healthy(timeout=300)
        print(f"\n[stack] API healthy {startup:.1f} s after start ({config.api_url}, state {state_dir})")
        api = stack.api()
        api.wait_for_dags(DAG_IDS, timeout=600)
        for dag_id in DAG_IDS:
            api.unpause(dag_id)
        yield LocalStack(stack=stack, api=api, warehouse_database=database, startup_seconds=startup)
    except stack_driver.StackError as error:
        pytest.fail(f"the local stack did not come up: {error}")
    finally:
        if api is not None:
            api.close()
        stack.stop()
        for name in (database, metadata_database):
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        if not os.environ.get("HR_KEEP_STACK_STATE"):
            shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ingested(local_stack):
    """The real extracts uploaded to Azurite and ingested, table by table, through the REST API."""
    started = time.monotonic()
    runs = {}
    for table in TABLES:
        local_stack.upload_extract(table)
        runs[table] = local_stack.run_to_end("ingest_table", {"table_name": table})
    seconds = time.monotonic() - started
    local_stack.figures["full_ingest_seconds"] = seconds
    return runs


@pytest.fixture(scope="session")
def published(local_stack, ingested):
    """publish_metrics has rebuilt the metric tables from the ingest's asset events."""
    hires_run = ingested["hired_employees"]
    return wait_for_metrics_run(
        local_stack, parse_instant(hires_run["start_date"]), "warehouse.hired_employees"
    )
