"""The pipeline on a distributed Airflow: CeleryExecutor, Redis broker, two Celery workers.

The same topology as docker-compose.yaml, as processes on this machine (no Docker engine here):
api-server, scheduler, dag-processor, triggerer, two ``airflow celery worker`` processes
(``w1``, ``w2``, concurrency 2), Redis as broker (127.0.0.1:6379/5, a queue private to this run),
PostgreSQL as Airflow's metadata database and Celery result backend (a database of its own, not
the warehouse's), Azurite for Blob Storage and a fresh PostgreSQL database as the warehouse.
Nothing is mocked. See tests/stack/celery_stack.py for how it is assembled.

What is shown:
- tasks of one run are executed by both workers (the ``hostname`` Airflow records per task
  instance is the worker's Celery name, see worker_hostname.py);
- the end-to-end scenario (ingest the three real extracts, back up, restore, publish metrics)
  ends with the right tables, and when one worker is SIGKILLed while it runs a task (the ingest of
  a generated 200,000-row file), the scheduler finds the task without a heartbeat
  (``task_instance_heartbeat_timeout`` = 20 s), fails that try for retry, the surviving worker
  runs the retry, and no row is lost or doubled.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def skip_or_fail(reason: str):
    """The rule of tests/conftest.py's helper: skip locally, fail under CI."""
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("HR_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (required under CI; the test cannot be skipped)")
    pytest.skip(reason)


pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.postgres, pytest.mark.azurite]
PROBE_DAG = HERE / "celery_dags" / "celery_probe.py"


def _services_or_skip():
    import socket

    for port, what in ((6379, "Redis"), (5432, "PostgreSQL")):
        with socket.socket() as sock:
            sock.settimeout(2)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                skip_or_fail(f"{what} is not reachable on 127.0.0.1:{port}")
    if shutil.which("node") is None:
        skip_or_fail("Node.js is not installed: Azurite cannot run")


@pytest.fixture(scope="module")
def warehouse_database():
    import psycopg

    from celery_stack import POSTGRES_DSN

    _services_or_skip()
    name = f"hr_wh_celery_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def celery_stack(warehouse_database):
    from celery_stack import CeleryStack, dags_folder_with
    import local_env

    workdir = Path(tempfile.mkdtemp(prefix="hr-celery-"))
    stack = CeleryStack(
        state_dir=workdir / "state",
        warehouse_uri=local_env.postgres_warehouse_connection(warehouse_database),
        dags_folder=dags_folder_with([PROBE_DAG], workdir / "dags"),
    )
    try:
        stack.startup_seconds = stack.start()
        yield stack
    finally:
        stack.stop()
        if os.environ.get("HR_KEEP_STACK_STATE") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


def test_tasks_of_one_run_are_executed_by_both_workers(celery_stack):
    from celery_stack import worker_of

    api = celery_stack.api()
    api.wait_for_dags(["hr_celery_probe"])
    api.unpause("hr_celery_probe")
    run_id = api.trigger_run("hr_celery_probe")
    run = api.wait_for_run("hr_celery_probe", run_id, timeout=600)
    assert run["state"] == "success", api.failure_report("hr_celery_probe", run_id)

    instances = api.task_instances("hr_celery_probe", run_id)
    assert len(instances) == 6
    by_worker: dict[str, int] = {}
    for ti in instances:
        assert ti["state"] == "success"
        by_worker[worker_of(ti["hostname"])] = by_worker.get(worker_of(ti["hostname"]), 0) + 1
    print(f"probe run: tasks per worker {by_worker}")
    assert set(by_worker) == {"w1", "w2"}, by_worker
