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
DAG_IDS = ("ingest_table", "backup_tables", "restore_table", "publish_metrics")
GENERATED_ROWS = 200_000
FIGURES: dict[str, object] = {}


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

    from hr_pipeline.local import env as local_env

    workdir = Path(tempfile.mkdtemp(prefix="hr-celery-"))
    stack = CeleryStack(
        state_dir=workdir / "state",
        warehouse_uri=local_env.postgres_warehouse_connection(warehouse_database),
        dags_folder=dags_folder_with([PROBE_DAG], workdir / "dags"),
    )
    try:
        stack.startup_seconds = stack.start()
        print(f"\n[celery] stack up, both workers answering, {stack.startup_seconds:.1f} s after start")
        api = stack.api()
        api.wait_for_dags([*DAG_IDS, "hr_celery_probe"], timeout=300)
        for dag_id in (*DAG_IDS, "hr_celery_probe"):
            api.unpause(dag_id)
        yield stack
    finally:
        stack.stop()
        if os.environ.get("HR_KEEP_STACK_STATE") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def user(celery_stack, warehouse_database):
    """The stack as a user drives it (REST API, blob uploads, SQL): the local stack tests' helper."""
    from stack_support import LocalStack

    return LocalStack(
        stack=celery_stack.stack,
        api=celery_stack.api(),
        warehouse_database=warehouse_database,
        startup_seconds=celery_stack.startup_seconds,
    )


