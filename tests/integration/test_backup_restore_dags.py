"""Backups and restores end to end: Azurite + SQLite and Azurite + PostgreSQL.

The include/ functions are called directly where a message is asserted; the DAGs run with
``dag.test()`` for the wiring (params, mapping, asset events). Nothing is mocked.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from hr_pipeline import backup as backup_logic
from hr_pipeline import restore as restore_logic
from hr_pipeline.contracts import CONTRACTS, get_contract
from hr_pipeline.restore import (
    BackupCorruptError,
    BackupNotFoundError,
    BackupSchemaError,
    ReferentialIntegrityError,
)

DEPARTMENTS = [(i, f"Department {i}") for i in range(1, 6)]
JOBS = [(i, f"Job {i}") for i in range(1, 8)]


def hires(ids, department=lambda i: i % 5 + 1, job=lambda i: i % 7 + 1):
    base = datetime(2021, 1, 1, 8, 30, 15, 123456)
    return [(i, f"Person {i}", base + timedelta(hours=i), department(i), job(i)) for i in ids]


def fill(warehouse, table, rows):
    with warehouse.transaction() as connection:
        warehouse.upsert_batch(connection, get_contract(table), rows)


def delete_ids(warehouse, table, ids):
    marker = "?" if warehouse.dialect == "sqlite" else "%s"
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        for row_id in ids:
            cursor.execute(f'DELETE FROM "{table}" WHERE "id" = {marker}', (row_id,))


def table_rows(warehouse, table):
    contract = get_contract(table)
    columns = ", ".join(f'"{c}"' for c in contract.column_names)
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute(f'SELECT {columns} FROM "{table}" ORDER BY "id"')
        return [warehouse.from_db_row(contract, row) for row in cursor.fetchall()]


def backups_container():
    return os.environ["AZURE_BLOB_CONTAINER_BACKUPS"]


@pytest.fixture
def filled(warehouse, blob_store):
    fill(warehouse, "departments", DEPARTMENTS)
    fill(warehouse, "jobs", JOBS)
    fill(warehouse, "hired_employees", hires(range(1, 41)))
    return warehouse


def test_backup_then_restore_latest_gives_the_backup_row_for_row(filled, blob_store):
    result = backup_logic.backup_table("hired_employees", filled, blob_store)
    assert result.rows == 40
    assert result.blob_name.startswith("hired_employees/hired_employees-")
    before = table_rows(filled, "hired_employees")

    delete_ids(filled, "hired_employees", [1, 2, 3])
    fill(filled, "hired_employees", [(10, "Changed", datetime(2022, 2, 2), 1, 1)] + hires(range(100, 110)))
    assert table_rows(filled, "hired_employees") != before

    restored = restore_logic.restore_table("hired_employees", "latest", None, filled, blob_store)
    assert restored.rows == 40 and restored.rows_before == 47
    assert table_rows(filled, "hired_employees") == before
