"""PostgreSQL (psycopg 3).

Bulk path: ``COPY`` of each CSV batch straight into the table on an autocommit connection (the
COPY is a transaction by itself), through several connections at once; once a batch meets a key
already there, every batch from then on goes into a temporary staging table by ``COPY``, then one
``INSERT ... SELECT ... ON CONFLICT DO UPDATE``.
Restore: the transaction itself is the staging area (locks, ``DELETE``, ``COPY`` into the table,
reference checks, commit): under MVCC no other session sees any of it before the commit, and it
spares the copy through a temporary table, which doubled the server's work.
Table locks: session-level advisory locks, ``pg_advisory_lock(namespace, crc32(table))`` (or
``_shared``). They need a direct session: through PgBouncer in transaction pooling mode session
locks do not hold.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from hr_pipeline.contract.tables import ColumnType, TableContract
from hr_pipeline.runtime.settings import load_connections
from hr_pipeline.warehouse.dialects.base import (
    EXCLUSIVE_MODE,
    SHARED_MODE,
    Adapter,
    CsvBatch,
    ReplacePlan,
    Step,
)

log = logging.getLogger(__name__)


class PostgresAdapter(Adapter):
    name = "postgres"
    sqlglot_dialect = "postgres"
    types = {
        "integer": "INTEGER",
        "text": "VARCHAR({n})",
        "bigint": "BIGINT",
        "timestamp": "TIMESTAMP(6)",
        "float": "DOUBLE PRECISION",
    }
    publish_isolation = "REPEATABLE READ"

    def driver_errors(self) -> tuple[tuple[type, ...], tuple[type, ...]]:
        # psycopg 3 for COPY, psycopg2 behind the provider's hook: both drivers' classes.
        import psycopg
        import psycopg2

        return (
            (psycopg.IntegrityError, psycopg.DataError, psycopg2.IntegrityError, psycopg2.DataError),
            (
                psycopg.OperationalError,
                psycopg.InterfaceError,
                psycopg2.OperationalError,
                psycopg2.InterfaceError,
            ),
        )

    def existing_keys_query(self, contract: TableContract, wanted: list[int]) -> tuple[str, tuple]:
        key, table = self.quote(contract.key), self.quote(contract.name)
        return f"SELECT {key} FROM {table} WHERE {key} = ANY(%s::bigint[])", (wanted,)

    # -- bulk load ---------------------------------------------------------------------------

    def load_connections(self, requested: int | None = None) -> int:
        # A COPY keeps one server process busy, the others idle: several connections at once.
        return requested or load_connections()

    def open_load_connection(self, warehouse):
        """Autocommit: each batch makes its own transaction (see ``write_batch``). Committed
        asynchronously: a batch's commit does not wait for its WAL to reach the disk (at a small
        batch the flush of each commit is much of the load's time); ``finish_load`` waits once,
        for all of them, before the load returns. Until then a crash of the server may lose the
        last batches, never half of one: the load has not returned, its task fails and the retry
        upserts the file again."""
        connection = warehouse.connect()
        connection.autocommit = True
        connection.execute("SET synchronous_commit = off")
        return connection

    def finish_load(self, connection) -> None:
        """A transaction with an id, committed synchronously: its commit waits for the WAL up to
        its own commit record, which comes after every batch's (of every connection of the load,
        all committed by now)."""
        connection.execute("SET synchronous_commit = on")
        with connection.transaction():
            connection.execute("SELECT pg_current_xact_id()")

    def new_load(self) -> dict:
        return {"direct": True}

    def write_batch(self, connection, contract: TableContract, batch, state: dict) -> None:
        if state["direct"] and isinstance(batch, CsvBatch):
            from psycopg.errors import UniqueViolation

            try:
                # On an autocommit connection the COPY is a transaction by itself: all of the
                # batch or none of it, one round trip fewer than COPY then COMMIT.
                self.copy_csv(connection, contract, contract.name, batch)
                return
            except UniqueViolation:
                if state["direct"]:
                    state["direct"] = False
                    log.info(
                        "%s already holds some of these keys: upserting through a staging table from here on",
                        contract.name,
                    )
        with connection.transaction():
            self.upsert_batch(connection, contract, batch)

    def upsert_batch(self, connection, contract: TableContract, rows) -> None:
        if not len(rows):
            return
        staging = f"staging_{contract.name}"
        cursor = connection.cursor()
        for statement in self.load_staging_sql(contract):
            cursor.execute(statement)
        if isinstance(rows, CsvBatch):
            self.copy_csv(connection, contract, staging, rows)
        else:
            self.copy_rows(cursor, staging, contract, rows)
        cursor.execute(self.upsert_from_staging(contract, self.quote(staging)))

    def load_staging_sql(self, contract: TableContract) -> list[str]:
        staging = self.quote(f"staging_{contract.name}")
        return [
            f"CREATE TEMP TABLE IF NOT EXISTS {staging} "
            f"(LIKE {self.quote(contract.name)} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        ]

    def copy_sql(
        self, contract: TableContract, table_name: str, csv: bool = False, binary: bool = False
    ) -> str:
        """The one COPY statement of every path (load, staging, restore)."""
        options = " (FORMAT csv)" if csv else " (FORMAT binary)" if binary else ""
        return f"COPY {self.quote(table_name)} ({self.column_list(contract)}) FROM STDIN{options}"

    def copy_csv(self, connection, contract: TableContract, table_name: str, batch: CsvBatch) -> None:
        with connection.cursor().copy(self.copy_sql(contract, table_name, csv=True)) as copy:
            copy.write(batch.data)

    def copy_rows(
        self, cursor, table_name: str, contract: TableContract, rows: Iterable[Sequence[Any]]
    ) -> None:
        with cursor.copy(self.copy_sql(contract, table_name)) as copy:
            for row in rows:
                copy.write_row(row)

    # -- snapshot reads: REPEATABLE READ, READ ONLY, a server-side (named) cursor --------------

    def begin_snapshot(self, connection) -> None:
        import psycopg

        connection.autocommit = False
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True

    def snapshot_cursor(self, connection, contract: TableContract, chunk_rows: int):
        cursor = connection.cursor(name=f"backup_{contract.name}")
        cursor.itersize = chunk_rows
        return cursor

    # -- replace rows: locks, DELETE, COPY into the table itself, reference checks -------------

    def lock_table_sql(self, name: str, exclusive: bool) -> str:
        return f"LOCK TABLE {self.quote(name)} IN {'EXCLUSIVE' if exclusive else 'SHARE'} MODE"

    def replace_plan(self, contract: TableContract, dry_run: bool = False) -> ReplacePlan:
        # The price of loading the table itself: writers of the table (and of the tables it
        # references or that reference it) wait for the whole load instead of the swap alone;
        # readers never wait. A dry run keeps the table and stages aside, to compare.
        if dry_run:
            return super().replace_plan(contract, dry_run=True)
        return ReplacePlan(
            self.name,
            (
                *[Step("execute", sql) for sql in self.restore_lock_sql(contract)],
                Step("count", self.count_rows(contract.name)),
                Step("execute", f"DELETE FROM {self.quote(contract.name)}"),
                Step("load", self.copy_sql(contract, contract.name, binary=True)),
                Step("replay", contract.name),
                *[
                    Step("check", check.sql, check)
                    for check in self.reference_checks(contract, restored_rows_in=contract.name)
                ],
            ),
        )

    def restore_staging_sql(self, contract: TableContract) -> list[str]:
        """A dry run's staging table (a real restore loads the table itself)."""
        staging, table = self.quote(self.restore_staging(contract)), self.quote(contract.name)
        return [
            f"DROP TABLE IF EXISTS pg_temp.{staging}",
            f"CREATE TEMP TABLE {staging} (LIKE {table} INCLUDING ALL) ON COMMIT DROP",
        ]

    def restore_insert_sql(self, contract: TableContract) -> str:
        return self.copy_sql(contract, self.restore_staging(contract), binary=True)

    def replay_batch(
        self, connection, contract: TableContract, target: str, batch: CsvBatch, state: dict | None = None
    ) -> None:
        """Straight into ``target`` by COPY, under a savepoint, while the load's batches meet no key
        already there (``state``, from ``new_load``, per replayed load: new rows, the common case);
        from the first that does, COPY into the load's staging table (emptied first: in the
        restore's one transaction ON COMMIT DELETE ROWS never comes), then one upsert."""
        if state is not None and state.get("direct"):
            from psycopg.errors import UniqueViolation

            try:
                with connection.transaction():  # a savepoint: a conflict undoes this batch only
                    self.copy_csv(connection, contract, target, batch)
                return
            except UniqueViolation:
                state["direct"] = False
        staging = f"staging_{contract.name}"
        cursor = connection.cursor()
        for statement in self.load_staging_sql(contract):
            cursor.execute(statement)
        cursor.execute(f"TRUNCATE {self.quote(staging)}")
        self.copy_csv(connection, contract, staging, batch)
        cursor.execute(self.upsert_from_staging(contract, self.quote(staging), self.quote(target)))

    def load_restore_rows(self, cursor, contract: TableContract, sql: str, rows) -> None:
        """A backup's rows by binary COPY: values as the backup typed them (naive UTC
        timestamps), none formatted as text by the client nor parsed by the server."""
        with cursor.copy(sql) as copy:
            copy.set_types([_BINARY_COPY_TYPES[column.type] for column in contract.columns])
            for row in rows:
                copy.write_row(row)

    # -- table locks -------------------------------------------------------------------------

    def table_locker(self, warehouse):
        connection = warehouse.connect()
        try:
            connection.autocommit = True  # session locks; no transaction left open
            return PostgresTableLocker(connection)
        except BaseException:
            connection.close()
            raise


