"""ingest_table end to end with dag.test(): Azurite for blobs, SQLite and PostgreSQL warehouses."""

from __future__ import annotations

import pytest

from tests.integration.ingest_helpers import (
    blob_names,
    drop_file,
    drop_sample,
    read_rejects,
    run_ingest,
    task_states,
)

pytestmark = pytest.mark.usefixtures("airflow_db")


def ingest_real_extracts(blob_store):
    runs = {}
    for table in ("departments", "jobs", "hired_employees"):
        drop_sample(blob_store, table)
        runs[table] = run_ingest(table)
    return runs


def test_real_extracts_load_exactly(blob_store, warehouse):
    runs = ingest_real_extracts(blob_store)

    assert {t: str(r.state) for t, r in runs.items()} == dict.fromkeys(runs, "success")
    assert warehouse.row_count("departments") == 12
    assert warehouse.row_count("jobs") == 183
    assert warehouse.row_count("hired_employees") == 1929

    day_folder = blob_names(blob_store, "archive/hired_employees/")
    assert len(day_folder) == 1
    assert day_folder[0].endswith("/hired_employees.csv")
    assert blob_names(blob_store, "incoming/") == []
    assert blob_names(blob_store, "processing/") == []
    rejects = blob_names(blob_store, "rejected/")
    assert len(rejects) == 1
    assert rejects[0].endswith("hired_employees.rejects.csv")
    rows = read_rejects(blob_store, rejects[0])
    assert len(rows) == 70
    assert all("required field is empty" in row["reason"] for row in rows)
    assert list(rows[0]) == ["id", "name", "datetime", "department_id", "job_id", "reason"]
    # each run's asset event names its own table and says what changed
    for table, run in runs.items():
        assert task_states(run)["load"] == "success"
        events = asset_events_of(run)
        assert [name for name, _ in events] == [f"warehouse.{table}"]
        extra = events[0][1]
        assert extra["rows_loaded"] == {"departments": 12, "jobs": 183, "hired_employees": 1929}[table]
        assert extra["files"][0]["file"] == f"incoming/{table}/{table}.csv"


def test_same_file_twice_leaves_same_tables(blob_store, sqlite_warehouse):
    ingest_real_extracts(blob_store)
    before = snapshot(sqlite_warehouse)
    drop_sample(blob_store, "hired_employees")
    run = run_ingest("hired_employees")
    assert str(run.state) == "success"
    assert snapshot(sqlite_warehouse) == before


def test_several_waiting_files_processed_in_name_order(blob_store, sqlite_warehouse):
    drop_sample(blob_store, "departments")
    run_ingest("departments")
    drop_file(blob_store, "jobs", "1,First title\n2,Only in a\n", "2021-01-a.csv")
    drop_file(blob_store, "jobs", "1,Second title\n", "2021-01-b.csv")
    run = run_ingest("jobs")
    assert str(run.state) == "success"
    with sqlite_warehouse.transaction() as connection:
        rows = dict(connection.execute("SELECT id, job FROM jobs").fetchall())
    assert rows == {1: "Second title", 2: "Only in a"}  # b, processed last, wins
    archived = sorted(name.rsplit("/", 1)[-1] for name in blob_names(blob_store, "archive/jobs/"))
    assert archived == ["2021-01-a.csv", "2021-01-b.csv"]


def test_unreadable_file_is_rejected_whole_and_run_fails(blob_store, sqlite_warehouse):
    drop_file(blob_store, "departments", b"1,Sales\n2,\xff\xfeMarketing\n", "latin1.csv")
    run = run_ingest("departments")
    assert str(run.state) == "failed"
    assert task_states(run)["archive"] == "failed"
    assert sqlite_warehouse.row_count("departments") == 0
    rejected = sorted(blob_names(blob_store, "rejected/departments/"))
    # the file whole, and beside it the reason
    assert [name.rsplit("/", 1)[-1] for name in rejected] == ["latin1.csv", "latin1.csv.reason.txt"]
    assert b"not UTF-8" in blob_store.download_bytes(blob_store_container(), rejected[1])
    assert blob_names(blob_store, "incoming/") == []


