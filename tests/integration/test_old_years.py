"""Timestamps over the contract's whole range, years 0001-9999, on SQLite and PostgreSQL.

SQLite stores a timestamp as fixed-width text ``YYYY-MM-DDTHH:MM:SS.ffffffZ``. Writing it with
``strftime('%Y')`` left years before 1000 unpadded on Linux ('1-01-01T...'): after a backup and a
restore such rows read back wrong, the metrics' year was NULL (their checks failed), and the next
backup of the table failed (``Invalid isoformat string``). Here the edge years go through a load,
a backup, a restore, a second backup and restore, and the metrics, and come back exactly.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pytest

from hr_pipeline import metrics
from hr_pipeline.backup import backups as backup_logic
from hr_pipeline.backup import restore as restore_logic
from hr_pipeline.contract.instants import format_instant, parse_stored_timestamp
from hr_pipeline.contract.tables import get_contract
from hr_pipeline.warehouse.facade import CsvBatch
from tests.integration.test_backup_restore_dags import table_rows

INSTANTS = {
    1: datetime(1, 1, 1, 0, 0, 0),
    2: datetime(999, 12, 31, 23, 59, 59, 999999),
    3: datetime(1000, 1, 1, 0, 0, 0),
    4: datetime(9999, 12, 31, 23, 59, 59, 999999),
}
STORED = {
    1: "0001-01-01T00:00:00.000000Z",
    2: "0999-12-31T23:59:59.999999Z",
    3: "1000-01-01T00:00:00.000000Z",
    4: "9999-12-31T23:59:59.999999Z",
}
HIRES = [(i, f"Person {i}", INSTANTS[i], 1, 1) for i in INSTANTS]
# hires_by_quarter: (year, department, job, q1, q2, q3, q4)
EXPECTED_BY_QUARTER = [
    (1, "Staff", "Clerk", 1, 0, 0, 0),
    (999, "Staff", "Clerk", 0, 0, 0, 1),
    (1000, "Staff", "Clerk", 1, 0, 0, 0),
    (9999, "Staff", "Clerk", 0, 0, 0, 1),
]


def load(warehouse, table, batch):
    return warehouse.load_batches(get_contract(table), [batch])


def stored_values(warehouse):
    """The hires' timestamps as the database holds them (SQLite: its text)."""
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute('SELECT "id", "datetime" FROM "hired_employees" ORDER BY "id"')
        return dict(cursor.fetchall())


def assert_exact(warehouse):
    assert table_rows(warehouse, "hired_employees") == HIRES
    expected = STORED if warehouse.dialect == "sqlite" else INSTANTS
    assert stored_values(warehouse) == expected


def backup_records(blob_store, result):
    import fastavro

    data = blob_store.download_bytes(result.container, result.blob_name)
    return {r["id"]: r["datetime"] for r in fastavro.reader(io.BytesIO(data))}


@pytest.mark.parametrize("form", ["typed rows", "canonical csv"])
def test_years_0001_to_9999_survive_backup_restore_and_metrics(warehouse, blob_store, form):
    load(warehouse, "departments", [(1, "Staff")])
    load(warehouse, "jobs", [(1, "Clerk")])
    if form == "typed rows":
        batch = HIRES
    else:  # what the ingest loads: validated rows as canonical CSV text
        text = "".join(f"{i},Person {i},{STORED[i]},1,1\n" for i in STORED)
        batch = CsvBatch(text.encode(), len(STORED))
    assert load(warehouse, "hired_employees", batch) == 4
    assert_exact(warehouse)

    aware = {i: value.replace(tzinfo=timezone.utc) for i, value in INSTANTS.items()}
    first = backup_logic.backup_table("hired_employees", warehouse, blob_store)
    assert backup_records(blob_store, first) == aware
    restore_logic.restore_table("hired_employees", "latest", None, warehouse, blob_store)
    assert_exact(warehouse)

    second = backup_logic.backup_table("hired_employees", warehouse, blob_store)  # failed before
    assert second.rows == 4
    assert backup_records(blob_store, second) == aware
    restore_logic.restore_table("hired_employees", "latest", None, warehouse, blob_store)
    assert_exact(warehouse)

    metrics.publish_metrics(warehouse)
    assert metrics.read_metric(warehouse, "hires_by_quarter") == EXPECTED_BY_QUARTER


def test_a_table_holding_unpadded_years_is_repaired_by_a_backup_and_restore(sqlite_warehouse, blob_store):
    """Rows written by the versions before the fix ('1-01-01T...') still back up; restored from
    that backup they are written in the fixed-width form."""
    warehouse = sqlite_warehouse
    load(warehouse, "departments", [(1, "Staff")])
    load(warehouse, "jobs", [(1, "Clerk")])
    with warehouse.transaction() as connection:
        connection.executemany(
            'INSERT INTO "hired_employees" VALUES (?, ?, ?, 1, 1)',
            [
                (1, "Person 1", "1-01-01T00:00:00.000000Z"),
                (2, "Person 2", "999-12-31T23:59:59.999999Z"),
                (3, "Person 3", STORED[3]),
                (4, "Person 4", STORED[4]),
            ],
        )
    backup_logic.backup_table("hired_employees", warehouse, blob_store)
    restore_logic.restore_table("hired_employees", "latest", None, warehouse, blob_store)
    assert_exact(warehouse)


@pytest.mark.parametrize("i", sorted(INSTANTS))
def test_the_stored_form_is_fixed_width_and_reads_back(i):
    assert format_instant(INSTANTS[i]) == STORED[i]
    assert format_instant(INSTANTS[i].replace(tzinfo=timezone.utc)) == STORED[i]
    assert parse_stored_timestamp(STORED[i]) == INSTANTS[i]
