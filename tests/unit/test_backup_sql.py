"""The SQL of restores, for every dialect: T-SQL parsed by sqlglot (no SQL Server here), and the
statements a restore really sends, recorded on a fake Azure SQL connection (the only mock)."""

from __future__ import annotations

from datetime import datetime, timezone

import fastavro
import pytest
import sqlglot
from sqlglot import ErrorLevel

from hr_pipeline.backup import restore
from hr_pipeline.backup.backups import BackupRef
from hr_pipeline.contract.tables import CONTRACTS, avro_schema
from hr_pipeline.warehouse import facade as warehouse
from hr_pipeline.warehouse.dialects import POSTGRES, SQLITE

contracts = pytest.mark.parametrize("contract", list(CONTRACTS.values()), ids=list(CONTRACTS))


def parse(sql: str, dialect: str):
    statements = [s for s in sqlglot.parse(sql, read=dialect, error_level=ErrorLevel.RAISE) if s]
    assert statements, sql
    return statements


@contracts
def test_mssql_restore_plan_parses_as_tsql(contract):
    plan = restore.replace_plan(contract, "mssql")
    statements = [s for sql in plan.statements for s in parse(sql.replace("%s", "NULL"), "tsql")]
    kinds = [type(s).__name__ for s in statements]
    assert kinds.count("Delete") == 1
    assert kinds.count("Insert") == 2
    script = "\n".join(plan.statements)
    assert script.index("SET XACT_ABORT ON") < script.index("DELETE FROM")
    assert f"dbo.[{contract.name}] WITH (TABLOCKX, HOLDLOCK)" in script
    assert '"' not in script
    assert "ON CONFLICT" not in script


@contracts
def test_restore_sql_parses_for_sqlite(contract):
    for sql in restore.replace_plan(contract, "sqlite").statements:
        parse(sql, "sqlite")


@contracts
def test_postgres_restore_loads_the_table_inside_the_transaction(contract):
    steps = restore.replace_plan(contract, "postgres").steps
    statements = [step.sql for step in steps]
    delete = statements.index(f'DELETE FROM "{contract.name}"')
    copy = next(i for i, sql in enumerate(statements) if sql.startswith(f'COPY "{contract.name}"'))
    assert all(sql.startswith(("LOCK TABLE", "SELECT COUNT(*)")) for sql in statements[:delete])
    assert delete + 1 == copy
    # The journaled loads are replayed into the table itself, then the references are checked.
    assert (steps[copy + 1].kind, steps[copy + 1].sql) == ("replay", contract.name)
    assert all("NOT EXISTS" in sql for sql in statements[copy + 2 :])
    del statements[copy + 1]
    for sql in statements[:copy] + statements[copy + 1 :]:
        parse(sql, "postgres")
    # A dry run stages aside and compares: the table is neither emptied nor written.
    dry = restore.replace_plan(contract, "postgres", dry_run=True).steps
    assert [step.kind for step in dry][-1] == "diff"
    assert not any(step.sql.startswith(("DELETE", "INSERT INTO", f'COPY "{contract.name}"')) for step in dry)
    for step in dry:
        if step.kind not in ("load", "replay"):
            parse(step.sql, "postgres")


def test_reference_checks_cover_both_directions():
    departments = POSTGRES.reference_checks(CONTRACTS["departments"])
    assert [(c.child, c.column, c.parent) for c in departments] == [
        ("hired_employees", "department_id", "departments")
    ]
    assert 'FROM "hired_employees" c' in departments[0].sql
    assert '"restore_departments" p' in departments[0].sql
    hires = POSTGRES.reference_checks(CONTRACTS["hired_employees"])
    assert [(c.child, c.column, c.parent) for c in hires] == [
        ("hired_employees", "department_id", "departments"),
        ("hired_employees", "job_id", "jobs"),
    ]
    assert all('FROM "restore_hired_employees" c' in check.sql for check in hires)


def test_locks_follow_one_table_order():
    assert POSTGRES.restore_lock_sql(CONTRACTS["hired_employees"]) == [
        'LOCK TABLE "departments" IN SHARE MODE',
        'LOCK TABLE "jobs" IN SHARE MODE',
        'LOCK TABLE "hired_employees" IN EXCLUSIVE MODE',
    ]
    assert SQLITE.restore_lock_sql(CONTRACTS["jobs"]) == []


# -- what a restore sends to SQL Server, through a recording fake of Azure SQL -------------------


