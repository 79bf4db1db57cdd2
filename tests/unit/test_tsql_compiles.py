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

import json
from datetime import datetime

import pytest
import sqlglot
from sqlglot import ErrorLevel, exp

from hr_pipeline import ddl, warehouse
from hr_pipeline.contracts import CONTRACTS, ColumnType, TableContract

pymssql_mssql = pytest.importorskip("pymssql._mssql")

STAGING = "#staging_x"


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
            values.append(f"O'Brien, \"Ñandú\" ; -- {index}")  # quotes, comma, comment marker
    return tuple(values)


contracts = pytest.mark.parametrize("contract", list(CONTRACTS.values()), ids=list(CONTRACTS))


@contracts
def test_create_table_if_missing_parses(contract):
    (statement,) = parse_tsql(ddl.create_table_if_missing(contract, "mssql"))
    creates = list(statement.find_all(exp.Create))
    assert len(creates) == 1
    assert creates[0].find(exp.Table).name == contract.name
    assert statement.find(exp.Anonymous) is None or "OBJECT_ID" in statement.sql("tsql")


@contracts
def test_create_table_parses_with_every_contract_column(contract):
    (statement,) = parse_tsql(ddl.create_table(contract, "mssql"))
    assert isinstance(statement, exp.Create)
    columns = [c.name for c in statement.find_all(exp.ColumnDef)]
    assert columns == list(contract.column_names)
    rendered = statement.sql("tsql").upper()
    assert "DATETIME2(6)" in rendered or ColumnType.TIMESTAMP not in {c.type for c in contract.columns}


@contracts
def test_upsert_from_staging_is_one_merge(contract):
    (statement,) = parse_tsql(ddl.upsert_from_staging(contract, "mssql", STAGING))
    assert isinstance(statement, exp.Merge), type(statement)
    assert statement.this.name == contract.name
    whens = statement.find_all(exp.When)
    assert {bool(w.args.get("matched")) for w in whens} == {True, False}
    # SQL Server refuses a MERGE without a terminating semicolon.
    assert ddl.upsert_from_staging(contract, "mssql", STAGING).rstrip().endswith(";")


@contracts
def test_staging_statements_parse(contract):
    statements = warehouse.mssql_staging_statements(contract, STAGING)
    assert statements
    for sql in statements:
        parsed = parse_tsql(sql)
        assert any(p.find(exp.Create) for p in parsed)
        assert STAGING in sql


@contracts
@pytest.mark.parametrize("row_count", [1, 7, 1000, 2500])
def test_insert_chunks_parse_and_respect_parameter_limit(contract, row_count):
    rows = [sample_row(contract, i) for i in range(row_count)]
    chunks = list(warehouse.mssql_insert_chunks(contract, STAGING, rows))
    assert sum(len(params) for _, params in chunks) == row_count * len(contract.columns)
    for sql, params in chunks:
        assert sql.count("%s") == len(params)
        assert len(params) <= warehouse.MSSQL_MAX_PARAMETERS
        assert len(params) // len(contract.columns) <= 1000  # SQL Server's row-constructor limit
        (statement,) = parse_tsql(substitute(sql, params))
        assert isinstance(statement, exp.Insert)
        values = statement.find(exp.Values)
        assert len(values.expressions) == len(params) // len(contract.columns)


def test_insert_keeps_microseconds_and_unicode():
    """DATETIME2(6) holds microseconds; pymssql renders a datetime with milliseconds only."""
    contract = CONTRACTS["hired_employees"]
    row = sample_row(contract, 1)
    ((sql, params),) = warehouse.mssql_insert_chunks(contract, STAGING, [row])
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
def mssql_warehouse(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE",
        json.dumps({"conn_type": "mssql", "host": "sqlserver.invalid", "login": "sa",
                    "password": "x", "schema": "hr", "port": 1433}),
    )
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


# -- statements of the restore and of the metrics (modules of other engineers) --------------------


@contracts
def test_restore_statements_parse(contract):
    from hr_pipeline import restore

    statements = [
        *restore.create_staging_sql(contract, "mssql"),
        *restore.swap_statements(contract, "mssql"),
    ]
    kinds = [type(parse_tsql(sql)[0]).__name__ for sql in statements]
    assert kinds[-2:] == ["Delete", "Insert"], kinds  # the swap: DELETE then INSERT ... SELECT
    # The whole restore script of SQL Server, as one batch, parses too.
    script = parse_tsql(restore.render_mssql_restore(contract.name))
    assert any(isinstance(s, exp.Delete) for s in script)
    staging = restore.staging_table_name(contract, "mssql")
    assert staging.startswith("#")  # a session temp table: no name clash between restores


def test_metric_statements_parse():
    from hr_pipeline import metrics

    plan = metrics.publish_plan("mssql")
    assert plan.statements
    kinds = []
    for sql in plan.statements:
        (statement,) = parse_tsql(sql)
        kinds.append(type(statement).__name__)
        assert "ON CONFLICT" not in sql.upper() and '"' not in sql, sql
    assert kinds.count("Insert") >= 2 * len(metrics.METRIC_TABLES)
