"""The ingest ledger (``ingest_files``) and the reject-rate limit, through dag.test() on Azurite
with SQLite and PostgreSQL warehouses."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import SAMPLE_DATA
from tests.integration.ingest_helpers import blob_names, drop_file, drop_sample, raw_container, run_ingest

pytestmark = pytest.mark.usefixtures("airflow_db")


def ledger_rows(warehouse) -> list[dict]:
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT * FROM ingest_files ORDER BY ingested_at, file")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def test_the_ledger_has_one_row_per_ingested_file_with_counts_and_checksum(blob_store, warehouse):
    for table in ("departments", "jobs", "hired_employees"):
        drop_sample(blob_store, table)
        assert str(run_ingest(table).state) == "success"

    rows = ledger_rows(warehouse)
    assert [(r["table_name"], r["rows"], r["loaded"], r["rejected"], r["status"]) for r in rows] == [
        ("departments", 12, 12, 0, "loaded"),
        ("jobs", 183, 183, 0, "loaded"),
        ("hired_employees", 1999, 1929, 70, "loaded"),
    ]
    hires = rows[2]
    sample = (SAMPLE_DATA / "hired_employees.csv").read_bytes()
    assert hires["sha256"] == hashlib.sha256(sample).hexdigest()
    assert hires["bytes"] == len(sample)
    assert hires["file"] == "incoming/hired_employees/hired_employees.csv"
    assert hires["archived_as"] in blob_names(blob_store, "archive/")
    assert hires["rejects_file"] in blob_names(blob_store, "rejected/")
    assert rows[0]["rejects_file"] is None
    assert hires["same_as_run"] is None

    drop_sample(blob_store, "hired_employees")  # the same bytes again: ingested, and said so
    again = run_ingest("hired_employees")
    assert str(again.state) == "success"
    latest = ledger_rows(warehouse)[-1]
    assert latest["run_id"] == again.run_id
    assert latest["same_as_run"] == hires["run_id"]
    assert latest["loaded"] == 1929


def test_a_file_over_the_reject_limit_is_set_aside_whole_and_the_others_load(blob_store, warehouse):
    """3 of 10 rows rejected (30%) with the default limit of 10%: the file is not loaded, goes
    whole to rejected/ with a reason giving the share and the most frequent reasons; the clean
    file of the same run loads; the run fails naming the file; the ledger says what happened."""
    good = "".join(f"{i},Department {i}\n" for i in range(1, 8))
    drop_file(blob_store, "departments", good + "x,Bad\ny,Bad\n9,\n", "a.csv")
    drop_file(blob_store, "departments", "20,Clean\n", "b.csv")

    run = run_ingest("departments")

    assert str(run.state) == "failed"
    assert warehouse.key_values("departments") == {20}
    set_aside = [n for n in blob_names(blob_store, "rejected/departments/") if "/a." in n]
    assert sorted(n.rsplit("/", 1)[-1] for n in set_aside) == ["a.csv", "a.csv.reason.txt", "a.rejects.csv"]
    reason = blob_store.download_bytes(
        raw_container(), next(n for n in set_aside if n.endswith(".txt"))
    ).decode()
    assert "3 of 10 rows rejected (30.0%), above the run's max_reject_ratio of 10.0%" in reason
    assert "id: integer (2)" in reason
    assert "department: required (1)" in reason
    statuses = {
        r["file"].rsplit("/", 1)[-1]: (r["status"], r["loaded"], r["rejected"])
        for r in ledger_rows(warehouse)
    }
    assert statuses == {"a.csv": ("over_reject_limit", 0, 3), "b.csv": ("loaded", 1, 0)}
    assert blob_names(blob_store, "incoming/") == []
    assert blob_names(blob_store, "processing/") == []
