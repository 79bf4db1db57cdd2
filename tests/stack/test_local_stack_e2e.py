"""End to end on a real local Airflow (LocalExecutor, triggerer, Azurite, PostgreSQL warehouse),
driven only through the REST API and blob uploads, as a user's script would.

The stack, the ingest of the real extracts and the first publish_metrics run are session fixtures
(tests/stack/conftest.py); the tests below check what they produced, then back up, restore with
``as_of``, refuse a bad trigger, and resume a deferred sensor. Nothing is mocked.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import httpx
import pytest
from stack_support import SAMPLE_DATA, parse_instant, wait_for_metrics_run

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.postgres, pytest.mark.azurite]


def test_api_is_healthy_and_needs_a_token(local_stack):
    health = httpx.get(f"{local_stack.url}/api/v2/monitor/health", timeout=10).json()
    assert {
        part: health[part]["status"] for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
    } == dict.fromkeys(("metadatabase", "scheduler", "triggerer", "dag_processor"), "healthy")
    assert httpx.get(f"{local_stack.url}/api/v2/dags", timeout=10).status_code == 401
    wrong = httpx.post(
        f"{local_stack.url}/auth/token",
        json={"username": "admin", "password": "not-the-password"},
        timeout=10,
    )
    assert wrong.status_code == 401
    print(f"\n[stack] start to healthy API: {local_stack.startup_seconds:.1f} s")


def test_ingest_of_the_real_extracts_loads_every_valid_row(local_stack, ingested):
    assert {table: local_stack.row_count(table) for table in ingested} == {
        "departments": 12,
        "jobs": 183,
        "hired_employees": 1929,
    }
    # Each file left the landing zone for the archive; the 70 incomplete hires went to rejects.
    assert local_stack.blob_names("AZURE_BLOB_CONTAINER_RAW_DATA", "incoming/") == []
    archived = local_stack.blob_names("AZURE_BLOB_CONTAINER_RAW_DATA", "archive/")
    journaled = [name for name in archived if name.startswith("archive/journal/")]
    assert {name.split("/")[1] for name in archived if name not in journaled} == set(ingested)
    # The rows each load committed, kept for point-in-time restores.
    assert {name.split("/")[2] for name in journaled} == set(ingested)
    assert local_stack.blob_names("AZURE_BLOB_CONTAINER_RAW_DATA", "rejected/hired_employees/")
    print(f"\n[stack] full ingest through the REST API: {local_stack.figures['full_ingest_seconds']:.1f} s")


def test_publish_metrics_runs_from_the_asset_events(local_stack, published):
    assert published["run_type"] == "asset_triggered"
    hires_2021 = local_stack.sql("SELECT sum(q1 + q2 + q3 + q4), count(*) FROM quarterly_hires_2021")[0]
    assert hires_2021[0] == 1643
    first_rows = local_stack.sql(
        "SELECT department, job FROM quarterly_hires_2021 ORDER BY department, job LIMIT 2"
    )
    assert first_rows == sorted(first_rows)
    above_mean = local_stack.sql(
        "SELECT department, hired FROM departments_above_mean_2021 ORDER BY hired DESC"
    )
    assert len(above_mean) == 7
    assert above_mean[0] == ("Support", 216)


def test_a_table_outside_the_contract_is_refused_by_the_api(local_stack):
    response = local_stack.api.trigger("ingest_table", {"table_name": "employees"})
    assert response.status_code == 400, response.text
    message = response.json()["detail"]
    assert "table_name" in message
    assert "'employees' is not one of" in message
    assert "hired_employees" in message  # the message lists the valid choices


def test_backup_then_restore_as_of_an_instant_before_a_damage(local_stack, published):
    """Back up jobs, damage the table, back up the damage, then restore as of the instant between
    the two backups: the older, intact backup comes back (``latest`` would bring the damage)."""
    local_stack.run_to_end("backup_tables", {"tables": ["jobs"]})
    between = datetime.now(timezone.utc)
    local_stack.sql("DELETE FROM jobs WHERE id > 100")
    assert local_stack.row_count("jobs") == 100
    local_stack.run_to_end("backup_tables", {"tables": ["jobs"]})
    backups = local_stack.blob_names("AZURE_BLOB_CONTAINER_BACKUPS", "jobs/")
    assert len(backups) >= 2
    assert all(name.endswith(".avro") for name in backups)

    restore = local_stack.run_to_end(
        "restore_table",
        {"table_name": "jobs", "backup": "latest", "as_of": between.isoformat().replace("+00:00", "Z")},
    )
    assert local_stack.row_count("jobs") == 183
    # The restore is a producer of the jobs asset: publish_metrics runs again, and the metrics
    # are those of the restored (intact) data.
    wait_for_metrics_run(local_stack, parse_instant(restore["start_date"]), "warehouse.jobs")
    assert local_stack.sql("SELECT sum(q1 + q2 + q3 + q4) FROM quarterly_hires_2021")[0][0] == 1643


def _deferred_task(api, dag_id: str, run_id: str, timeout: float = 600.0) -> str:
    deadline = time.monotonic() + timeout
    states: dict = {}
    while time.monotonic() < deadline:
        states = {ti["task_id"]: ti["state"] for ti in api.task_instances(dag_id, run_id)}
        deferred = [task_id for task_id, state in states.items() if state == "deferred"]
        if deferred:
            return deferred[0]
        assert api.run(dag_id, run_id)["state"] in ("queued", "running"), states
        time.sleep(0.5)
    pytest.fail(f"no task of {dag_id} {run_id} was deferred within {timeout:.0f} s: {states}")


def test_a_sensor_waiting_for_a_file_resumes_once_it_arrives(local_stack, ingested):
    """Trigger with an empty landing zone: the sensor defers to the triggerer; the upload wakes it."""
    api = local_stack.api
    assert local_stack.blob_names("AZURE_BLOB_CONTAINER_RAW_DATA", "incoming/departments/") == []
    run_id = api.trigger_run("ingest_table", {"table_name": "departments"})
    sensor = _deferred_task(api, "ingest_table", run_id)
    assert api.run("ingest_table", run_id)["state"] == "running"

    local_stack.upload_extract("departments", SAMPLE_DATA / "departments.csv", "late_departments.csv")
    run = api.wait_for_run("ingest_table", run_id, timeout=900)
    assert run["state"] == "success", api.failure_report("ingest_table", run_id)
    instances = {ti["task_id"]: ti for ti in api.task_instances("ingest_table", run_id)}
    assert instances[sensor]["state"] == "success"
    # Its log, read through the REST API, holds the trigger's finding.
    log_text = api.task_log("ingest_table", run_id, sensor, instances[sensor]["try_number"])
    assert "Prefix incoming/departments/ found in container" in log_text, log_text[-2000:]
    assert local_stack.row_count("departments") == 12  # an upsert of the same rows
    assert local_stack.blob_names("AZURE_BLOB_CONTAINER_RAW_DATA", "incoming/departments/") == []


def _restore_result(local_stack, run: dict) -> dict:
    """The restore task's return value, read through the REST API as a user would."""
    return local_stack.api.return_value("restore_table", run["dag_run_id"], "restore")


