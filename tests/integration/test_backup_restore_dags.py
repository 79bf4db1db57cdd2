"""Backups and restores end to end: Azurite + SQLite and Azurite + PostgreSQL.

The include/ functions are called directly where a message is asserted; the DAGs run with
``dag.test()`` for the wiring (params, mapping, asset events). Nothing is mocked.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hr_pipeline.backup import backups as backup_logic
from hr_pipeline.backup import restore as restore_logic
from hr_pipeline.backup.restore import (
    BackupCorruptError,
    BackupNotFoundError,
    BackupSchemaError,
    ReferentialIntegrityError,
)
from hr_pipeline.contract.instants import parse_instant, parse_stored_timestamp
from hr_pipeline.contract.tables import CONTRACTS, ColumnType, get_contract

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


def typed_row(contract, row):
    """A row as the warehouse returned it, its timestamps as naive UTC datetimes (SQLite: text)."""
    return tuple(
        parse_stored_timestamp(value) if column.type is ColumnType.TIMESTAMP and value is not None else value
        for column, value in zip(contract.columns, row)
    )


def table_rows(warehouse, table):
    contract = get_contract(table)
    columns = ", ".join(f'"{c}"' for c in contract.column_names)
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute(f'SELECT {columns} FROM "{table}" ORDER BY "id"')
        return [typed_row(contract, row) for row in cursor.fetchall()]


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
    assert restored.rows == 40
    assert restored.rows_before == 47
    assert table_rows(filled, "hired_employees") == before


def three_backups(warehouse, blob_store):
    """Backups of jobs holding 3, 5 and 7 rows, one right after the other."""
    refs = []
    for count in (3, 5, 7):
        fill(warehouse, "jobs", JOBS[:count])
        refs.append(backup_logic.backup_table("jobs", warehouse, blob_store))
    return refs


def test_as_of_picks_the_newest_backup_taken_at_or_before_it(warehouse, blob_store):
    first, second, third = three_backups(warehouse, blob_store)
    assert len({first.blob_name, second.blob_name, third.blob_name}) == 3

    def restore_as_of(instant):
        return restore_logic.restore_table("jobs", "latest", instant, warehouse, blob_store)

    assert restore_as_of(second.instant).blob_name == second.blob_name
    assert table_rows(warehouse, "jobs") == JOBS[:5]
    second_instant, third_instant = parse_instant(second.instant), parse_instant(third.instant)
    between = second_instant + (third_instant - second_instant) / 2
    assert second_instant < between < third_instant
    assert restore_as_of(between.isoformat()).blob_name == second.blob_name
    assert restore_as_of(first.instant).blob_name == first.blob_name
    assert table_rows(warehouse, "jobs") == JOBS[:3]
    # As of now: the table as the last restore left it (the first backup's rows), not the newest
    # backup: as_of crosses the journaled restores.
    now = restore_as_of("2999-01-01T00:00:00Z")
    assert (now.blob_name, now.rows) == (first.blob_name, 3)
    assert table_rows(warehouse, "jobs") == JOBS[:3]
    assert restore_as_of(third.instant).blob_name == third.blob_name
    assert table_rows(warehouse, "jobs") == JOBS[:7]
    # a backup named explicitly, as the file name alone
    named = restore_logic.restore_table("jobs", first.blob_name.split("/")[1], None, warehouse, blob_store)
    assert named.blob_name == first.blob_name
    assert table_rows(warehouse, "jobs") == JOBS[:3]

    with pytest.raises(BackupNotFoundError) as refused:
        restore_as_of("2000-01-01T00:00:00Z")
    message = str(refused.value)
    assert "No backup of jobs was taken at or before 2000-01-01T00:00:00" in message
    assert all(ref.blob_name in message for ref in (first, second, third))
    assert table_rows(warehouse, "jobs") == JOBS[:3]


def test_a_backup_named_to_the_second_is_restored(warehouse, blob_store):
    """Older versions named backups with whole seconds: such a backup is listed and restored."""
    fill(warehouse, "jobs", JOBS[:3])
    made = backup_logic.backup_table("jobs", warehouse, blob_store)
    container = backups_container()
    metadata = blob_store.properties(container, made.blob_name).metadata
    old_name = f"jobs/jobs-{parse_instant(made.instant):%Y%m%dT%H%M%SZ}.avro"
    _replace_blob(blob_store, old_name, blob_store.download_bytes(container, made.blob_name), metadata)
    blob_store.delete(container, made.blob_name)
    fill(warehouse, "jobs", JOBS)

    restored = restore_logic.restore_table("jobs", "latest", None, warehouse, blob_store)
    assert restored.blob_name == old_name
    assert table_rows(warehouse, "jobs") == JOBS[:3]
    fill(warehouse, "jobs", JOBS)
    restored = restore_logic.restore_table("jobs", None, made.instant, warehouse, blob_store)
    assert restored.blob_name == old_name
    assert table_rows(warehouse, "jobs") == JOBS[:3]
    fill(warehouse, "jobs", JOBS)
    restored = restore_logic.restore_table("jobs", old_name.split("/")[1], None, warehouse, blob_store)
    assert restored.blob_name == old_name
    assert table_rows(warehouse, "jobs") == JOBS[:3]


def test_a_second_backup_under_the_same_name_is_refused(warehouse, blob_store, monkeypatch):
    """Two backups of a table taken at the same instant: the second never replaces the first."""
    monkeypatch.setattr(
        backup_logic,
        "backup_blob_name",
        lambda table, instant: f"{table}/{table}-20260102T030405.000000Z.avro",
    )
    fill(warehouse, "jobs", JOBS[:3])
    first = backup_logic.backup_table("jobs", warehouse, blob_store)
    fill(warehouse, "jobs", JOBS)
    with pytest.raises(backup_logic.BackupError, match=r"already exists .*refusing to overwrite it"):
        backup_logic.backup_table("jobs", warehouse, blob_store)
    [kept] = blob_store.list(backups_container())
    assert kept.name == first.blob_name
    assert kept.metadata["sha256"] == first.sha256
    assert kept.metadata["rows"] == "3"


def test_no_backup_at_all_is_a_clear_error(warehouse, blob_store):
    fill(warehouse, "departments", DEPARTMENTS)
    with pytest.raises(BackupNotFoundError, match=r"No backup of departments exists .*backup_tables"):
        restore_logic.restore_table("departments", "latest", None, warehouse, blob_store)
    backup_logic.backup_table("jobs", warehouse, blob_store)
    with pytest.raises(BackupNotFoundError, match="No backup of departments exists"):
        restore_logic.restore_table("departments", "latest", None, warehouse, blob_store)


def test_unknown_backup_name_lists_the_existing_ones(warehouse, blob_store):
    fill(warehouse, "jobs", JOBS)
    made = backup_logic.backup_table("jobs", warehouse, blob_store)
    with pytest.raises(BackupNotFoundError) as refused:
        restore_logic.restore_table("jobs", "jobs/jobs-20000101T000000Z.avro", None, warehouse, blob_store)
    assert "'jobs/jobs-20000101T000000Z.avro' of jobs not found" in str(refused.value)
    assert made.blob_name in str(refused.value)
    with pytest.raises(BackupNotFoundError, match="not both"):
        restore_logic.restore_table("jobs", made.blob_name, "2020-01-01T00:00:00Z", warehouse, blob_store)
    with pytest.raises(BackupNotFoundError, match="not an ISO 8601 instant"):
        restore_logic.restore_table("jobs", "latest", "yesterday", warehouse, blob_store)


def _replace_blob(blob_store, name, data, metadata):
    blob_store.upload_bytes(backups_container(), name, data, metadata=metadata)


def test_truncated_or_corrupted_backup_leaves_the_table_untouched(filled, blob_store):
    made = backup_logic.backup_table("hired_employees", filled, blob_store)
    container = backups_container()
    data = blob_store.download_bytes(container, made.blob_name)
    metadata = blob_store.properties(container, made.blob_name).metadata
    fill(filled, "hired_employees", hires(range(200, 205)))
    current = table_rows(filled, "hired_employees")

    # 1. truncated: the checksum recorded at backup time no longer matches
    _replace_blob(blob_store, made.blob_name, data[: len(data) // 2], metadata)
    with pytest.raises(BackupCorruptError, match=r"corrupted or truncated: its sha256 is"):
        restore_logic.restore_table("hired_employees", "latest", None, filled, blob_store)
    assert table_rows(filled, "hired_employees") == current

    # 2. corrupted bytes whose checksum was recomputed: the AVRO reader catches it
    import hashlib

    damaged = data[:-40] + bytes(40)
    _replace_blob(
        blob_store, made.blob_name, damaged, {**metadata, "sha256": hashlib.sha256(damaged).hexdigest()}
    )
    with pytest.raises(BackupCorruptError, match=made.blob_name):
        restore_logic.restore_table("hired_employees", "latest", None, filled, blob_store)
    assert table_rows(filled, "hired_employees") == current

    # 3. no checksum at all
    _replace_blob(blob_store, made.blob_name, data, {k: v for k, v in metadata.items() if k != "sha256"})
    with pytest.raises(BackupCorruptError, match="no sha256"):
        restore_logic.restore_table("hired_employees", "latest", None, filled, blob_store)
    assert table_rows(filled, "hired_employees") == current


def test_backup_of_another_table_is_refused(filled, blob_store):
    made = backup_logic.backup_table("jobs", filled, blob_store)
    container = backups_container()
    data = blob_store.download_bytes(container, made.blob_name)
    metadata = blob_store.properties(container, made.blob_name).metadata
    impostor = made.blob_name.replace("jobs", "departments")
    _replace_blob(blob_store, impostor, data, metadata)
    current = table_rows(filled, "departments")
    with pytest.raises(BackupSchemaError, match=r"holds table 'jobs', not 'departments'"):
        restore_logic.restore_table("departments", "latest", None, filled, blob_store)
    assert table_rows(filled, "departments") == current


def test_restore_that_would_orphan_hires_is_refused(filled, blob_store):
    fill(filled, "departments", DEPARTMENTS)
    delete_ids(filled, "departments", [4, 5])
    backup_logic.backup_table("departments", filled, blob_store)  # holds ids 1..3
    fill(filled, "departments", DEPARTMENTS)
    current_departments = table_rows(filled, "departments")
    # hires 3, 8, 13, ... point at department 4; 4, 9, 14, ... at 5: 8 + 8 rows of 40
    with pytest.raises(ReferentialIntegrityError) as refused:
        restore_logic.restore_table("departments", "latest", None, filled, blob_store)
    message = str(refused.value)
    assert "16 current rows of hired_employees.department_id point at departments ids missing" in message
    assert "4, 5" in message
    assert "departments is unchanged" in message
    assert table_rows(filled, "departments") == current_departments

    # Once the orphaned hires are gone, the same restore goes through.
    delete_ids(filled, "hired_employees", [i for i in range(1, 41) if i % 5 + 1 in (4, 5)])
    restore_logic.restore_table("departments", "latest", None, filled, blob_store)
    assert table_rows(filled, "departments") == DEPARTMENTS[:3]


def test_restoring_hires_that_point_at_deleted_jobs_is_refused(filled, blob_store):
    backup_logic.backup_table("hired_employees", filled, blob_store)
    delete_ids(filled, "hired_employees", [i for i in range(1, 41) if i % 7 + 1 == 7])
    delete_ids(filled, "jobs", [7])
    current = table_rows(filled, "hired_employees")
    with pytest.raises(
        ReferentialIntegrityError,
        match=r"rows of the backup's hired_employees.job_id point at jobs ids that do not exist now: 7",
    ):
        restore_logic.restore_table("hired_employees", "latest", None, filled, blob_store)
    assert table_rows(filled, "hired_employees") == current


def test_retention_keeps_the_newest(warehouse, blob_store):
    first, second, third = three_backups(warehouse, blob_store)
    names = lambda: [ref.name for ref in backup_logic.list_backups("jobs", blob_store)]  # noqa: E731
    assert names() == [first.blob_name, second.blob_name, third.blob_name]
    second_instant = parse_instant(second.instant)
    # cut-off at the second backup's instant: only the first is older
    deleted = backup_logic.prune_backups(
        "jobs", blob_store, now=second_instant + timedelta(days=30), retention_days=30
    )
    assert deleted == [first.blob_name]
    assert names() == [second.blob_name, third.blob_name]
    # everything is older than the retention: the newest stays all the same
    deleted = backup_logic.prune_backups(
        "jobs", blob_store, now=datetime.now(timezone.utc) + timedelta(days=400), retention_days=30
    )
    assert deleted == [second.blob_name]
    assert names() == [third.blob_name]
    assert (
        backup_logic.prune_backups(
            "jobs", blob_store, now=datetime.now(timezone.utc) + timedelta(days=400), retention_days=0
        )
        == []
    )
    assert names() == [third.blob_name]


@pytest.mark.postgres
def test_readers_never_see_a_partial_table_during_a_restore(postgres_warehouse, blob_store):
    import psycopg

    warehouse = postgres_warehouse
    fill(warehouse, "departments", DEPARTMENTS)
    fill(warehouse, "jobs", JOBS)
    fill(warehouse, "hired_employees", hires(range(1, 50_001)))
    backup_logic.backup_table("hired_employees", warehouse, blob_store)
    delete_ids(warehouse, "hired_employees", [])
    with warehouse.transaction() as connection:
        connection.cursor().execute('DELETE FROM "hired_employees" WHERE "id" > 30000')
    fill(warehouse, "hired_employees", hires(range(60_000, 60_100)))
    old_count, new_count = 30_100, 50_000

    database = warehouse.hook.get_connection(warehouse.conn_id).schema
    counts: list[int] = []
    done = threading.Event()

    def reader():
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}", autocommit=True) as conn:
            while not done.is_set():
                counts.append(conn.execute('SELECT COUNT(*) FROM "hired_employees"').fetchone()[0])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        while not counts:
            time.sleep(0.01)
        restore_logic.restore_table("hired_employees", "latest", None, warehouse, blob_store)
        seen_after = len(counts)
        while len(counts) < seen_after + 3:
            time.sleep(0.01)
    finally:
        done.set()
        thread.join()
    assert set(counts) <= {old_count, new_count}, sorted(set(counts))
    assert counts[0] == old_count
    assert counts[-1] == new_count
    assert len(counts) > 10  # the reader really ran during the restore


# -- the DAGs (dag.test) ---------------------------------------------------------------------


def load_dag(dag_id):
    import importlib.util

    dag_file = Path(__file__).resolve().parents[2] / "dags" / f"{dag_id}.py"
    spec = importlib.util.spec_from_file_location(f"dag_{dag_id}", dag_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, f"{dag_id}_dag")


def asset_events(run_id):
    from airflow import settings
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    with settings.Session() as session:
        rows = session.execute(
            select(AssetModel.name, AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_run_id == run_id)
        ).all()
    return sorted((name, extra) for name, extra in rows)


def test_backup_and_restore_dags(airflow_db, filled, blob_store):
    run = load_dag("backup_tables").test(run_conf={"tables": ["departments", "hired_employees"]})
    assert run.state == "success"
    listed = [blob.name.split("/")[0] for blob in blob_store.list(backups_container())]
    assert listed == ["departments", "hired_employees"]
    expected = table_rows(filled, "hired_employees")

    delete_ids(filled, "hired_employees", range(1, 21))
    run = load_dag("restore_table").test(
        run_conf={"table_name": "hired_employees", "backup": "latest", "as_of": None}
    )
    assert run.state == "success"
    assert table_rows(filled, "hired_employees") == expected
    # an asset event for the restored table only, through the alias
    events = asset_events(run.run_id)
    assert [name for name, _ in events] == ["warehouse.hired_employees"]
    assert events[0][1]["rows"] == 40


def test_restore_dag_fails_on_a_refused_restore_and_emits_no_event(airflow_db, sqlite_warehouse, blob_store):
    fill(sqlite_warehouse, "jobs", JOBS)
    run = load_dag("restore_table").test(run_conf={"table_name": "jobs"})
    assert run.state == "failed"
    # a refusal fails at once (AirflowFailException), not after the retries meant for passing faults
    from airflow import settings
    from airflow.models.taskinstance import TaskInstance

    with settings.Session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id="restore_table", run_id=run.run_id).one()
        assert (ti.task_id, ti.state, ti.try_number) == ("restore", "failed", 1)
    assert asset_events(run.run_id) == []
    assert table_rows(sqlite_warehouse, "jobs") == JOBS


def test_backup_dag_applies_the_retention(airflow_db, sqlite_warehouse, blob_store, monkeypatch):
    monkeypatch.setenv("HR_BACKUP_RETENTION_DAYS", "0")
    fill(sqlite_warehouse, "jobs", JOBS)
    dag = load_dag("backup_tables")
    assert dag.test(run_conf={"tables": ["jobs"]}).state == "success"
    first = [blob.name for blob in blob_store.list(backups_container())]
    assert dag.test(run_conf={"tables": ["jobs"]}).state == "success"
    second = [blob.name for blob in blob_store.list(backups_container())]
    assert len(first) == 1
    assert len(second) == 1
    assert first != second


def test_params_refuse_a_table_outside_the_contract(airflow_db):
    from airflow.sdk.exceptions import ParamValidationError

    restore = load_dag("restore_table")
    with pytest.raises(ParamValidationError):
        restore.params.get_param("table_name").resolve("employees")
    # format="date-time" gives the trigger form its instant picker; jsonschema's date-time check
    # needs the optional rfc3339-validator package (not installed), so a malformed as_of reaches
    # restore.choose_backup, which refuses it by name (test_unknown_backup_name_lists_...).
    assert restore.params.get_param("as_of").resolve(None) is None
    backup = load_dag("backup_tables")
    with pytest.raises(ParamValidationError):
        backup.params.get_param("tables").resolve(["jobs", "employees"])
    assert backup.params.get_param("tables").resolve() == list(CONTRACTS)
    # a run triggered with a table outside the contract never starts
    with pytest.raises(ParamValidationError):
        restore.test(run_conf={"table_name": "employees"})


def test_a_backup_that_fails_its_read_back_is_deleted(sqlite_warehouse, blob_store, monkeypatch):
    fill(sqlite_warehouse, "jobs", JOBS)
    upload = blob_store.upload_file

    # Fault injection around the real upload to Azurite (not a mock): the blob loses its last bytes.
    def damaged_upload(container, name, path, metadata=None, overwrite=True):
        data = path.read_bytes()
        path.write_bytes(data[:-10])
        upload(container, name, path, metadata, overwrite)

    monkeypatch.setattr(blob_store, "upload_file", damaged_upload)
    with pytest.raises(backup_logic.BackupError, match=r"failed verification: sha256 of the uploaded blob"):
        backup_logic.backup_table("jobs", sqlite_warehouse, blob_store)
    assert blob_store.list(backups_container()) == []


def test_restore_dag_as_of_an_instant_replays_the_loads_after_the_backup(
    airflow_db, sqlite_warehouse, blob_store
):
    """Through the DAGs: ingest, back up, ingest twice more; the restore_table DAG as of the
    instant between the two later ingests brings the backup plus the first of them. Its dry run
    first says so and changes nothing, and emits no asset event."""
    from tests.integration.ingest_helpers import drop_file, run_ingest

    def ingest(text: str, name: str):
        drop_file(blob_store, "jobs", text, name)
        assert run_ingest("jobs", wait_minutes=0).state == "success"

    ingest("1,Nurse\n2,Clerk\n", "a.csv")
    assert load_dag("backup_tables").test(run_conf={"tables": ["jobs"]}).state == "success"
    ingest("2,Chef\n3,Pilot\n", "b.csv")
    between = datetime.now(timezone.utc)
    wanted = table_rows(sqlite_warehouse, "jobs")
    ingest("3,Judge\n4,Nurse\n", "c.csv")
    now = table_rows(sqlite_warehouse, "jobs")
    conf = {"table_name": "jobs", "backup": "latest", "as_of": between.isoformat()}

    dry = load_dag("restore_table").test(run_conf={**conf, "dry_run": True})
    assert dry.state == "success"
    assert table_rows(sqlite_warehouse, "jobs") == now
    assert asset_events(dry.run_id) == []
    said = dry.get_task_instance("restore").xcom_pull(task_ids="restore")
    assert said["dry_run"] is True
    assert (said["rows_added"], said["rows_removed"], said["rows_changed"]) == (0, 1, 1), said
    assert len(said["replayed"]) == 1
    assert "1 load(s) replayed" in said["plan"]

    run = load_dag("restore_table").test(run_conf={**conf, "dry_run": False})
    assert run.state == "success"
    assert table_rows(sqlite_warehouse, "jobs") == wanted
    assert [name for name, _ in asset_events(run.run_id)] == ["warehouse.jobs"]


_names = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), min_size=1, max_size=40)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(_names, min_size=1, max_size=6))
def test_any_text_and_instant_comes_back_exactly_from_a_backup(warehouse, blob_store, names):
    """Names of any characters the warehouse stores (quotes, tabs, newlines, backslashes, CJK,
    emoji) and instants to the microsecond, from years 1 to 9999, survive a backup and a restore
    over a damaged table (on PostgreSQL through binary COPY)."""
    fill(warehouse, "departments", DEPARTMENTS)
    fill(warehouse, "jobs", JOBS)
    instants = [
        datetime(1, 1, 1),
        datetime(9999, 12, 31, 23, 59, 59, 999999),
        datetime(2021, 6, 30, 12, 0, 0, 1),
    ]
    rows = [
        (i, name, instants[i % len(instants)], i % 5 + 1, i % 7 + 1) for i, name in enumerate(names, start=1)
    ]
    delete_ids(warehouse, "hired_employees", [row[0] for row in table_rows(warehouse, "hired_employees")])
    fill(warehouse, "hired_employees", rows)
    expected = table_rows(warehouse, "hired_employees")
    backup_logic.backup_table("hired_employees", warehouse, blob_store)
    delete_ids(warehouse, "hired_employees", [1])
    fill(warehouse, "hired_employees", [(len(names) + 1, "Extra", instants[0], 1, 1)])

    restore_logic.restore_table("hired_employees", "latest", None, warehouse, blob_store)

    assert table_rows(warehouse, "hired_employees") == expected
    assert [row[1] for row in expected] == names


def test_a_large_restore_across_the_copy_buffers_equals_the_rows_written(warehouse, blob_store):
    """40,000 rows of names 1-255 characters long (any script) and instants to the microsecond:
    the restore's stream (AVRO blocks, then the COPY's buffers on PostgreSQL) crosses its internal
    boundaries many times, and the table must equal, row for row, what the warehouse held when
    the backup was taken (written through the upsert path, a different one)."""
    import random

    rng = random.Random(2026)
    alphabet = "abcXYZ 019,;\"'\\\t\n\r-éÅß職務😀"
    base = datetime(1, 1, 1)
    rows = [
        (
            i,
            "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 255))),
            base + timedelta(microseconds=rng.randrange(315_537_897_600_000_000)),  # to 9999-12-31
            i % 5 + 1,
            i % 7 + 1,
        )
        for i in range(1, 40_001)
    ]
    fill(warehouse, "departments", DEPARTMENTS)
    fill(warehouse, "jobs", JOBS)
    fill(warehouse, "hired_employees", rows)
    expected = table_rows(warehouse, "hired_employees")
    backup_logic.backup_table("hired_employees", warehouse, blob_store)
    delete_ids(warehouse, "hired_employees", range(1, 40_001, 3))

    restored = restore_logic.restore_table("hired_employees", "latest", None, warehouse, blob_store)

    assert restored.rows == len(rows)
    assert table_rows(warehouse, "hired_employees") == expected