# The PostgreSQL type of each contract column type, as binary COPY writes it.
_BINARY_COPY_TYPES = {
    ColumnType.INTEGER: "int4",
    ColumnType.STRING: "varchar",
    ColumnType.TIMESTAMP: "timestamp",
}


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


# The first key of every advisory lock the pipeline takes: other applications' advisory locks on
# the same database (which use other numbers) do not collide with these.
PG_LOCK_NAMESPACE = _signed32(zlib.crc32(b"hr_pipeline"))


def pg_lock_key(table: str) -> int:
    """The second key of a table's advisory lock: stable across processes, versions and machines
    (two tables with one crc32 would merely exclude each other, never lose their exclusion)."""
    return _signed32(zlib.crc32(table.encode("utf-8")))


class PostgresTableLocker:
    """Session-level advisory locks on a dedicated autocommit connection."""

    _FUNCTIONS = {  # (try, wait, release) per mode
        EXCLUSIVE_MODE: ("pg_try_advisory_lock", "pg_advisory_lock", "pg_advisory_unlock"),
        SHARED_MODE: ("pg_try_advisory_lock_shared", "pg_advisory_lock_shared", "pg_advisory_unlock_shared"),
    }

    def __init__(self, connection):
        self.connection = connection
        if connection.info.server_version >= 140000:
            # The session idles while the load or restore works on other connections: a server
            # ending idle sessions would end it, and its locks, silently.
            connection.execute("SET idle_session_timeout = 0")

    def _call(self, function: str, table: str):
        cursor = self.connection.cursor()
        cursor.execute(
            f"SELECT {function}(%s::integer, %s::integer)", (PG_LOCK_NAMESPACE, pg_lock_key(table))
        )
        return cursor.fetchone()[0]

    def try_acquire(self, table: str, mode: str) -> bool:
        return bool(self._call(self._FUNCTIONS[mode][0], table))

    def acquire(self, table: str, mode: str) -> None:
        self._call(self._FUNCTIONS[mode][1], table)

    def release(self, table: str, mode: str) -> None:
        if not self._call(self._FUNCTIONS[mode][2], table):
            log.warning("the %s lock on %s was not held at release (the session was reset?)", mode, table)

    def close(self) -> None:
        self.connection.close()  # ends the session: releases whatever it still holds
