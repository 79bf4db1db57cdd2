"""Point-in-time restore, differentially: random histories of one table, each event's table kept
beside the instant it held, then ``restore_table(as_of=T)`` must give back exactly the table at T.

A history mixes loads through the real ingest (validate, load, archive on Azurite: new ids,
updates of ids loaded before, a corrected extract under a name already used, rows rejected),
backups, restores of a named backup and restores as of an earlier instant (which the later
restores must cross). The reference is a plain dict per event. The instants checked are the ones
between events and the exact commit instants the journal and the backups recorded. Before each
restore a dry run must say exactly how many rows would be added, removed and changed, and change
nothing. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hr_pipeline.backup import backups as backup_logic
from hr_pipeline.backup import restore as restore_logic
from hr_pipeline.backup.point_in_time import PointInTimeError
from hr_pipeline.contract.instants import as_utc, format_instant
from hr_pipeline.ingest.archive import archive_ingested
from hr_pipeline.ingest.load import load_validated
from hr_pipeline.ingest.validate import validate_incoming
from hr_pipeline.warehouse import journal
from tests.integration.ingest_helpers import drop_file

pytestmark = [pytest.mark.postgres, pytest.mark.azurite]

TABLE = "jobs"
TITLES = ["Nurse", "Clerk", "Pilot", "Chef", "Judge"]

load_event = st.tuples(
    st.just("load"),
    st.dictionaries(st.integers(1, 12), st.sampled_from(TITLES), min_size=1, max_size=8),
    st.integers(0, 2),  # rows rejected by validation
    st.sampled_from(["a.csv", "b.csv", "c.csv"]),  # a name sent again: a corrected extract
)
events = st.lists(
    st.one_of(
        load_event,
        st.just(("backup",)),
        st.tuples(st.just("restore_backup"), st.integers(0, 5)),
        st.tuples(st.just("restore_as_of"), st.integers(0, 20)),
    ),
    min_size=3,
    max_size=9,
)


@dataclass
class Moment:
    """An instant and the table as it was then."""

    instant: datetime
    table: dict[int, str]


def jobs_now(warehouse) -> dict[int, str]:
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT id, job FROM jobs")
        return {int(key): job for key, job in cursor.fetchall()}


def pause() -> datetime:
    """An instant strictly between two commits (SQLite's clock counts milliseconds)."""
    time.sleep(0.004)
    instant = datetime.now(timezone.utc)
    time.sleep(0.004)
    return instant


class History:
    """Runs events against the real pipeline and keeps what the table was at each instant."""

    def __init__(self, warehouse, store):
        self.warehouse, self.store = warehouse, store
        self.moments = [Moment(pause(), {})]
        self.exact: list[Moment] = []  # commit instants recorded by the journal and the backups
        self.backups: list[str] = []
        self.number = 0

    def table_at(self, instant: datetime) -> dict[int, str]:
        return [m for m in self.moments if m.instant <= instant][-1].table

    def run(self, event: tuple) -> None:
        self.number += 1
        kind = event[0]
        if kind == "load":
            self.load(event[1], event[2], event[3])
        elif kind == "backup":
            made = backup_logic.backup_table(TABLE, self.warehouse, self.store)
            self.backups.append(made.blob_name)
            self.exact.append(
                Moment(as_utc(datetime.fromisoformat(made.instant.replace("Z", "+00:00"))), self.now)
            )
        elif kind == "restore_backup" and self.backups:
            name = self.backups[event[1] % len(self.backups)]
            restore_logic.restore_table(
                TABLE, name, None, self.warehouse, self.store, run_id=f"r{self.number}"
            )
        elif kind == "restore_as_of":
            self.restore_as_of(self.moments[event[1] % len(self.moments)].instant)
        self.moments.append(Moment(pause(), jobs_now(self.warehouse)))

    @property
    def now(self) -> dict[int, str]:
        return self.moments[-1].table

    def load(self, rows: dict[int, str], rejected: int, file_name: str) -> None:
        lines = [f"{key},{title} {self.number}" for key, title in rows.items()]
        lines += ["x,Not an id", ",No id"][:rejected]
        drop_file(self.store, TABLE, "\n".join(lines) + "\n", file_name)
        run_id = f"run-{self.number}"
        validations = validate_incoming(TABLE, run_id=run_id, day="2026-01-02")
        load_validated(TABLE, validations, batch_size=3)  # several batches per file
        archive_ingested(TABLE, validations, day="2026-01-02", run_id=run_id)
        last = journal.last_entry(self.warehouse, TABLE)
        self.exact.append(Moment(as_utc(last.committed_at), jobs_now(self.warehouse)))

    def restore_as_of(self, instant: datetime):
        try:
            return restore_logic.restore_table(
                TABLE, "latest", format_instant(instant), self.warehouse, self.store, run_id=f"r{self.number}"
            )
        except (restore_logic.BackupNotFoundError, PointInTimeError):
            return None


def fresh_containers(store) -> None:
    suffix = uuid.uuid4().hex[:8]
    os.environ["AZURE_BLOB_CONTAINER_RAW_DATA"] = f"raw-{suffix}"
    os.environ["AZURE_BLOB_CONTAINER_BACKUPS"] = f"backups-{suffix}"
    store.ensure_container(f"raw-{suffix}")
    store.ensure_container(f"backups-{suffix}")


def empty_tables(warehouse) -> None:
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        for table in (TABLE, journal.TABLE):
            cursor.execute(f"DELETE FROM {table}")


def diff(now: dict, then: dict) -> tuple[int, int, int]:
    added = len(then.keys() - now.keys())
    removed = len(now.keys() - then.keys())
    changed = sum(1 for key in then.keys() & now.keys() if then[key] != now[key])
    return added, removed, changed


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=events, picks=st.lists(st.integers(0, 100), min_size=3, max_size=6))
def test_restore_as_of_any_instant_gives_the_table_as_it_was(
    warehouse, blob_store, monkeypatch, history, picks
):
    # Replayed loads cut in batches of 2 rows: a load's batches cross from new keys (COPY straight
    # into the table, on PostgreSQL) to keys already there (the upsert) within one load.
    monkeypatch.setattr(restore_logic, "REPLAY_BATCH_ROWS", 2)
    fresh_containers(blob_store)
    empty_tables(warehouse)
    log = History(warehouse, blob_store)
    for event in history:
        log.run(event)
    candidates = log.moments + log.exact
    backup_instants = [ref.instant for ref in backup_logic.list_backups(TABLE, blob_store)]
    for pick in picks:
        moment = candidates[pick % len(candidates)]
        exact = next((m.table for m in log.exact if m.instant == moment.instant), None)
        expected = log.table_at(moment.instant) if exact is None else exact
        reachable = any(instant <= moment.instant for instant in backup_instants)
        before = jobs_now(warehouse)
        as_of = format_instant(moment.instant)
        if not reachable:  # before every backup: refused, the table unchanged
            with pytest.raises((restore_logic.BackupNotFoundError, PointInTimeError)):
                restore_logic.restore_table(TABLE, "latest", as_of, warehouse, blob_store, dry_run=True)
            assert jobs_now(warehouse) == before
            continue
        dry = restore_logic.restore_table(TABLE, "latest", as_of, warehouse, blob_store, dry_run=True)
        assert jobs_now(warehouse) == before  # a dry run changes nothing
        assert (dry.rows_added, dry.rows_removed, dry.rows_changed) == diff(before, expected)
        assert dry.rows == len(expected)
        assert dry.journal_seq is None
        done = log.restore_as_of(moment.instant)
        assert done is not None
        assert jobs_now(warehouse) == expected, f"as of {as_of}: {done.plan}"
        assert done.rows == len(expected)


