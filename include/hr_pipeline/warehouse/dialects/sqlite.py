"""SQLite: one file, one writer at a time; timestamps stored as fixed-width ISO text.

Bulk path: ``executemany`` of an ``INSERT ... ON CONFLICT DO UPDATE`` (in-process, already fast).
Table locks: ``flock`` of ``<database file>.lock-<table>``, a file beside the database, created on
first use and left there (deleting it would let two runs lock two different files).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from hr_pipeline.contract.instants import format_instant
from hr_pipeline.contract.tables import TableContract
from hr_pipeline.warehouse.dialects.base import EXCLUSIVE_MODE, Adapter

LOAD_CHUNK_ROWS = 50_000


class SqliteAdapter(Adapter):
    name = "sqlite"
    sqlglot_dialect = "sqlite"
    marker = "?"
    # No timestamp type: the column holds fixed-width ISO text that strftime() reads and that
    # sorts correctly.
    types = {"integer": "INTEGER", "text": "TEXT", "bigint": "INTEGER", "timestamp": "TEXT", "float": "REAL"}
    timestamps_as_text = True

    def driver_errors(self) -> tuple[tuple[type, ...], tuple[type, ...]]:
        import sqlite3

        return (sqlite3.IntegrityError, sqlite3.DataError), (sqlite3.OperationalError, sqlite3.InterfaceError)

    def parameter(self, value):
        return format_instant(value) if isinstance(value, datetime) else value

    def to_db_row(self, contract: TableContract, row) -> tuple:
        return tuple(format_instant(v) if isinstance(v, datetime) else v for v in row)

    def existing_keys_query(self, contract: TableContract, wanted: list[int]) -> tuple[str, tuple]:
        key, table = self.quote(contract.key), self.quote(contract.name)
        sql = f"SELECT {key} FROM {table} WHERE {key} IN (SELECT value FROM json_each(?))"
        return sql, (json.dumps(wanted),)

    def begin_statements(self, isolation: str | None) -> list[str]:
        # Python's sqlite3 opens transactions only before INSERT/UPDATE/DELETE; DDL would run in
        # autocommit. An explicit BEGIN takes every statement into one transaction.
        return ["BEGIN IMMEDIATE"]

    def prepare(self, connection) -> None:
        # Readers keep reading the last committed state while a load or restore writes.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA busy_timeout=30000")

    @contextmanager
    def write_transaction(self, connection) -> Iterator[None]:
        # BEGIN IMMEDIATE takes the database's only write lock at once, DDL included.
        connection.isolation_level = None
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _upsert_rows(self, connection, contract: TableContract, rows) -> None:
        connection.cursor().executemany(
            self.upsert_values(contract.name, contract.column_names, [contract.key]),
            [self.to_db_row(contract, row) for row in rows],
        )

    # -- snapshot reads: one read transaction (WAL: writers go on, the reader keeps its snapshot)

    def begin_snapshot(self, connection) -> None:
        connection.isolation_level = None  # we say BEGIN and COMMIT ourselves
        connection.execute("BEGIN")

    def end_snapshot(self, connection, ok: bool) -> None:
        connection.execute("COMMIT" if ok else "ROLLBACK")

    # -- replace rows: a temporary staging table; BEGIN IMMEDIATE holds the only write lock ----

    def restore_staging_sql(self, contract: TableContract) -> list[str]:
        staging = self.quote(self.restore_staging(contract))
        return [
            f"DROP TABLE IF EXISTS temp.{staging}",
            self.create_statement(f"CREATE TEMP TABLE {staging}", self.column_definitions(contract)),
        ]

    def restore_lock_sql(self, contract: TableContract) -> list[str]:
        return []  # BEGIN IMMEDIATE already holds the database's only write lock

    def restore_insert_sql(self, contract: TableContract) -> str:
        return (
            f"INSERT INTO temp.{self.quote(self.restore_staging(contract))} "
            f"({self.column_list(contract)}) VALUES ({self.placeholders(len(contract.columns))})"
        )

    def load_restore_rows(self, cursor, contract: TableContract, sql: str, rows) -> None:
        batch: list = []
        for row in rows:
            batch.append(self.to_db_row(contract, row))
            if len(batch) >= LOAD_CHUNK_ROWS:
                cursor.executemany(sql, batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)

    # -- table locks -------------------------------------------------------------------------

    def table_locker(self, warehouse):
        return SqliteTableLocker(warehouse.sqlite_path())


def sqlite_lock_file(database_path: str, table: str) -> str:
    return f"{database_path}.lock-{table}"


class SqliteTableLocker:
    """``flock`` of one lock file per table beside the database file (one machine; the OS
    releases a dead process's locks when its files close)."""

    def __init__(self, database_path: str):
        self.database_path = database_path
        self.files: dict[str, int] = {}

    def _fd(self, table: str) -> int:
        if table not in self.files:
            self.files[table] = os.open(
                sqlite_lock_file(self.database_path, table), os.O_RDWR | os.O_CREAT, 0o666
            )
        return self.files[table]

    @staticmethod
    def _operation(mode: str) -> int:
        import fcntl

        return fcntl.LOCK_EX if mode == EXCLUSIVE_MODE else fcntl.LOCK_SH

    def try_acquire(self, table: str, mode: str) -> bool:
        import fcntl

        try:
            fcntl.flock(self._fd(table), self._operation(mode) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def acquire(self, table: str, mode: str) -> None:
        import fcntl

        fcntl.flock(self._fd(table), self._operation(mode))

    def release(self, table: str, mode: str) -> None:
        import fcntl

        fcntl.flock(self._fd(table), fcntl.LOCK_UN)

    def close(self) -> None:
        for fd in self.files.values():
            os.close(fd)  # releases any lock still held on it
        self.files.clear()
