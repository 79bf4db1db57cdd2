"""Every statement the project sends to SQL Server parses as T-SQL.

There is no SQL Server here (no Docker engine, no Azure SQL reachable), so correctness for the
``mssql`` dialect is checked without a server: each statement is rendered exactly as the project
renders it, parameters are substituted by pymssql's own client-side routine (``_mssql.
substitute_params``: pymssql sends the substituted text, not a prepared statement), and the result is
parsed by sqlglot's T-SQL dialect with ``ErrorLevel.RAISE``. The SQL Server connection is a
recording fake: that is the only mock, and it stands for Azure SQL.

What this catches: a PostgreSQL/SQLite-ism leaking into the mssql path (``ON CONFLICT``, double
quotes, ``IF NOT EXISTS``), a MERGE that is not one, a parameter count over SQL Server's 2,100,
a value that pymssql would render lossily. What it cannot catch: semantic errors a server would raise
(a missing table, a type mismatch at run time).
"""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlglot
from sqlglot import ErrorLevel, exp

from hr_pipeline.contract.tables import CONTRACTS, ColumnType, TableContract
from hr_pipeline.warehouse import facade as warehouse
from hr_pipeline.warehouse.dialects import MSSQL
from hr_pipeline.warehouse.dialects.mssql import MSSQL_MAX_PARAMETERS

pymssql_mssql = pytest.importorskip("pymssql._mssql")

STAGING = "#staging_x"  # as the adapter names it: MSSQL.load_staging(contract)


def parse_tsql(sql: str) -> list[exp.Expression]:
    statements = [s for s in sqlglot.parse(sql, read="tsql", error_level=ErrorLevel.RAISE) if s]
    assert statements, f"nothing parsed from {sql!r}"
    return statements


def substitute(sql: str, params) -> str:
    """The text pymssql sends for ``cursor.execute(sql, params)``."""
    if not params:
        return sql
    return pymssql_mssql.substitute_params(sql, tuple(params)).decode("utf-8")


def sample_row(contract: TableContract, index: int) -> tuple:
    values = []
    for column in contract.columns:
        if column.type is ColumnType.INTEGER:
            values.append(index)
        elif column.type is ColumnType.TIMESTAMP:
            values.append(datetime(2021, 11, 7, 2, 48, 42, 123456))
        else:
            values.append(f'O\'Brien, "Ñandú" ; -- {index}')  # quotes, comma, comment marker
    return tuple(values)


contracts = pytest.mark.parametrize("contract", list(CONTRACTS.values()), ids=list(CONTRACTS))


@contracts
def test_create_table_if_missing_parses(contract):
    sql = MSSQL.create_contract_table_if_missing(contract)
    (statement,) = parse_tsql(sql)
    creates = list(statement.find_all(exp.Create))
    assert len(creates) == 1
    assert creates[0].find(exp.Table).name == contract.name
    # T-SQL has no CREATE TABLE IF NOT EXISTS: the CREATE is guarded by the table's OBJECT_ID.
    assert isinstance(statement, exp.IfBlock), type(statement).__name__
    assert sql.startswith(f"IF OBJECT_ID(N'dbo.{contract.name}', N'U') IS NULL\n"), sql


@contracts
def test_create_table_parses_with_every_contract_column(contract):
    (statement,) = parse_tsql(MSSQL.create_table(contract))
    assert isinstance(statement, exp.Create)
    columns = [c.name for c in statement.find_all(exp.ColumnDef)]
    assert columns == list(contract.column_names)
    rendered = statement.sql("tsql").upper()
    instants = [c.type for c in contract.columns].count(ColumnType.TIMESTAMP)
    assert rendered.count("DATETIME2(6)") == instants, rendered  # one per instant column, microseconds kept


@contracts
def test_upsert_from_staging_is_one_merge(contract):
    (statement,) = parse_tsql(MSSQL.upsert_from_staging(contract, STAGING))
    assert isinstance(statement, exp.Merge), type(statement)
    assert statement.this.name == contract.name
    whens = statement.find_all(exp.When)
    assert {bool(w.args.get("matched")) for w in whens} == {True, False}
    # SQL Server refuses a MERGE without a terminating semicolon.
    assert MSSQL.upsert_from_staging(contract, STAGING).rstrip().endswith(";")