def test_restore_as_of_an_instant_replays_the_loads_after_the_backup(local_stack, published, tmp_path):
    """Through the REST API: back up jobs, ingest a corrected extract, note the instant, ingest
    another; a dry run as of that instant says what it would change and changes nothing; the
    restore brings the table back as it was then (the backup plus the first ingest); a restore as
    of the instant before both puts the table back whole."""

    def jobs() -> dict:
        return dict(local_stack.sql("SELECT id, job FROM jobs"))

    def ingest(text: str, name: str) -> None:
        path = tmp_path / name
        path.write_text(text)
        local_stack.upload_extract("jobs", path)
        local_stack.run_to_end("ingest_table", {"table_name": "jobs", "wait_minutes": 0})

    def restore(instant: datetime, dry_run: bool = False) -> dict:
        as_of = instant.isoformat().replace("+00:00", "Z")
        conf = {"table_name": "jobs", "backup": "latest", "as_of": as_of, "dry_run": dry_run}
        return _restore_result(local_stack, local_stack.run_to_end("restore_table", conf))

    original = jobs()
    local_stack.run_to_end("backup_tables", {"tables": ["jobs"]})
    start = datetime.now(timezone.utc)
    ingest("1,Corrected title one\n2,Corrected title two\n", "jobs_corrected.csv")
    between = datetime.now(timezone.utc)
    then = jobs()
    ingest("1,Third title\n9999,A new job\n", "jobs_new.csv")
    now = jobs()

    said = restore(between, dry_run=True)
    assert jobs() == now
    assert said["dry_run"] is True
    assert (said["rows_added"], said["rows_removed"], said["rows_changed"]) == (0, 1, 1)
    assert len(said["replayed"]) == 1

    done = restore(between)
    assert jobs() == then
    assert (done["rows"], len(done["replayed"])) == (len(then), 1)
    restore(start)
    assert jobs() == original