def test_retention_keeps_what_the_kept_backups_need_and_no_more(warehouse, blob_store):
    """Loads, a backup, loads, a backup, a load: once retention deletes the first backup, the
    journal rows up to the second backup's position go with their rows files; every instant
    after the second backup is still restored exactly, and the freshness check sees no gap."""
    from hr_pipeline.backup.freshness import check_freshness
    from hr_pipeline.backup.point_in_time import prune_journal
    from hr_pipeline.storage.layout import journal_rows_prefix
    from tests.integration.ingest_helpers import blob_names

    log = History(warehouse, blob_store)
    for event in [
        ("load", {1: "Nurse", 2: "Clerk"}, 1, "a.csv"),
        ("backup",),
        ("load", {2: "Chef", 3: "Pilot"}, 0, "b.csv"),
        ("backup",),
        ("load", {3: "Judge", 4: "Nurse"}, 0, "a.csv"),
    ]:
        log.run(event)
    first, second = backup_logic.list_backups(TABLE, blob_store)
    # The first backup holds the first load: nothing needs its journal row.
    assert prune_journal(TABLE, blob_store, warehouse) == {"forgotten_through": 1, "rows_files_deleted": 1}
    blob_store.delete(backup_logic.settings.backups_container(), first.name)  # as retention would
    pruned = prune_journal(TABLE, blob_store, warehouse)
    position = int(second.metadata["journal_position"])
    assert pruned == {"forgotten_through": position, "rows_files_deleted": 1}
    remaining = journal.entries(warehouse, TABLE)
    assert [entry.seq for entry in remaining] == [position + 1]
    assert blob_names(blob_store, journal_rows_prefix(TABLE)) == [remaining[0].rows_file]
    check_freshness([TABLE], store=blob_store, warehouse=warehouse)
    # Once a backup holds every change, the newest journal row still stays: the next load's seq
    # follows it, never one a backup's position already counts.
    log.run(("backup",))
    assert prune_journal(TABLE, blob_store, warehouse) == {"forgotten_through": 0, "rows_files_deleted": 0}
    assert [entry.seq for entry in journal.entries(warehouse, TABLE)] == [position + 1]
    log.run(("load", {5: "Chef"}, 0, "d.csv"))
    assert journal.last_entry(warehouse, TABLE).seq == position + 2
    end = log.moments[-1]
    done = log.restore_as_of(end.instant)
    assert done.replayed == (position + 2,)
    assert jobs_now(warehouse) == end.table
    assert log.restore_as_of(log.moments[2].instant) is None  # before the kept backup: refused
    assert jobs_now(warehouse) == end.table