@contracts
def test_staging_statements_parse(contract):
    statements = MSSQL.load_staging_sql(contract)
    assert statements
    for sql in statements:
        parsed = parse_tsql(sql)
        assert any(p.find(exp.Create) for p in parsed)
        assert MSSQL.load_staging(contract) in sql


@contracts
@pytest.mark.parametrize("row_count", [1, 7, 1000, 2500])
def test_insert_chunks_parse_and_respect_parameter_limit(contract, row_count):
    rows = [sample_row(contract, i) for i in range(row_count)]
    chunks = list(MSSQL.insert_chunks(contract, STAGING, rows))
    assert sum(len(params) for _, params in chunks) == row_count * len(contract.columns)
    for sql, params in chunks:
        assert sql.count("%s") == len(params)
        assert len(params) <= MSSQL_MAX_PARAMETERS
        assert len(params) // len(contract.columns) <= 1000  # SQL Server's row-constructor limit
        (statement,) = parse_tsql(substitute(sql, params))
        assert isinstance(statement, exp.Insert)
        values = statement.find(exp.Values)
        assert len(values.expressions) == len(params) // len(contract.columns)


def test_insert_keeps_microseconds_and_unicode():
    """DATETIME2(6) holds microseconds; pymssql renders a datetime with milliseconds only."""
    contract = CONTRACTS["hired_employees"]
    row = sample_row(contract, 1)
    ((sql, params),) = MSSQL.insert_chunks(contract, STAGING, [row])
    rendered = substitute(sql, params)
    assert "2021-11-07T02:48:42.123456" in rendered
    assert "N'O''Brien" in rendered  # NVARCHAR literal, quote doubled
    (statement,) = parse_tsql(rendered)
    assert isinstance(statement, exp.Insert)


# -- every statement the Warehouse sends, through a recording fake of Azure SQL ------------------


class RecordingCursor:
    def __init__(self, log):
        self.log = log

    def execute(self, sql, params=None):
        self.log.append(substitute(sql, params))

    def executemany(self, sql, seq):  # pragma: no cover - the mssql path must not use it
        raise AssertionError("the mssql path must not use executemany (no fast_executemany in pymssql)")

    def fetchall(self):
        return []

    def fetchone(self):
        return (0,)


class RecordingConnection:
    """Stands in for a pymssql connection to Azure SQL (which cannot be reached from here)."""

    def __init__(self):
        self.sent: list[str] = []

    def cursor(self):
        return RecordingCursor(self.sent)

    def commit(self):
        pass

    def rollback(self):
        pass

    def close(self):
        pass


@pytest.fixture
def mssql_warehouse(azure_sql_connection, monkeypatch):
    connection = RecordingConnection()
    wh = warehouse.Warehouse()
    assert wh.dialect == "mssql"
    monkeypatch.setattr(wh, "connect", lambda: connection)
    return wh, connection


def test_every_statement_the_warehouse_sends_parses(mssql_warehouse):
    wh, connection = mssql_warehouse
    wh.ensure_tables()
    for name, contract in CONTRACTS.items():
        wh.key_values(name)
        wh.row_count(name)
        with wh.transaction() as conn:
            wh.upsert_batch(conn, contract, [sample_row(contract, i) for i in range(450)])
    assert len(connection.sent) >= 3 * 6
    kinds = []
    for sql in connection.sent:
        for statement in parse_tsql(sql):
            kinds.append(type(statement).__name__)
    assert kinds.count("Merge") == len(CONTRACTS)
    assert "TruncateTable" in kinds
    assert not any("ON CONFLICT" in sql.upper() for sql in connection.sent)


# -- statements of the restore and of the metrics ------------------------------------------------