def test_bad_rows_go_to_rejects_with_reasons(blob_store, sqlite_warehouse):
    drop_sample(blob_store, "departments")
    drop_sample(blob_store, "jobs")
    run_ingest("departments", max_reject_ratio=1)
    run_ingest("jobs", max_reject_ratio=1)
    extract = (
        "\ufeffid,name,datetime,department_id,job_id\r\n"
        '1,"Doe, Jane ""JD""",2021-01-01T00:00:00Z,1,1\r\n'
        "2,Zoë Ångström,2021-06-30T23:59:59.123456Z,2,2\r\n"
        "3,Too few,2021-01-01T00:00:00Z,1\r\n"
        "4,Too many,2021-01-01T00:00:00Z,1,1,extra\r\n"
        "x5,Not an id,2021-01-01T00:00:00Z,1,1\r\n"
        "6,Bad day,2021-02-30T00:00:00Z,1,1\r\n"
        "7,Not a date,yesterday,1,1\r\n"
        "8,Dup A,2021-01-01T00:00:00Z,1,1\r\n"
        "8,Dup B,2021-01-01T00:00:00Z,1,1\r\n"
        "9,No such department,2021-01-01T00:00:00Z,999,1\r\n"
        "10,No such job,2021-01-01T00:00:00Z,1,999\r\n"
    )
    drop_file(blob_store, "hired_employees", extract, "mixed.csv")
    run = run_ingest("hired_employees", max_reject_ratio=1)
    assert str(run.state) == "success"
    with sqlite_warehouse.transaction() as connection:
        loaded = dict(connection.execute("SELECT id, name FROM hired_employees").fetchall())
    assert loaded == {1: 'Doe, Jane "JD"', 2: "Zoë Ångström"}
    rejects = read_rejects(blob_store, blob_names(blob_store, "rejected/hired_employees/")[0])
    reasons = {row["id"]: row["reason"] for row in rejects if row["id"] != "8"}
    assert len(rejects) + len(loaded) == 11
    assert "has 4 fields, expected 5" in reasons["3"]
    assert "has 6 fields, expected 5" in reasons["4"]
    assert "'x5' is not an integer" in reasons["x5"]
    assert "not a real date" in reasons["6"]
    assert "not an ISO 8601 UTC instant" in reasons["7"]
    assert "department_id: 999 does not exist in departments" in reasons["9"]
    assert "job_id: 999 does not exist in jobs" in reasons["10"]
    duplicates = [row for row in rejects if row["id"] == "8"]
    assert len(duplicates) == 2
    assert all("appears 2 times" in r["reason"] for r in duplicates)
    assert reasons["6"].startswith("row 7:")


def asset_events_of(run) -> list[tuple[str, dict]]:
    """The asset events a dag.test() run emitted: (asset name, extra).

    Neither the DagRun dag.test() returns nor its task instances list them, and no public API
    gives them short of the REST API server, which a dag.test() run has not got: they are read
    from the test's own metadata database."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session  # noqa: TID251 - no public API, see the docstring
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.name, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_run_id == run.run_id, AssetEvent.source_dag_id == run.dag_id)
        ).all()
    return [(name, dict(extra or {})) for name, extra in rows]


def test_a_run_that_loads_nothing_emits_no_asset_event(blob_store, sqlite_warehouse):
    drop_file(blob_store, "jobs", "x,only bad rows\n", "bad.csv")
    run = run_ingest("jobs", max_reject_ratio=1)
    assert str(run.state) == "success"
    assert asset_events_of(run) == []


def blob_store_container():
    import os

    return os.environ["AZURE_BLOB_CONTAINER_RAW_DATA"]


def snapshot(warehouse) -> dict[str, list[tuple]]:
    tables = {}
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        for table in ("departments", "jobs", "hired_employees"):
            cursor.execute(f"SELECT * FROM {table} ORDER BY id")
            tables[table] = [tuple(row) for row in cursor.fetchall()]
    return tables


def test_empty_header_only_and_wrong_shape_files(blob_store, sqlite_warehouse):
    drop_file(blob_store, "departments", "", "a-empty.csv")
    drop_file(blob_store, "departments", "id,department\r\n", "b-header-only.csv")
    # a hired_employees extract dropped in the departments folder
    drop_file(
        blob_store,
        "departments",
        "1,Ann,2021-01-01T00:00:00Z,1,1\n2,Bob,2021-01-01T00:00:00Z,1,1\n",
        "c-wrong-table.csv",
    )
    drop_file(blob_store, "departments", "id,job\n7,Nurse\n", "d-jobs-header.csv")
    run = run_ingest("departments", max_reject_ratio=1)
    assert str(run.state) == "success"
    assert sqlite_warehouse.key_values("departments") == {7}  # the jobs file's data row fits
    archived = blob_names(blob_store, "archive/departments/")
    assert len(archived) == 4  # every file is archived, even empty ones
    rejects = {
        name.rsplit("/", 1)[-1]: read_rejects(blob_store, name)
        for name in blob_names(blob_store, "rejected/departments/")
    }
    assert set(rejects) == {"c-wrong-table.rejects.csv", "d-jobs-header.rejects.csv"}
    assert len(rejects["c-wrong-table.rejects.csv"]) == 2
    assert all("has 5 fields, expected 2" in r["reason"] for r in rejects["c-wrong-table.rejects.csv"])
    assert "header row of table jobs" in rejects["d-jobs-header.rejects.csv"][0]["reason"]