def test_a_rows_file_changed_after_its_load_is_refused_and_the_table_is_unchanged(
    warehouse, blob_store, monkeypatch
):
    """Replayed batches are read ahead of the warehouse: a rows file whose bytes are not the ones
    its journal row recorded still stops the restore, in its transaction, with nothing changed."""
    import pyarrow as pa

    from hr_pipeline.runtime import settings as runtime_settings

    monkeypatch.setattr(restore_logic, "REPLAY_BATCH_ROWS", 2)
    fresh_containers(blob_store)
    empty_tables(warehouse)
    log = History(warehouse, blob_store)
    for event in [
        ("load", {1: "Nurse"}, 0, "a.csv"),
        ("backup",),
        ("load", {2: "Chef", 3: "Pilot", 4: "Judge", 5: "Clerk", 6: "Nurse"}, 0, "b.csv"),
        ("load", {7: "Chef"}, 0, "c.csv"),
    ]:
        log.run(event)
    second = journal.entries(warehouse, TABLE)[-2]
    container = runtime_settings.raw_container()
    changed = b"2,Chef 3\n3,Pilot 3\n4,Judge 3\n5,Clerk 3\n6,Forged 3\n"
    blob_store.upload_bytes(
        container, second.rows_file, pa.compress(changed, codec=journal.ROWS_FILE_COMPRESSION, asbytes=True)
    )
    before = jobs_now(warehouse)

    with pytest.raises(PointInTimeError, match=r"changed after the load; the table is unchanged"):
        restore_logic.restore_table(
            TABLE, "latest", format_instant(log.moments[-1].instant), warehouse, blob_store
        )
    assert jobs_now(warehouse) == before
