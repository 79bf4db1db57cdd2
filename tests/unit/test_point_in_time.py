"""Point-in-time planning against a plain model of a table, and the journal's statements as T-SQL.

The model is a dict (id -> value) changed by random loads (upserts), backups (copies, with the
journal position they hold) and restores (as of an earlier instant: the model's own state then).
For every instant between and at the events, the plan ``plan_as_of`` makes, applied to the
model (the backup's copy, then each replayed load's rows in order), must equal the table as it
was at that instant. The warehouse run of the same property is
tests/integration/test_point_in_time.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import ErrorLevel

from hr_pipeline.backup.backups import BLOB_META_POSITION, BackupRef
from hr_pipeline.backup.point_in_time import (
    PointInTimeError,
    RestorePlan,
    plan_as_of,
    plan_backup,
)
from hr_pipeline.warehouse import journal
from hr_pipeline.warehouse.dialects import MSSQL, POSTGRES, SQLITE
from hr_pipeline.warehouse.journal import LOAD, RESTORE, JournalEntry

START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)

loads = st.dictionaries(st.integers(1, 8), st.sampled_from("abcdef"), min_size=1, max_size=4)
events = st.lists(
    st.one_of(
        st.tuples(st.just("load"), loads),
        st.tuples(st.just("backup"), st.none()),
        st.tuples(st.just("restore"), st.floats(0, 1)),
    ),
    min_size=1,
    max_size=12,
)


class Model:
    """The table, its backups and its journal as the pipeline would leave them."""

    def __init__(self):
        self.table: dict[int, str] = {}
        self.backups: list[BackupRef] = []
        self.backup_rows: dict[str, dict[int, str]] = {}
        self.journal: list[JournalEntry] = []
        self.load_rows: dict[int, dict[int, str]] = {}
        self.history: list[tuple[datetime, dict[int, str]]] = []  # (instant, table after)
        self.clock = START

    def tick(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def position(self) -> int:
        return self.journal[-1].seq if self.journal else 0

    def entry(self, kind: str, source: str, **more) -> JournalEntry:
        instant = self.tick()
        entry = JournalEntry(
            table_name="jobs",
            seq=self.position() + 1,
            kind=kind,
            committed_at=instant.replace(tzinfo=None),
            run_id="run",
            source=source,
            rows_file=more.get("rows_file"),
            rows_sha256=None,
            rows=more.get("rows", 0),
            backup_position=more.get("backup_position"),
            through_seq=more.get("through_seq"),
        )
        self.journal.append(entry)
        return entry

    def load(self, rows: dict[int, str]) -> None:
        entry = self.entry(LOAD, f"incoming/jobs/{len(self.journal)}.csv", rows_file="f", rows=len(rows))
        self.load_rows[entry.seq] = dict(rows)
        self.table.update(rows)
        self.history.append((entry.committed_at.replace(tzinfo=timezone.utc), dict(self.table)))

    def backup(self) -> None:
        instant = self.tick()
        name = f"jobs/jobs-{instant:%H%M%S}.avro"
        ref = BackupRef("backups", name, "jobs", instant, 1, {BLOB_META_POSITION: str(self.position())})
        self.backups.append(ref)
        self.backup_rows[name] = dict(self.table)
        self.history.append((instant, dict(self.table)))

    def restore(self, fraction: float) -> None:
        if not self.history:
            return
        first, last = self.history[0][0], self.history[-1][0]
        instant = first + (last - first) * fraction
        try:
            plan = plan_as_of("jobs", self.backups, self.journal, instant)
        except PointInTimeError:
            return  # refused: nothing changes, nothing is journaled
        self.table = self.apply(plan)
        entry = self.entry(
            RESTORE,
            plan.base.name,
            backup_position=plan.base_position,
            through_seq=plan.through_seq,
        )
        self.history.append((entry.committed_at.replace(tzinfo=timezone.utc), dict(self.table)))

    def apply(self, plan: RestorePlan) -> dict[int, str]:
        table = dict(self.backup_rows[plan.base.name])
        for entry in plan.replays:
            assert entry.kind == LOAD
            table.update(self.load_rows[entry.seq])
        return table

    def at(self, instant: datetime) -> dict[int, str] | None:
        """The table at ``instant``: after the last event at or before it (None: before the first)."""
        found = None
        for when, table in self.history:
            if when <= instant:
                found = table
        return found


@settings(max_examples=300, deadline=None)
@given(events)
def test_the_plan_for_any_instant_rebuilds_the_table_as_it_was(sequence):
    model = Model()
    for kind, argument in sequence:
        getattr(model, kind)(*([] if argument is None else [argument]))
    instants = [when for when, _ in model.history]
    probes = instants + [when + timedelta(milliseconds=500) for when in instants]
    probes.append(START)
    for instant in probes:
        oldest_backup = min((ref.instant for ref in model.backups), default=None)
        if oldest_backup is None or instant < oldest_backup:
            with pytest.raises(PointInTimeError, match="no backup of it was taken at or before"):
                plan_as_of("jobs", model.backups, model.journal, instant)
            continue
        plan = plan_as_of("jobs", model.backups, model.journal, instant)
        assert model.apply(plan) == model.at(instant), (instant, plan.describe())


def test_a_backup_by_name_replays_nothing():
    model = Model()
    model.load({1: "a"})
    model.backup()
    model.load({1: "b"})
    plan = plan_backup(model.backups[0])
    assert (plan.replays, plan.base_position, plan.through_seq) == ((), 1, 1)


def test_a_restore_whose_backup_is_gone_is_refused_naming_it():
    model = Model()
    model.load({1: "a"})
    model.backup()
    model.load({2: "b"})
    model.restore(0.5)  # as of the backup
    restored = model.journal[-1].source
    model.backups.clear()  # pruned
    model.backup()  # taken after the restore: its position holds it
    model.load({3: "c"})
    assert model.apply(plan_as_of("jobs", model.backups, model.journal, model.clock)) == model.table

    model.backups.append(BackupRef("backups", "jobs/old.avro", "jobs", START, 1, {BLOB_META_POSITION: "0"}))
    model.backup_rows["jobs/old.avro"] = {}
    just_before_the_new_backup = model.backups[0].instant - timedelta(microseconds=1)
    with pytest.raises(PointInTimeError, match=f"the backup it restored, {restored}, is gone"):
        plan_as_of("jobs", model.backups, model.journal, just_before_the_new_backup)


# -- the journal's statements ---------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        journal.create_table_if_missing,
        journal.insert_sql,
        journal.position_sql,
        journal.entries_sql,
        journal.forget_sql,
        journal.snapshot_sql,
    ],
)
def test_journal_statements_parse_as_tsql(statement):
    sql = statement(MSSQL).replace("%s", "1")
    assert [s for s in sqlglot.parse(sql, read="tsql", error_level=ErrorLevel.RAISE) if s]


@pytest.mark.parametrize("adapter", [SQLITE, POSTGRES, MSSQL], ids=lambda a: a.name)
def test_the_journal_insert_takes_every_column_but_the_commit_instant(adapter):
    sql = journal.insert_sql(adapter)
    assert sql.count(adapter.marker) == len(journal.COLUMNS) - 1
    assert journal.now_sql(adapter) in sql


@pytest.mark.parametrize("table", ["departments", "jobs", "hired_employees"])
def test_a_dry_run_and_a_replay_on_sql_server_parse_as_tsql(table):
    """A dry run's plan (staging, checks, the comparison) and a replayed batch's statements
    (``#staging``, MERGE into the restore's ``#temp`` table), compiled as T-SQL: no SQL Server
    can run here."""
    from hr_pipeline.contract.tables import CONTRACTS
    from hr_pipeline.warehouse.dialects.base import CsvBatch

    contract = CONTRACTS[table]
    plan = MSSQL.replace_plan(contract, dry_run=True)
    assert [step.kind for step in plan.steps][-1] == "diff"
    assert not any(step.sql.startswith(("DELETE", "INSERT INTO dbo.")) for step in plan.steps)
    for step in plan.steps:
        if step.kind not in ("load", "replay"):
            assert sqlglot.parse(step.sql, read="tsql", error_level=ErrorLevel.RAISE)

    sent = []

    class Cursor:
        def execute(self, sql, params=None):
            sent.append(sql.replace("%s", "1"))

    class Connection:
        def cursor(self):
            return Cursor()

    values = {"integer": "7", "string": "Nurse", "timestamp": "2021-01-02T03:04:05.000000Z"}
    row = ",".join(values[column.type.value] for column in contract.columns)
    MSSQL.replay_batch(
        Connection(), contract, MSSQL.restore_staging(contract), CsvBatch(f"{row}\n".encode(), 1)
    )
    merge = [sql for sql in sent if sql.startswith("MERGE INTO")]
    assert len(merge) == 1
    assert merge[0].startswith(f"MERGE INTO #restore_{table} ")
    for sql in sent:
        assert sqlglot.parse(sql, read="tsql", error_level=ErrorLevel.RAISE)
