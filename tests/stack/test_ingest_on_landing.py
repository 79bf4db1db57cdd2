"""Ingest on landing, on the real local stack (scheduler, triggerer, api-server): the three real
extracts are uploaded and nothing else is done; ingest_on_landing starts ingest_table for each
table, the tables load, publish_metrics runs, and the metric tables are exact."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from stack_support import TABLES, wait_for_metrics_run


def test_extracts_that_land_ingest_themselves(local_stack, published):
    expected_metrics = {name: local_stack.sql(f'SELECT * FROM "{name}" ORDER BY 1, 2, 3')
                        for name in ("quarterly_hires_2021", "departments_above_mean_2021")}
    landed_at = datetime.now(timezone.utc)
    local_stack.api.unpause("ingest_on_landing")
    for table in TABLES:  # the same extracts under new names: upserts, so the same tables
        local_stack.upload_extract(table, name=f"landed-{table}.csv")

    deadline = time.monotonic() + 900
    rows = []
    while time.monotonic() < deadline:
        rows = local_stack.sql(
            "SELECT table_name, status, rows, loaded, rejected, run_id FROM ingest_files "
            "WHERE file LIKE %s ORDER BY table_name", ("incoming/%/landed-%",))
        if len(rows) == 3:
            break
        time.sleep(2)
    assert [row[:5] for row in rows] == [
        ("departments", "loaded", 12, 12, 0), ("hired_employees", "loaded", 1999, 1929, 70),
        ("jobs", "loaded", 183, 183, 0)], rows
    started_by = {run["conf"].get("table_name"): run for run in local_stack.api.json(
        "GET", "/api/v2/dags/ingest_table/dagRuns",
        params={"order_by": "-run_after", "limit": 20})["dag_runs"]
        if run["dag_run_id"] in {row[5] for row in rows}}
    assert set(started_by) == set(TABLES)  # one run per table, started by ingest_on_landing

    wait_for_metrics_run(local_stack, landed_at, "warehouse.hired_employees")
    for name, expected in expected_metrics.items():
        assert local_stack.sql(f'SELECT * FROM "{name}" ORDER BY 1, 2, 3') == expected
    assert [local_stack.row_count(table) for table in TABLES] == [12, 183, 1929]
