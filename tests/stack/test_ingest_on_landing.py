"""Ingest on landing, on the real local stack (scheduler, triggerer, api-server): the three real
extracts are uploaded and nothing else is done; ingest_on_landing starts ingest_table for each
table, the tables load, publish_metrics runs, and the metric tables are exact."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from stack_support import TABLES, wait_for_metrics_run


def test_extracts_that_land_ingest_themselves(local_stack, published):
    expected_metrics = {
        name: local_stack.sql(f'SELECT * FROM "{name}" ORDER BY 1, 2, 3')
        for name in ("quarterly_hires_2021", "departments_above_mean_2021")
    }
    landed_at = datetime.now(timezone.utc)
    local_stack.api.unpause("ingest_on_landing")
    for table in TABLES:  # the same extracts under new names: upserts, so the same tables
        local_stack.upload_extract(table, name=f"landed-{table}.csv")

    deadline = time.monotonic() + 900
    rows = []
    while time.monotonic() < deadline:
        rows = local_stack.sql(
            "SELECT table_name, status, rows, loaded, rejected, run_id FROM ingest_files "
            "WHERE file LIKE %s ORDER BY table_name",
            ("incoming/%/landed-%",),
        )
        if len(rows) == 3:
            break
        time.sleep(2)
    assert [row[:5] for row in rows] == [
        ("departments", "loaded", 12, 12, 0),
        ("hired_employees", "loaded", 1999, 1929, 70),
        ("jobs", "loaded", 183, 183, 0),
    ], rows
    started_by = {
        run["conf"].get("table_name"): run
        for run in local_stack.api.json(
            "GET", "/api/v2/dags/ingest_table/dagRuns", params={"order_by": "-run_after", "limit": 20}
        )["dag_runs"]
        if run["dag_run_id"] in {row[5] for row in rows}
    }
    assert set(started_by) == set(TABLES)  # one run per table, started by ingest_on_landing

    wait_for_metrics_run(local_stack, landed_at, "warehouse.hired_employees")
    for name, expected in expected_metrics.items():
        assert local_stack.sql(f'SELECT * FROM "{name}" ORDER BY 1, 2, 3') == expected
    assert [local_stack.row_count(table) for table in TABLES] == [12, 183, 1929]


def test_a_table_waiting_for_its_file_does_not_hold_up_another_table(local_stack, published):
    """ingest_table of jobs with no file waiting sits in its sensor; an ingest of departments
    triggered after it runs to the end meanwhile (runs of different tables never wait on each
    other), then the jobs run is stopped."""
    api = local_stack.api
    started = time.monotonic()
    waiting = api.trigger_run("ingest_table", {"table_name": "jobs"})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # until the jobs run is in its sensor
        states = {
            ti["task_id"]: ti["state"]
            for ti in api.json("GET", f"/api/v2/dags/ingest_table/dagRuns/{waiting}/taskInstances")[
                "task_instances"
            ]
        }
        if states.get("wait_for_files") in ("deferred", "running"):
            break
        time.sleep(1)
    print(f"[stack] jobs run waiting for its file {time.monotonic() - started:.1f} s after its trigger")
    local_stack.upload_extract("departments", name="while-jobs-waits.csv")
    departments = local_stack.run_to_end("ingest_table", {"table_name": "departments"}, timeout=600)
    print(
        f"[stack] departments ingested {time.monotonic() - started:.1f} s after the jobs run was "
        "triggered, while it still waited"
    )
    jobs_run = api.json("GET", f"/api/v2/dags/ingest_table/dagRuns/{waiting}")
    assert jobs_run["state"] == "running"  # still waiting for its file, and it held nothing up
    assert departments["state"] == "success"
    api.json("PATCH", f"/api/v2/dags/ingest_table/dagRuns/{waiting}", json={"state": "failed"})
