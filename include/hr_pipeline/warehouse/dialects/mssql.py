"""SQL Server / Azure SQL (pymssql, through the MsSqlHook).

Bulk path: pymssql has no ``fast_executemany``; rows go into a ``#staging`` temp table as multi-row
``INSERT ... VALUES`` statements (bounded by SQL Server's 2,100 parameters per statement), then one
``MERGE``. Restore: a ``#restore`` temp table, then locks, reference checks and the swap in one
``XACT_ABORT`` transaction. Snapshot reads: ``SNAPSHOT`` isolation (needs
ALLOW_SNAPSHOT_ISOLATION ON; Azure SQL Database has it on). Table locks: ``sp_getapplock`` owned
by the session.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from hr_pipeline.contract.instants import parse_stored_timestamp
from hr_pipeline.contract.tables import ColumnType, TableContract
from hr_pipeline.warehouse.dialects.base import (
    EXCLUSIVE_MODE,
    SHARED_MODE,
    Adapter,
    WarehouseError,
)

MSSQL_MAX_PARAMETERS = 2100
LOAD_CHUNK_ROWS = 50_000


class MssqlAdapter(Adapter):
    name = "mssql"
    sqlglot_dialect = "tsql"
    types = {
        "integer": "INT",
        "text": "NVARCHAR({n})",
        "bigint": "BIGINT",
        "timestamp": "DATETIME2(6)",
        "float": "FLOAT",
    }
    publish_isolation = "SERIALIZABLE"

    def driver_errors(self) -> tuple[tuple[type, ...], tuple[type, ...]]:
        import pymssql

        return (pymssql.IntegrityError, pymssql.DataError), (pymssql.OperationalError, pymssql.InterfaceError)

    def quote(self, identifier: str) -> str:
        return "[" + super().quote(identifier)[1:-1] + "]"

    def qualified(self, name: str) -> str:
        return name if name.startswith("#") else f"dbo.{self.quote(name)}"

    def create_if_missing(self, table_name: str, definitions: Sequence[str]) -> str:
        return f"IF OBJECT_ID(N'dbo.{table_name}', N'U') IS NULL\n" + self.create_statement(
            f"CREATE TABLE dbo.{self.quote(table_name)}", definitions
        )

    # -- values ------------------------------------------------------------------------------

    def parameter(self, value: Any) -> Any:
        """pymssql renders a ``datetime`` with milliseconds only, losing DATETIME2(6)'s
        microseconds: timestamps go as ISO 8601 text (read whatever DATEFORMAT is)."""
        if isinstance(value, datetime):
            return value.isoformat(sep="T", timespec="microseconds")
        return value

    def from_text_row(self, contract: TableContract, row: Sequence[str]) -> tuple:
        values = []
        for column, text in zip(contract.columns, row):
            if column.type is ColumnType.INTEGER:
                values.append(int(text))
            elif column.type is ColumnType.TIMESTAMP:
                values.append(parse_stored_timestamp(text))
            else:
                values.append(text)
        return tuple(values)

    # -- statements --------------------------------------------------------------------------

    def upsert_values(self, table_name: str, columns: Sequence[str], keys: Sequence[str]) -> str:
        names = [self.quote(name) for name in columns]
        key_names = [self.quote(name) for name in keys]
        rest = [name for name in names if name not in key_names]
        return (
            f"MERGE INTO {self.qualified(table_name)} WITH (HOLDLOCK) AS target\n"
            f"USING (VALUES ({self.placeholders(len(names))})) AS source ({', '.join(names)})\n"
            f"ON {' AND '.join(f'target.{k} = source.{k}' for k in key_names)}\n"
            f"WHEN MATCHED THEN UPDATE SET {', '.join(f'target.{c} = source.{c}' for c in rest)}\n"
            f"WHEN NOT MATCHED THEN INSERT ({', '.join(names)}) "
            f"VALUES ({', '.join(f'source.{c}' for c in names)});"
        )

    def upsert_from_staging(self, contract: TableContract, staging: str, target: str | None = None) -> str:
        key, columns = self.quote(contract.key), self.column_list(contract)
        non_key = [self.quote(name) for name in contract.column_names if name != contract.key]
        updates = ", ".join(f"target.{c} = source.{c}" for c in non_key)
        source_values = ", ".join(f"source.{self.quote(n)}" for n in contract.column_names)
        return (
            f"MERGE INTO {target or self.qualified(contract.name)} WITH (HOLDLOCK) AS target\n"
            f"USING {staging} AS source ON target.{key} = source.{key}\n"
            f"WHEN MATCHED THEN UPDATE SET {updates}\n"
            f"WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({source_values});"
        )

    def select_first(self, columns: str, table_name: str, where: str, order: str) -> str:
        return f"SELECT TOP 1 {columns} FROM {self.qualified(table_name)} WHERE {where} {order}"

    def existing_keys_query(self, contract: TableContract, wanted: list[int]) -> tuple[str, tuple]:
        key = self.quote(contract.key)
        sql = (
            f"SELECT {key} FROM {self.qualified(contract.name)} WHERE {key} IN "
            "(SELECT [value] FROM OPENJSON(%s) WITH ([value] BIGINT '$'))"
        )
        return sql, (json.dumps(wanted),)

    # -- bulk load: #staging, multi-row INSERTs, MERGE ---------------------------------------

    def load_staging(self, contract: TableContract) -> str:
        return f"#staging_{contract.name}"

    def load_staging_sql(self, contract: TableContract) -> list[str]:
        staging = self.load_staging(contract)
        create = self.create_statement(f"CREATE TABLE {staging}", self.column_definitions(contract))
        return [f"IF OBJECT_ID(N'tempdb..{staging}') IS NULL\n{create}"]

    def _upsert_rows(self, connection, contract: TableContract, rows, target: str | None = None) -> None:
        staging = self.load_staging(contract)
        cursor = connection.cursor()
        for statement in self.load_staging_sql(contract):
            cursor.execute(statement)
        for sql, params in self.insert_chunks(contract, staging, rows):
            cursor.execute(sql, params)
        cursor.execute(self.upsert_from_staging(contract, staging, target))
        cursor.execute(f"TRUNCATE TABLE {staging}")

    def replay_batch(
        self, connection, contract: TableContract, target: str, batch, state: dict | None = None
    ) -> None:
        """Through the load's ``#staging`` table, then one MERGE into ``target``."""
        rows = [self.from_text_row(contract, row) for row in batch.parsed()]
        self._upsert_rows(connection, contract, rows, self.qualified(target))

    def insert_sql(self, contract: TableContract, staging: str, row_count: int) -> str:
        row_marker = "(" + self.placeholders(len(contract.columns)) + ")"
        return f"INSERT INTO {staging} ({self.column_list(contract)}) VALUES " + ", ".join(
            [row_marker] * row_count
        )

    def insert_chunks(self, contract: TableContract, staging: str, rows: Sequence[Sequence[Any]]):
        """Multi-row INSERTs that stay under SQL Server's 2,100 parameters (and 1,000 rows)."""
        rows_per_statement = min(1000, (MSSQL_MAX_PARAMETERS - 1) // len(contract.columns))
        for start in range(0, len(rows), rows_per_statement):
            chunk = rows[start : start + rows_per_statement]
            yield (
                self.insert_sql(contract, staging, len(chunk)),
                tuple(self.parameter(value) for row in chunk for value in row),
            )

    # -- snapshot reads ----------------------------------------------------------------------

    def begin_snapshot(self, connection) -> None:
        cursor = connection.cursor()
        cursor.execute("SET TRANSACTION ISOLATION LEVEL SNAPSHOT")
        cursor.execute("BEGIN TRANSACTION")

    # -- replace rows ------------------------------------------------------------------------

    def restore_staging(self, contract: TableContract) -> str:
        return f"#restore_{contract.name}"  # a session temp table: no clash between restores

    def restore_staging_sql(self, contract: TableContract) -> list[str]:
        staging = self.restore_staging(contract)
        return [
            f"DROP TABLE IF EXISTS {staging}",  # SQL Server 2016+ and Azure SQL
            self.create_statement(f"CREATE TABLE {staging}", self.column_definitions(contract)),
        ]

    def restore_insert_sql(self, contract: TableContract) -> str:
        """The pattern of the staging INSERTs: one row constructor per row of a chunk."""
        return self.insert_sql(contract, self.restore_staging(contract), 1)

    def after_staging_sql(self) -> list[str]:
        return ["SET XACT_ABORT ON"]

    def lock_table_sql(self, name: str, exclusive: bool) -> str:
        hints = "TABLOCKX, HOLDLOCK" if exclusive else "TABLOCK, HOLDLOCK"
        return f"SELECT TOP (0) 1 FROM {self.qualified(name)} WITH ({hints})"

    def load_restore_rows(self, cursor, contract: TableContract, sql: str, rows) -> None:
        staging = self.restore_staging(contract)
        batch: list = []
        for row in rows:
            batch.append(row)
            if len(batch) >= LOAD_CHUNK_ROWS:
                for chunk_sql, params in self.insert_chunks(contract, staging, batch):
                    cursor.execute(chunk_sql, params)
                batch = []
        for chunk_sql, params in self.insert_chunks(contract, staging, batch):
            cursor.execute(chunk_sql, params)

    # -- table locks -------------------------------------------------------------------------

    def table_locker(self, warehouse):
        connection = warehouse.connect()
        try:
            if callable(getattr(connection, "autocommit", None)):
                connection.autocommit(True)  # pymssql
            return MssqlTableLocker(connection)
        except BaseException:
            connection.close()
            raise


def mssql_lock_resource(table: str) -> str:
    return f"hr_pipeline:{table}"


def mssql_getapplock_sql(timeout_ms: int) -> str:
    """``sp_getapplock`` owned by the session; returns its result (>= 0: granted, -1: timed out,
    -2: cancelled, -3: deadlock victim, -999: error). Parameters: resource, mode."""
    return (
        "DECLARE @result INT;\n"
        "EXEC @result = sp_getapplock @Resource = %s, @LockMode = %s, "
        f"@LockOwner = 'Session', @LockTimeout = {int(timeout_ms)};\n"
        "SELECT @result"
    )


MSSQL_RELEASEAPPLOCK_SQL = "EXEC sp_releaseapplock @Resource = %s, @LockOwner = 'Session'"


class MssqlTableLocker:
    """``sp_getapplock`` / ``sp_releaseapplock`` on a dedicated session."""

    _MODES = {EXCLUSIVE_MODE: "Exclusive", SHARED_MODE: "Shared"}

    def __init__(self, connection):
        self.connection = connection

    def _get(self, table: str, mode: str, timeout_ms: int) -> int:
        cursor = self.connection.cursor()
        cursor.execute(mssql_getapplock_sql(timeout_ms), (mssql_lock_resource(table), self._MODES[mode]))
        return int(cursor.fetchone()[0])

    def try_acquire(self, table: str, mode: str) -> bool:
        result = self._get(table, mode, 0)
        if result < -1:
            raise WarehouseError(f"sp_getapplock on {mssql_lock_resource(table)} failed: {result}")
        return result >= 0

    def acquire(self, table: str, mode: str) -> None:
        result = self._get(table, mode, -1)
        if result < 0:
            raise WarehouseError(f"sp_getapplock on {mssql_lock_resource(table)} failed: {result}")

    def release(self, table: str, mode: str) -> None:
        self.connection.cursor().execute(MSSQL_RELEASEAPPLOCK_SQL, (mssql_lock_resource(table),))

    def close(self) -> None:
        self.connection.close()
