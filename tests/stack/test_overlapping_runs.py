"""Runs of one table that overlap, on the real local stack (scheduler, LocalExecutor, Azurite,
PostgreSQL): two files with overlapping ids wait, two ingest_table runs of the table are
triggered at once, and the outcome is the one a single run in file order gives: every file
loaded exactly once, the later file's rows win, and no lock or claimed file is left behind."""

from __future__ import annotations

import csv
import time

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.postgres, pytest.mark.azurite]

FIRST_IDS = range(1001, 1101)
SECOND_IDS = range(1051, 1151)  # ids 1051-1100 are in both files


def write_jobs(path, ids, label: str):
    with open(path, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([i, f"{label} {i}"] for i in ids)
    return path


def wait_until_no_ingest_runs(api, timeout: float = 600) -> None:
    """Runs started by ingest on landing (when another test unpaused it) end too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api.json("GET", "/api/v2/dags/ingest_table/dagRuns", params={"state": ["queued", "running"]})
        if not runs["dag_runs"]:
            return
        time.sleep(2)
    pytest.fail(f"ingest_table runs still active after {timeout:.0f} s: {runs['dag_runs']}")


def test_two_runs_of_one_table_load_each_file_once_in_file_order(local_stack, published, tmp_path):
    api = local_stack.api
    local_stack.upload_extract("jobs", write_jobs(tmp_path / "a.csv", FIRST_IDS, "first"), "overlap-a.csv")
    local_stack.upload_extract("jobs", write_jobs(tmp_path / "b.csv", SECOND_IDS, "second"), "overlap-b.csv")

    started = time.monotonic()
    run_ids = [api.trigger_run("ingest_table", {"table_name": "jobs"}) for _ in range(2)]
    for run_id in run_ids:
        run = api.wait_for_run("ingest_table", run_id, timeout=600)
        assert run["state"] == "success", api.failure_report("ingest_table", run_id)
    wait_until_no_ingest_runs(api)
    print(
        f"[stack] two overlapping runs of jobs ended {time.monotonic() - started:.1f} s after their trigger"
    )

    expected = {i: f"first {i}" for i in FIRST_IDS}
    expected.update({i: f"second {i}" for i in SECOND_IDS})
    assert dict(local_stack.sql("SELECT id, job FROM jobs WHERE id > 1000")) == expected

    ledger = local_stack.sql(
        "SELECT file, status, loaded, rejected FROM ingest_files WHERE file LIKE %s ORDER BY file",
        ("incoming/jobs/overlap-%",),
    )
    assert ledger == [
        ("incoming/jobs/overlap-a.csv", "loaded", 100, 0),
        ("incoming/jobs/overlap-b.csv", "loaded", 100, 0),
    ]
    raw = "AZURE_BLOB_CONTAINER_RAW_DATA"
    assert [name for name in local_stack.blob_names(raw, "incoming/jobs/") if "overlap" in name] == []
    assert [name for name in local_stack.blob_names(raw, "processing/jobs/") if "overlap" in name] == []
    assert local_stack.blob_names(raw, "processing/locks/jobs.lock") == []  # the ingest lock released
    archived = [name for name in local_stack.blob_names(raw, "archive/jobs/") if "overlap" in name]
    assert len(archived) == 2
