"""Runs of one table that overlap, on Azurite and a real warehouse: the ingest lock, claims pinned
to the version that was listed, and the take-over of a run that ended holding the lock."""

from __future__ import annotations

import threading

import pytest

from hr_pipeline.ingest.archive import archive_ingested
from hr_pipeline.ingest.load import load_validated
from hr_pipeline.ingest.validate import validate_incoming
from hr_pipeline.storage.claims import IngestLock, IngestLockTimeout
from hr_pipeline.storage.layout import lock_name
from tests.integration.ingest_helpers import blob_names, drop_file, raw_container

DAY = "2026-01-02"


def ingest(table: str, run_id: str, **kwargs) -> list[dict]:
    return validate_incoming(table, run_id=run_id, day=DAY, **kwargs)


def finish(table: str, validations: list[dict], run_id: str) -> list[str]:
    load_validated(table, validations, batch_size=2)
    return archive_ingested(table, validations, day=DAY, run_id=run_id)


def jobs(warehouse) -> dict[int, str]:
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT id, job FROM jobs")
        return dict(cursor.fetchall())


def test_a_file_replaced_while_its_run_is_in_flight_is_left_for_the_next_run(blob_store, warehouse):
    """The run loads and archives exactly the version it validated; the new upload under the
    same name stays in incoming/, and the next run ingests it."""
    drop_file(blob_store, "jobs", "1,Old title\n", "jobs.csv")
    validations = ingest("jobs", "run-a")
    drop_file(blob_store, "jobs", "1,New title\n", "jobs.csv")  # replaced mid-run

    finish("jobs", validations, "run-a")

    assert jobs(warehouse) == {1: "Old title"}
    archived = blob_names(blob_store, "archive/jobs/")
    assert [blob_store.download_bytes(raw_container(), n) for n in archived] == [b"1,Old title\n"]
    assert blob_names(blob_store, "incoming/jobs/") == ["incoming/jobs/jobs.csv"]

    finish("jobs", ingest("jobs", "run-b"), "run-b")
    assert jobs(warehouse) == {1: "New title"}
    assert blob_names(blob_store, "incoming/") == []
    assert blob_names(blob_store, "processing/") == []


def test_a_run_waits_while_another_run_of_the_table_holds_its_lock(blob_store, sqlite_warehouse, monkeypatch):
    drop_file(blob_store, "jobs", "1,First\n", "a.csv")
    first = ingest("jobs", "run-a")  # holds the lock until its archive
    drop_file(blob_store, "jobs", "1,Second\n", "b.csv")

    monkeypatch.setenv("HR_INGEST_LOCK_TIMEOUT_SECONDS", "1")
    with pytest.raises(IngestLockTimeout, match="run-a still holds the ingest lock"):
        ingest("jobs", "run-b")
    assert blob_names(blob_store, "incoming/jobs/") == ["incoming/jobs/b.csv"]  # not claimed

    # With a longer wait, run-b goes on as soon as run-a releases the lock: after a's file.
    monkeypatch.setenv("HR_INGEST_LOCK_TIMEOUT_SECONDS", "120")
    second: list = []
    waiting = threading.Thread(target=lambda: second.extend(ingest("jobs", "run-b")))
    waiting.start()
    finish("jobs", first, "run-a")
    waiting.join(timeout=120)
    assert not waiting.is_alive()
    finish("jobs", second, "run-b")
    assert jobs(sqlite_warehouse) == {1: "Second"}  # the files in the order they were claimed


def test_runs_of_different_tables_do_not_share_a_lock(blob_store, sqlite_warehouse):
    drop_file(blob_store, "jobs", "1,Nurse\n", "j.csv")
    drop_file(blob_store, "departments", "1,Sales\n", "d.csv")
    jobs_run = ingest("jobs", "run-jobs")
    departments_run = ingest("departments", "run-departments")  # does not wait for run-jobs
    finish("departments", departments_run, "run-departments")
    finish("jobs", jobs_run, "run-jobs")
    assert sqlite_warehouse.key_values("jobs") == {1}
    assert sqlite_warehouse.key_values("departments") == {1}


def test_the_next_run_takes_over_the_files_of_a_run_that_ended_holding_the_lock(blob_store, warehouse):
    """Run a claims two files and dies before loading; run b takes them over, loads them before
    its own file, in claim order, and drops a's hand-over files."""
    drop_file(blob_store, "jobs", "1,From a1\n2,From a1\n", "a1.csv")
    drop_file(blob_store, "jobs", "1,From a2\n", "a2.csv")
    ingest("jobs", "run-a")  # validated, never loaded
    drop_file(blob_store, "jobs", "2,From b\n", "b.csv")

    validations = ingest("jobs", "run-b", run_has_ended=lambda run_id: run_id == "run-a")

    assert [v["source"] for v in validations] == [
        "incoming/jobs/a1.csv",
        "incoming/jobs/a2.csv",
        "incoming/jobs/b.csv",
    ]
    assert blob_names(blob_store, "processing/jobs/run-a/") == []
    finish("jobs", validations, "run-b")
    assert jobs(warehouse) == {1: "From a2", 2: "From b"}
    assert len(blob_names(blob_store, "archive/jobs/")) == 3
    assert not blob_store.exists(raw_container(), lock_name("jobs"))


