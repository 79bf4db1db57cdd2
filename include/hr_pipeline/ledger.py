"""The ingest ledger: one row per file an ingest_table run took, in the warehouse table
``ingest_files``, for analysts and operators to query with plain SQL.

A row says which file (its name under ``incoming/``, its sha256 and size), what became of its rows
(rows, loaded, rejected), where the file and its rejects went, which run took it and when, and its
outcome (``status``). It is written once the file's rows are committed and its blobs archived, so
the ledger never claims a load that did not commit; a retried run rewrites its own rows (the key
is the run and the file). A file whose bytes equal an earlier ingested file's is still ingested
(loads are idempotent) and its row names that earlier run (``same_as_run``).

The table's DDL for SQLite, PostgreSQL and SQL Server comes from ``COLUMNS`` below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from hr_pipeline import ddl

TABLE = "ingest_files"

# name -> (kind, length); kinds: text, integer, bigint, timestamp. NOT NULL unless optional.
COLUMNS: dict[str, tuple[str, int | None, bool]] = {
    "run_id": ("text", 250, False),
    "file": ("text", 1024, False),
    "table_name": ("text", 64, False),
    "status": ("text", 32, False),  # loaded | unreadable | refused_by_warehouse | over_reject_limit
    "sha256": ("text", 64, False),
    "bytes": ("bigint", None, False),
    "rows": ("integer", None, False),
    "loaded": ("integer", None, False),
    "rejected": ("integer", None, False),
    "archived_as": ("text", 1024, False),
    "rejects_file": ("text", 1024, True),
    "same_as_run": ("text", 250, True),
    "detail": ("text", 1024, True),
    "ingested_at": ("timestamp", None, False),
}
KEY = ("run_id", "file")

_TYPES = {
    "sqlite": {"text": "TEXT", "integer": "INTEGER", "bigint": "INTEGER", "timestamp": "TEXT"},
    "postgres": {"text": "VARCHAR({n})", "integer": "INTEGER", "bigint": "BIGINT",
                 "timestamp": "TIMESTAMP(6)"},
    "mssql": {"text": "NVARCHAR({n})", "integer": "INT", "bigint": "BIGINT",
              "timestamp": "DATETIME2(6)"},
}


@dataclass(frozen=True)
class LedgerRow:
    run_id: str
    file: str
    table_name: str
    status: str
    sha256: str
    bytes: int
    rows: int
    loaded: int
    rejected: int
    archived_as: str
    rejects_file: str | None = None
    same_as_run: str | None = None
    detail: str | None = None
    ingested_at: datetime | None = None


def create_table_if_missing(dialect: ddl.Dialect) -> str:
    columns = []
    for name, (kind, length, optional) in COLUMNS.items():
        sql_type = _TYPES[dialect][kind].format(n=length)
        columns.append(f"{ddl.quote(name, dialect)} {sql_type}{'' if optional else ' NOT NULL'}")
    columns.append(f"PRIMARY KEY ({', '.join(ddl.quote(k, dialect) for k in KEY)})")
    body = f"{ddl.quote(TABLE, dialect)} (\n    " + ",\n    ".join(columns) + "\n)"
    if dialect == "mssql":
        return f"IF OBJECT_ID(N'dbo.{TABLE}', N'U') IS NULL\nCREATE TABLE dbo.{body}"
    return f"CREATE TABLE IF NOT EXISTS {body}"


def upsert(dialect: ddl.Dialect) -> str:
    """One ledger row, as parameters in ``COLUMNS`` order, inserted or replacing the row of the
    same run and file."""
    names = [ddl.quote(name, dialect) for name in COLUMNS]
    keys = [ddl.quote(name, dialect) for name in KEY]
    rest = [name for name in names if name not in keys]
    values = ddl.placeholders(len(names), dialect)
    if dialect == "mssql":
        return (
            f"MERGE INTO dbo.{ddl.quote(TABLE, dialect)} WITH (HOLDLOCK) AS target\n"
            f"USING (VALUES ({values})) AS source ({', '.join(names)})\n"
            f"ON {' AND '.join(f'target.{k} = source.{k}' for k in keys)}\n"
            f"WHEN MATCHED THEN UPDATE SET {', '.join(f'target.{c} = source.{c}' for c in rest)}\n"
            f"WHEN NOT MATCHED THEN INSERT ({', '.join(names)}) "
            f"VALUES ({', '.join(f'source.{c}' for c in names)});"
        )
    return (
        f"INSERT INTO {ddl.quote(TABLE, dialect)} ({', '.join(names)}) VALUES ({values})\n"
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in rest)}"
    )


def earlier_ingest_sql(dialect: ddl.Dialect) -> str:
    """The newest earlier ledger row of a file with the same bytes (sha256), from another run."""
    q = lambda name: ddl.quote(name, dialect)  # noqa: E731
    marker = "?" if dialect == "sqlite" else "%s"
    columns = f"{q('run_id')}, {q('file')}, {q('ingested_at')}"
    where = f"{q('sha256')} = {marker} AND {q('run_id')} <> {marker}"
    order = f"ORDER BY {q('ingested_at')} DESC"
    if dialect == "mssql":
        return f"SELECT TOP 1 {columns} FROM dbo.{q(TABLE)} WHERE {where} {order}"
    return f"SELECT {columns} FROM {q(TABLE)} WHERE {where} {order} LIMIT 1"


def _parameter(value, dialect: str):
    if isinstance(value, datetime):
        if dialect == "sqlite":
            from hr_pipeline.warehouse import format_stored_timestamp

            return format_stored_timestamp(value)
        if dialect == "mssql":
            return value.isoformat(sep="T", timespec="microseconds")
    return value


def ensure_table(warehouse) -> None:
    with warehouse.transaction() as connection:
        connection.cursor().execute(create_table_if_missing(warehouse.dialect))


def record(warehouse, rows: list[LedgerRow]) -> None:
    """Write ``rows`` (one transaction)."""
    if not rows:
        return
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    sql = upsert(warehouse.dialect)
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute(create_table_if_missing(warehouse.dialect))
        for row in rows:
            values = [getattr(row, name) for name in COLUMNS]
            values[list(COLUMNS).index("ingested_at")] = row.ingested_at or now
            cursor.execute(sql, [_parameter(value, warehouse.dialect) for value in values])


def earlier_ingest(warehouse, sha256: str, run_id: str) -> tuple[str, str, object] | None:
    """(run id, file, when) of the newest earlier ingest of a file with these bytes, if any."""
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute(create_table_if_missing(warehouse.dialect))
        cursor.execute(earlier_ingest_sql(warehouse.dialect), (sha256, run_id))
        found = cursor.fetchone()
    return tuple(found) if found else None