class RecordingCursor:
    def __init__(self, sent, answers):
        self.sent, self.answers = sent, answers

    def execute(self, sql, params=None):
        self.sent.append((sql, params))

    def executemany(self, sql, seq):  # pragma: no cover
        raise AssertionError("the mssql path must not use executemany")

    def fetchone(self):
        return (7,)

    def fetchall(self):
        return self.answers.pop(0) if self.answers and "NOT EXISTS" in self.sent[-1][0] else []


class RecordingConnection:
    """Stands in for a pymssql connection to Azure SQL (which cannot be reached from here)."""

    def __init__(self, answers=()):
        self.sent: list = []
        self.answers = list(answers)
        self.commits = self.rollbacks = 0

    def cursor(self):
        return RecordingCursor(self.sent, self.answers)

    def commit(self):
        self.commits += 1

    def rollback(self):
        self.rollbacks += 1

    def close(self):
        pass


@pytest.fixture
def mssql_warehouse(azure_sql_connection):
    return warehouse.Warehouse()


def write_avro(path, contract, records):
    metadata = {
        "hr.table": contract.name,
        "hr.rows": str(len(records)),
        "hr.instant": "2026-01-01T00:00:00.000000Z",
        "hr.contract_version": str(contract.version),
    }
    with open(path, "wb") as handle:
        fastavro.writer(
            handle, fastavro.parse_schema(avro_schema(contract)), records, codec="deflate", metadata=metadata
        )
    with open(path, "rb") as handle:
        return restore.read_header(handle)


def hires_records(count):
    moment = datetime(2021, 11, 7, 2, 48, 42, 123456, tzinfo=timezone.utc)
    return [
        {"id": i, "name": f"O'Brien {i}", "datetime": moment, "department_id": 1, "job_id": 2}
        for i in range(1, count + 1)
    ]


def test_mssql_restore_sends_tsql_in_one_transaction(mssql_warehouse, tmp_path, monkeypatch):
    substitute = pytest.importorskip("pymssql._mssql").substitute_params
    contract = CONTRACTS["hired_employees"]
    path = tmp_path / "b.avro"
    header = write_avro(path, contract, hires_records(900))
    connection = RecordingConnection()
    monkeypatch.setattr(mssql_warehouse, "connect", lambda: connection)
    ref = BackupRef(
        "c",
        "hired_employees/hired_employees-20260101T000000Z.avro",
        "hired_employees",
        datetime(2026, 1, 1, tzinfo=timezone.utc),
        1,
        {},
    )
    restore._replace_rows(mssql_warehouse, contract, path, header, ref)
    assert connection.commits == 1
    assert connection.rollbacks == 0
    texts = [substitute(sql, tuple(params)).decode() if params else sql for sql, params in connection.sent]
    for text in texts:
        parse(text, "tsql")
    inserts = [t for t in texts if t.startswith("INSERT INTO #restore_hired_employees")]
    # 900 rows x 5 columns stay under 2,100 parameters per statement: 419 rows at most in each.
    rows_sent = [
        len(params) // len(contract.columns)
        for sql, params in connection.sent
        if sql.startswith("INSERT INTO #restore_hired_employees")
    ]
    assert rows_sent == [419, 419, 62]
    assert len(inserts) == 3
    assert "'2021-11-07T02:48:42.123456'" in inserts[0]  # microseconds kept, no offset
    order = [
        next(i for i, t in enumerate(texts) if t.startswith(p))
        for p in (
            "CREATE TABLE #restore",
            "INSERT INTO #restore",
            "SELECT TOP (0)",
            "DELETE FROM",
            "INSERT INTO dbo.",
        )
    ]
    assert order == sorted(order)


def test_mssql_restore_refused_on_missing_references_rolls_back(mssql_warehouse, tmp_path, monkeypatch):
    contract = CONTRACTS["departments"]
    path = tmp_path / "b.avro"
    header = write_avro(path, contract, [{"id": 1, "department": "Sales"}])
    # the server answers: hires point at departments 4 (3 rows) and 9 (1 row)
    connection = RecordingConnection(answers=[[(4, 3), (9, 1)]])
    monkeypatch.setattr(mssql_warehouse, "connect", lambda: connection)
    ref = BackupRef(
        "c",
        "departments/departments-20260101T000000Z.avro",
        "departments",
        datetime(2026, 1, 1, tzinfo=timezone.utc),
        1,
        {},
    )
    with pytest.raises(
        restore.ReferentialIntegrityError,
        match=r"4 current rows of hired_employees.department_id .* missing from the backup: 4, 9",
    ):
        restore._replace_rows(mssql_warehouse, contract, path, header, ref)
    assert connection.commits == 0
    assert connection.rollbacks == 1
    assert not any(sql.startswith("DELETE") for sql, _ in connection.sent)