def test_a_retried_validate_keeps_its_claims_and_its_lock(blob_store, sqlite_warehouse):
    drop_file(blob_store, "jobs", "1,Nurse\n", "a.csv")
    first_try = ingest("jobs", "run-a")
    drop_file(blob_store, "jobs", "2,Cook\n", "b.csv")
    second_try = ingest("jobs", "run-a")  # the task retried: same run, lock re-entered
    assert [v["source"] for v in second_try] == [v["source"] for v in first_try] + ["incoming/jobs/b.csv"]
    finish("jobs", second_try, "run-a")
    assert sqlite_warehouse.key_values("jobs") == {1, 2}


def test_nothing_waiting_leaves_no_lock(blob_store, sqlite_warehouse):
    assert ingest("jobs", "run-a") == []
    assert not blob_store.exists(raw_container(), lock_name("jobs"))
    lock = IngestLock(blob_store, raw_container(), "jobs", "run-b")
    lock.acquire(timeout_seconds=1)
    assert lock.holder()[0] == "run-b"
    lock.release()


def test_references_removed_between_validation_and_load_are_rejected_at_load(blob_store, warehouse):
    """Hires validated against departments 10 and 11; then departments is restored from a backup
    without them; then the hires load. The load checks the references again inside its lock:
    the rows pointing at 10 and 11 are rejected with a reason, the others load, and the counts
    still add up (loaded + rejected = rows)."""
    from hr_pipeline.backup.backups import backup_table
    from hr_pipeline.backup.restore import restore_table

    drop_file(blob_store, "departments", "1,Sales\n", "d1.csv")
    drop_file(blob_store, "jobs", "1,Nurse\n", "j.csv")
    finish("departments", ingest("departments", "run-d1"), "run-d1")
    finish("jobs", ingest("jobs", "run-j"), "run-j")
    backup = backup_table("departments", warehouse=warehouse, store=blob_store)
    drop_file(blob_store, "departments", "10,Ten\n11,Eleven\n", "d2.csv")
    finish("departments", ingest("departments", "run-d2"), "run-d2")
    drop_file(
        blob_store,
        "hired_employees",
        "1,Ann,2021-01-01T00:00:00Z,1,1\n2,Bob,2021-02-01T00:00:00Z,10,1\n"
        "3,Cy,2021-03-01T00:00:00Z,11,1\nx,Bad,2021-03-01T00:00:00Z,1,1\n",
        "h.csv",
    )
    validations = ingest("hired_employees", "run-h")
    assert validations[0]["valid"] == 3

    restore_table("departments", backup=backup.blob_name, warehouse=warehouse, store=blob_store)
    summary = finish("hired_employees", validations, "run-h")

    assert warehouse.key_values("hired_employees") == {1}
    assert "4 rows, 1 loaded, 3 rejected" in summary[0]
    rejects = [n for n in blob_names(blob_store, "rejected/hired_employees/") if n.endswith(".rejects.csv")]
    from tests.integration.ingest_helpers import read_rejects

    reasons = {row["id"]: row["reason"] for row in read_rejects(blob_store, rejects[0])}
    assert set(reasons) == {"x", "2", "3"}
    assert (
        "department_id: 10 does not exist in departments (removed after this file was validated)"
        in reasons["2"]
    )
    assert blob_names(blob_store, "processing/") == []


def test_hires_wait_for_an_ingest_of_a_table_they_reference(blob_store, sqlite_warehouse):
    """Departments and hires landing together: the hires are validated only once the departments
    ingest in progress has released its lock, so the new departments count as existing."""
    drop_file(blob_store, "departments", "7,New\n", "d.csv")
    departments = ingest("departments", "run-d")  # in progress: holds its lock
    drop_file(blob_store, "hired_employees", "1,Ann,2021-01-01T00:00:00Z,7,1\n", "h.csv")
    drop_file(blob_store, "jobs", "1,Nurse\n", "j.csv")
    finish("jobs", ingest("jobs", "run-j"), "run-j")

    hires: list = []
    waiting = threading.Thread(target=lambda: hires.extend(ingest("hired_employees", "run-h")))
    waiting.start()
    waiting.join(timeout=3)
    assert waiting.is_alive()  # waits for run-d
    finish("departments", departments, "run-d")
    waiting.join(timeout=120)
    assert not waiting.is_alive()
    assert hires[0]["valid"] == 1  # department 7 existed by then