@contracts
def test_restore_statements_parse(contract):
    """The statements of the plan a restore executes on SQL Server (``_run_plan``), the load
    step's INSERT with one row's parameters substituted as pymssql does."""
    from hr_pipeline.backup import restore

    plan = restore.replace_plan(contract, "mssql")
    texts = [
        substitute(step.sql, sample_row(contract, 1)) if step.kind == "load" else step.sql
        for step in plan.steps
    ]
    kinds = [type(parse_tsql(sql)[0]).__name__ for sql in texts]
    assert kinds[-2:] == ["Delete", "Insert"], kinds  # the swap: DELETE then INSERT ... SELECT
    assert [s.kind for s in plan.steps].index("load") == 2  # after DROP and CREATE of staging
    # The whole plan as one batch parses too.
    assert any(isinstance(s, exp.Delete) for s in parse_tsql(";\n".join(texts) + ";"))
    staging = MSSQL.restore_staging(contract)
    assert staging.startswith("#")  # a session temp table: no name clash between restores


def test_metric_statements_parse():
    from hr_pipeline import metrics

    plan = metrics.publish_plan("mssql")
    kinds = []
    for sql in plan.statements:
        (statement,) = parse_tsql(sql)
        kinds.append(type(statement).__name__)
        assert "ON CONFLICT" not in sql.upper(), f"PostgreSQL's ON CONFLICT in T-SQL: {sql}"
        assert '"' not in sql, f"a double-quoted identifier in T-SQL: {sql}"
    # Each metric table is filled twice: built aside as <name>__next, then swapped in.
    assert kinds.count("Insert") == 2 * len(metrics.METRIC_TABLES), kinds


# -- table locks and reference re-checks (Warehouse.table_locks, Warehouse.existing_keys) ---------


class ScriptedCursor(RecordingCursor):
    """Answers sp_getapplock with the next scripted result (then 0: granted at once)."""

    def __init__(self, log, results):
        super().__init__(log)
        self.results = results

    def fetchone(self):
        if "sp_getapplock" in self.log[-1] and self.results:
            return (self.results.pop(0),)
        return (0,)


def _text(value: exp.Expression) -> str:
    """A string literal's text (N'...' or '...'); any other value as T-SQL (-1 stays -1)."""
    return value.name if isinstance(value, (exp.Literal, exp.National)) else value.sql("tsql")


def applocks(sent: list[str]) -> list[tuple[str, str, str, str]]:
    """(procedure, resource, mode, timeout) of each app-lock call sent, parsed as T-SQL."""
    calls = []
    for sql in sent:
        for statement in parse_tsql(sql):
            if isinstance(statement, exp.Execute):
                args = {e.this.name: _text(e.expression) for e in statement.expressions}
                calls.append(
                    (statement.this.name, args.get("Resource"), args.get("LockMode"), args.get("LockTimeout"))
                )
                assert args["LockOwner"] == "Session"
    return calls


def test_table_locks_send_parsable_applock_calls_in_one_order(mssql_warehouse):
    wh, connection = mssql_warehouse
    with wh.table_locks(exclusive=["jobs"], shared=["hired_employees", "departments"]):
        taken = applocks(connection.sent)
    assert taken == [
        ("sp_getapplock", "hr_pipeline:departments", "Shared", "0"),
        ("sp_getapplock", "hr_pipeline:hired_employees", "Shared", "0"),
        ("sp_getapplock", "hr_pipeline:jobs", "Exclusive", "0"),
    ]
    assert applocks(connection.sent)[3:] == [  # released in reverse order
        ("sp_releaseapplock", f"hr_pipeline:{name}", None, None)
        for name in ("jobs", "hired_employees", "departments")
    ]


def test_a_refused_applock_is_logged_then_waited_for_in_order(mssql_warehouse, monkeypatch, caplog):
    wh, connection = mssql_warehouse
    results = [0, -1, 0]  # departments granted, hired_employees busy, jobs granted
    monkeypatch.setattr(connection, "cursor", lambda: ScriptedCursor(connection.sent, results))
    with caplog.at_level("INFO", logger="hr_pipeline.warehouse.facade"):
        with wh.table_locks(exclusive=["hired_employees"], shared=["departments", "jobs"]):
            pass
    assert applocks(connection.sent) == [
        ("sp_getapplock", "hr_pipeline:departments", "Shared", "0"),
        ("sp_getapplock", "hr_pipeline:hired_employees", "Exclusive", "0"),
        ("sp_getapplock", "hr_pipeline:jobs", "Shared", "0"),
        # jobs comes after the busy table in the order: let go before waiting, taken again after
        ("sp_releaseapplock", "hr_pipeline:jobs", None, None),
        ("sp_getapplock", "hr_pipeline:hired_employees", "Exclusive", "-1"),
        ("sp_getapplock", "hr_pipeline:jobs", "Shared", "-1"),
        ("sp_releaseapplock", "hr_pipeline:jobs", None, None),
        ("sp_releaseapplock", "hr_pipeline:hired_employees", None, None),
        ("sp_releaseapplock", "hr_pipeline:departments", None, None),
    ]
    waiting = [r.getMessage() for r in caplog.records if "waiting for the lock" in r.getMessage()]
    assert waiting == ["waiting for the lock on hired_employees (another load or restore of it is running)"]
    assert any("got the lock on hired_employees after waiting" in r.getMessage() for r in caplog.records)