def tries_by_worker(celery_stack, runs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """worker -> ``dag_id.task_id[map_index]#try`` of every try it ran, over ``runs``."""
    from celery_stack import worker_of

    by_worker: dict[str, list[str]] = {}
    for dag_id, run_id in runs:
        for t in celery_stack.task_tries(dag_id, run_id):
            if not t["hostname"]:
                continue  # never started (skipped by a branch) or deferred-only
            index = f"[{t['map_index']}]" if t["map_index"] >= 0 else ""
            by_worker.setdefault(worker_of(t["hostname"]), []).append(
                f"{dag_id}.{t['task_id']}{index}#{t['try_number']}"
            )
    return by_worker


def test_tasks_of_one_run_are_executed_by_both_workers(celery_stack):
    from celery_stack import worker_of

    api = celery_stack.api()
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

    # Each task process was forked from a worker that imported hr_pipeline.ops.preload
    # (hr_pipeline.ops.celery_config): it imported neither Great Expectations nor the task
    # modules itself.
    found = [api.return_value("hr_celery_probe", run_id, "work", ti["map_index"]) for ti in instances]
    print(
        "probe run: task start-ups on the Celery workers "
        + ", ".join(f"{entry['start_up']:.2f}" for entry in sorted(found, key=lambda e: e["start_up"]))
        + " s"
    )
    not_preloaded = [
        entry for entry in found if not (entry["great_expectations"] and entry["hr_pipeline_ingest"])
    ]
    assert not not_preloaded, f"task processes that found the preload missing: {not_preloaded}"


def test_end_to_end_on_two_workers(celery_stack, user):
    """Ingest the three real extracts, publish metrics, back up, damage, restore, publish again."""
    from stack_support import TABLES, parse_instant, wait_for_metrics_run

    started = time.monotonic()
    runs: list[tuple[str, str]] = []
    ingests = {}
    for table in TABLES:
        user.upload_extract(table)
        ingests[table] = user.run_to_end("ingest_table", {"table_name": table})
        runs.append(("ingest_table", ingests[table]["dag_run_id"]))
    assert {t: user.row_count(t) for t in TABLES} == {"departments": 12, "jobs": 183, "hired_employees": 1929}
    assert user.blob_names("AZURE_BLOB_CONTAINER_RAW_DATA", "incoming/") == []
    assert user.blob_names("AZURE_BLOB_CONTAINER_RAW_DATA", "rejected/hired_employees/")
    ingest_seconds = time.monotonic() - started

    metrics = wait_for_metrics_run(
        user, parse_instant(ingests["hired_employees"]["start_date"]), "warehouse.hired_employees"
    )
    runs.append(("publish_metrics", metrics["dag_run_id"]))
    assert user.sql("SELECT sum(q1 + q2 + q3 + q4) FROM quarterly_hires_2021")[0][0] == 1643
    above_mean = user.sql("SELECT department, hired FROM departments_above_mean_2021 ORDER BY hired DESC")
    assert len(above_mean) == 7
    assert above_mean[0] == ("Support", 216)

    backup = user.run_to_end("backup_tables", {"tables": list(TABLES)})
    runs.append(("backup_tables", backup["dag_run_id"]))
    for table in TABLES:
        assert user.blob_names("AZURE_BLOB_CONTAINER_BACKUPS", f"{table}/"), table

    user.sql("DELETE FROM hired_employees WHERE id > 1000")
    assert user.row_count("hired_employees") < 1929
    restore = user.run_to_end("restore_table", {"table_name": "hired_employees", "backup": "latest"})
    runs.append(("restore_table", restore["dag_run_id"]))
    assert user.row_count("hired_employees") == 1929
    again = wait_for_metrics_run(user, parse_instant(restore["start_date"]), "warehouse.hired_employees")
    runs.append(("publish_metrics", again["dag_run_id"]))
    assert user.sql("SELECT sum(q1 + q2 + q3 + q4) FROM quarterly_hires_2021")[0][0] == 1643

    seconds = time.monotonic() - started
    by_worker = tries_by_worker(celery_stack, runs)
    FIGURES.update(
        celery_full_ingest_seconds=round(ingest_seconds, 1),
        celery_scenario_seconds=round(seconds, 1),
        scenario_tries_per_worker={w: len(t) for w, t in sorted(by_worker.items())},
    )
    print(
        f"\n[celery] ingest of the three real extracts: {ingest_seconds:.1f} s; whole scenario "
        f"(ingest, metrics, backup, restore, metrics): {seconds:.1f} s"
    )
    for worker, tries in sorted(by_worker.items()):
        print(f"[celery] {worker} ran {len(tries)} task tries: {', '.join(tries)}")
    assert set(by_worker) == {"w1", "w2"}, by_worker


def write_generated_hires(path: Path, rows: int, first_id: int) -> None:
    """``rows`` valid hires of 2019 (a year absent from the real extracts), ids from ``first_id``."""
    with open(path, "w", newline="") as out:
        for n in range(rows):
            second = n % 86_400
            out.write(
                f"{first_id + n},Generated Person {n},2019-{1 + n % 12:02d}-{1 + n % 28:02d}T"
                f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z,"
                f"{1 + n % 12},{1 + n % 183}\n"
            )


def wait_for_running_load(api, run_id: str) -> dict:
    """The task instance of ``load`` once it runs on a worker (its hostname known)."""

    def loading():
        for ti in api.task_instances("ingest_table", run_id):
            if ti["task_id"] == "load" and ti["state"] == "running" and ti["hostname"]:
                return ti
        assert api.run("ingest_table", run_id)["state"] in ("queued", "running")
        return None

    deadline = time.monotonic() + 600
    while (running := loading()) is None:
        assert time.monotonic() < deadline, api.failure_report("ingest_table", run_id)
        time.sleep(0.5)
    return running


def assert_generated_rows_loaded_once(user, before: int, first_id: int) -> None:
    """Every generated row in the table once, none missing, and no file left waiting."""
    assert user.row_count("hired_employees") == before + GENERATED_ROWS
    assert user.sql(
        "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM hired_employees WHERE id >= %s",
        (first_id,),
    )[0] == (GENERATED_ROWS, GENERATED_ROWS, first_id, first_id + GENERATED_ROWS - 1)
    assert user.blob_names("AZURE_BLOB_CONTAINER_RAW_DATA", "incoming/") == []


def test_a_worker_killed_mid_load_loses_no_data(celery_stack, user, tmp_path):
    """SIGKILL the worker that is loading 200,000 rows; the retry on the other worker completes.

    Airflow 3.3 finds the orphaned task by its missing heartbeat (the task supervisor died with
    the worker): after [scheduler] task_instance_heartbeat_timeout (20 s here) the scheduler fails
    that try for retry (retries=2 in the DAG's default_args) and Celery hands the retry to the
    surviving worker. Rows the dead try had committed are upserted again: same table, no
    duplicates, nothing missing.
    """
    from celery_stack import worker_of
    from stack_support import parse_instant, wait_for_metrics_run

    before = user.row_count("hired_employees")
    assert before == 1929  # the end-to-end test left the real extracts loaded
    first_id = 1_000_001
    extract = tmp_path / "generated_hires.csv"
    write_generated_hires(extract, GENERATED_ROWS, first_id)
    user.upload_extract("hired_employees", extract, "generated_hires.csv")

    api = user.api
    started = time.monotonic()
    # Small batches (2,000 transactions): the load, COPY straight into the table over two
    # connections, must still be running when the kill lands.
    run_id = api.trigger_run("ingest_table", {"table_name": "hired_employees", "batch_size": 100})

    running = wait_for_running_load(api, run_id)
    victim = worker_of(running["hostname"])
    survivor = ({"w1", "w2"} - {victim}).pop()
    # Let it commit some batches first, so the kill really lands in the middle of the load.
    deadline = time.monotonic() + 300
    while user.row_count("hired_employees") <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = celery_stack.kill_worker(victim)
    time.sleep(1)  # a COMMIT already on the wire when the client died still lands
    rows_at_kill = user.row_count("hired_employees") - before
    killed_after = time.monotonic() - started
    print(
        f"\n[celery] killed {victim} (SIGKILL to its {len(killed)} processes: Celery parent, pool, "
        f"task supervisor, task runner) {killed_after:.1f} s into the run, while it ran "
        f"load (hired_employees) try {running['try_number']}: {rows_at_kill} of {GENERATED_ROWS} "
        f"rows committed at that moment"
    )
    import psutil

    assert len(killed) >= 4
    assert not any(psutil.pid_exists(pid) for pid in killed)
    # Nothing of the dead worker writes on (the retry cannot start before the heartbeat timeout).
    time.sleep(5)
    assert user.row_count("hired_employees") - before == rows_at_kill

    run = api.wait_for_run("ingest_table", run_id, timeout=900)
    seconds = time.monotonic() - started
    assert run["state"] == "success", api.failure_report("ingest_table", run_id)

    tries = [t for t in celery_stack.task_tries("ingest_table", run_id) if t["task_id"] == "load"]
    print(
        "[celery] load (hired_employees) tries: "
        + "; ".join(f"#{t['try_number']} {t['state']} on {t['hostname']}" for t in tries)
        + f"; run succeeded {seconds:.1f} s after trigger"
    )
    first = [t for t in tries if t["try_number"] == running["try_number"]]
    assert first
    assert worker_of(first[0]["hostname"]) == victim
    assert first[0]["state"] in ("failed", "up_for_retry"), tries
    final = max(tries, key=lambda t: t["try_number"])
    assert final["state"] == "success"
    assert final["try_number"] > running["try_number"]
    assert worker_of(final["hostname"]) == survivor

    # No data lost, none doubled (the key is the primary key: count == distinct ids).
    assert 0 < rows_at_kill < GENERATED_ROWS, "the kill did not land in the middle of the load"
    assert_generated_rows_loaded_once(user, before, first_id)

    # The metrics follow: 2019 appears with every generated hire, 2021 is untouched.
    wait_for_metrics_run(user, parse_instant(run["start_date"]), "warehouse.hired_employees", timeout=600)
    assert (
        user.sql("SELECT sum(q1 + q2 + q3 + q4) FROM hires_by_quarter WHERE year = 2019")[0][0]
        == GENERATED_ROWS
    )
    assert user.sql("SELECT sum(q1 + q2 + q3 + q4) FROM quarterly_hires_2021")[0][0] == 1643
    FIGURES.update(
        killed_worker=victim,
        rows_committed_at_kill=rows_at_kill,
        kill_run_seconds=round(seconds, 1),
        load_tries=[(t["try_number"], t["state"], t["hostname"]) for t in tries],
    )
    print(f"[celery] figures: {FIGURES}")
