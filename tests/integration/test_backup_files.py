"""Backup files without Blob Storage: names, the AVRO written from a warehouse, the snapshot."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import fastavro
import pytest

from hr_pipeline.backup import backups as backup
from hr_pipeline.backup import restore
from hr_pipeline.contract.instants import format_instant, parse_instant
from hr_pipeline.contract.tables import CONTRACTS, get_contract

HIRES = [
    (i, f"Person {i}", datetime(2021, 3, 31, 23, 59, 59, 999999) + timedelta(days=i), 1 + i % 3, 1 + i % 4)
    for i in range(1, 12)
]


def fill(warehouse, table, rows):
    with warehouse.transaction() as connection:
        warehouse.upsert_batch(connection, get_contract(table), rows)


def test_blob_names_follow_the_contract():
    instant = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    name = backup.backup_blob_name("jobs", instant)
    assert name == "jobs/jobs-20260102T030405.678901Z.avro"
    ref = backup.backup_ref("backups", name, 10, {})
    assert ref.table == "jobs"
    assert ref.instant == instant
    on_the_second = instant.replace(microsecond=0)
    assert backup.backup_blob_name("jobs", on_the_second) == "jobs/jobs-20260102T030405.000000Z.avro"
    for foreign in (
        "jobs/notes.txt",
        "jobs/departments-20260102T030405.678901Z.avro",
        "jobs-20260102T030405.678901Z.avro",
        "jobs/jobs-20260102T030405.6789Z.avro",
        "jobs/jobs-20260102T030405678901Z.avro",
    ):
        assert backup.backup_ref("backups", foreign, 1, {}) is None


def test_backups_named_to_the_second_are_still_listed():
    """Older versions named backups with whole seconds; the metadata has the exact instant."""
    instant = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    name = "jobs/jobs-20260102T030405Z.avro"
    ref = backup.backup_ref("backups", name, 10, {})
    assert ref.table == "jobs"
    assert ref.instant == instant.replace(microsecond=0)
    exact = backup.backup_ref("backups", name, 10, {"instant": format_instant(instant)})
    assert exact.instant == instant
    for foreign in ("jobs/departments-20260102T030405Z.avro", "jobs-20260102T030405Z.avro"):
        assert backup.backup_ref("backups", foreign, 1, {}) is None


def test_backup_file_has_typed_schema_header_and_every_row(warehouse, tmp_path):
    fill(warehouse, "hired_employees", HIRES)
    path = tmp_path / "hires.avro"
    read = backup.write_backup_file("hired_employees", path, warehouse, chunk_rows=4)
    rows, instant = read.rows, read.instant
    assert rows == len(HIRES)
    with open(path, "rb") as handle:
        reader = fastavro.reader(handle)
        assert reader.codec == "deflate"
        fields = {f["name"]: f["type"] for f in reader.writer_schema["fields"]}
        assert fields["datetime"] == {"type": "long", "logicalType": "timestamp-micros"}
        assert reader.metadata["hr.table"] == "hired_employees"
        assert reader.metadata["hr.rows"] == str(len(HIRES))
        assert reader.metadata["hr.contract_version"] == "1"
        assert parse_instant(reader.metadata["hr.instant"]) == instant
        records = sorted(reader, key=lambda r: r["id"])
    assert [tuple(r.values()) for r in records] == [
        (i, n, t.replace(tzinfo=timezone.utc), d, j) for i, n, t, d, j in HIRES
    ]
    assert backup.count_records(path) == len(HIRES)


def test_backup_reads_one_snapshot_while_writers_commit(warehouse):
    """Rows committed by another connection during the read are not in the backup."""
    fill(warehouse, "jobs", [(i, f"Job {i}") for i in range(1, 11)])
    with backup._Snapshot(warehouse, CONTRACTS["jobs"], chunk_rows=3) as snapshot:
        chunks = snapshot.chunks()
        first = next(chunks)
        fill(warehouse, "jobs", [(i, f"Job {i}") for i in range(11, 31)])
        with warehouse.transaction() as connection:
            connection.cursor().execute('DELETE FROM "jobs" WHERE "id" <= 5')
        rest = [row for chunk in chunks for row in chunk]
    assert snapshot.row_count == 10
    assert sorted(row[0] for row in first + rest) == list(range(1, 11))
    assert warehouse.row_count("jobs") == 25


def test_header_of_another_contract_version_is_refused(sqlite_warehouse, tmp_path):
    fill(sqlite_warehouse, "jobs", [(1, "Job")])
    path = tmp_path / "jobs.avro"
    backup.write_backup_file("jobs", path, sqlite_warehouse)
    ref = backup.BackupRef(
        "b",
        "jobs/jobs-20260101T000000Z.avro",
        "jobs",
        datetime.now(timezone.utc),
        1,
        {"sha256": backup.sha256_of(path)},
    )
    assert restore.check_backup_file(path, ref, CONTRACTS["jobs"]).rows == 1
    newer = dataclasses.replace(CONTRACTS["jobs"], version=2)
    with pytest.raises(restore.BackupSchemaError, match="contract version 1 of jobs; the current one is 2"):
        restore.check_backup_file(path, ref, newer)
    path.write_bytes(b"not avro at all")
    ref = dataclasses.replace(ref, metadata={"sha256": backup.sha256_of(path)})
    with pytest.raises(restore.BackupCorruptError, match="unreadable AVRO header"):
        restore.check_backup_file(path, ref, CONTRACTS["jobs"])


def test_unknown_table_is_refused_before_any_io():
    with pytest.raises(ValueError, match="Unknown table 'employees'"):
        backup.backup_table("employees", warehouse=object(), store=object())
    with pytest.raises(ValueError, match="Unknown table 'employees'"):
        restore.restore_table("employees", warehouse=object(), store=object())