def test_a_failed_applock_is_an_error_and_releases_what_was_taken(mssql_warehouse, monkeypatch):
    wh, connection = mssql_warehouse
    results = [0, -1, -3]  # departments granted; jobs busy; the wait ends as a deadlock victim
    monkeypatch.setattr(connection, "cursor", lambda: ScriptedCursor(connection.sent, results))
    with pytest.raises(warehouse.WarehouseError, match=r"sp_getapplock on hr_pipeline:jobs failed: -3"):
        with wh.table_locks(exclusive=["departments", "jobs"]):
            pytest.fail("the body must not run without its locks")
    assert applocks(connection.sent)[-1] == ("sp_releaseapplock", "hr_pipeline:departments", None, None)


def test_existing_keys_binds_the_ids_as_one_json_parameter(mssql_warehouse):
    wh, connection = mssql_warehouse
    assert wh.existing_keys("departments", [3, 1, 3, 2**70]) == set()
    (sql,) = connection.sent
    (statement,) = parse_tsql(sql)
    assert isinstance(statement, exp.Select)
    assert "OPENJSON(N'[1, 3]')" in sql
    assert "dbo.[departments]" in sql
    assert wh.existing_keys("departments", []) == set()
    assert len(connection.sent) == 1


@pytest.mark.parametrize(
    ("table", "locks"),
    [
        ("departments", [("departments", "Exclusive")]),
        (
            "hired_employees",
            [("departments", "Shared"), ("hired_employees", "Exclusive"), ("jobs", "Shared")],
        ),
    ],
)
def test_a_restore_holds_its_table_locks_around_the_whole_replace(mssql_warehouse, tmp_path, table, locks):
    import fastavro

    from hr_pipeline.backup import restore
    from hr_pipeline.backup.backups import BackupRef
    from hr_pipeline.contract.tables import avro_schema

    wh, connection = mssql_warehouse
    contract = CONTRACTS[table]
    path = tmp_path / "b.avro"
    record = {
        c.name: (
            datetime(2021, 1, 1)
            if c.type is ColumnType.TIMESTAMP
            else 1
            if c.type is ColumnType.INTEGER
            else "x"
        )
        for c in contract.columns
    }
    metadata = {
        "hr.table": table,
        "hr.rows": "1",
        "hr.instant": "2026-01-01T00:00:00.000000Z",
        "hr.contract_version": str(contract.version),
    }
    with open(path, "wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(avro_schema(contract)), [record], metadata=metadata)
    with open(path, "rb") as handle:
        header = restore.read_header(handle)
    ref = BackupRef("c", f"{table}/{table}-20260101T000000Z.avro", table, datetime(2026, 1, 1), 1, {})
    restore._replace_rows(wh, contract, path, header, ref)
    calls = applocks(connection.sent)
    assert [(r.split(":")[1], m) for _, r, m, _ in calls[: len(locks)]] == locks
    assert [c[0] for c in calls] == ["sp_getapplock"] * len(locks) + ["sp_releaseapplock"] * len(locks)
    first_release = next(i for i, sql in enumerate(connection.sent) if "sp_releaseapplock" in sql)
    last_get = max(i for i, sql in enumerate(connection.sent) if "sp_getapplock" in sql)
    swap = [i for i, sql in enumerate(connection.sent) if sql.startswith(("DELETE FROM", "CREATE TABLE #"))]
    assert swap
    assert last_get < min(swap)
    assert max(swap) < first_release
