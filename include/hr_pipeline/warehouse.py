"""The warehouse behind the ``warehouse`` connection: SQLite, PostgreSQL or SQL Server.

Access goes through the common-sql provider hooks; which one is picked by the connection's type.
Bulk paths, chosen per dialect:

- SQLite: ``executemany`` of an ``INSERT ... ON CONFLICT DO UPDATE`` (in-process, already fast).
- PostgreSQL: ``COPY`` of the batch into a temporary staging table, then one
  ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``.
- SQL Server: the hook's driver is pymssql, which has no ``fast_executemany``; rows go into a
  ``#staging`` temp table as multi-row ``INSERT ... VALUES`` statements (bounded by SQL Server's
  2,100 parameters per statement), then one ``MERGE``. See the README's "Azure SQL" section.

Loads and restores of one table exclude each other through ``Warehouse.table_locks`` (per-table
locks the warehouse itself gives, across processes and machines; see there).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import operator
import os
import re
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from hr_pipeline import ddl
from hr_pipeline.contracts import CONTRACTS, ColumnType, TableContract, get_contract
from hr_pipeline.ddl import Dialect
from hr_pipeline.settings import WAREHOUSE_CONN_ID, load_connections

log = logging.getLogger(__name__)

_DIALECT_BY_CONN_TYPE: dict[str, Dialect] = {
    "sqlite": "sqlite",
    "postgres": "postgres",
    "postgresql": "postgres",
    "mssql": "mssql",
}
MSSQL_MAX_PARAMETERS = 2100

WAITING_MESSAGE = "waiting for the lock on {tables} (another load or restore of it is running)"
EXCLUSIVE, SHARED = "exclusive", "shared"


class WarehouseError(RuntimeError):
    pass


@dataclass(frozen=True)
class CsvBatch:
    """Validated rows as canonical CSV bytes (see validation.py): PostgreSQL's COPY reads them
    as they are, with no per-row work in Python; the other dialects parse them into rows."""

    data: bytes
    rows: int

    def __len__(self) -> int:
        return self.rows

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")

    def parsed(self) -> list[list[str]]:
        return list(csv.reader(io.StringIO(self.text)))


def csv_batches(blocks: Iterable[bytes], batch_size: int) -> Iterator[CsvBatch]:
    """CSV bytes arriving in arbitrary blocks, cut into batches of ``batch_size`` records.

    Cut on record boundaries without parsing: a newline ends a record unless a quoted field is
    open at that point, i.e. unless an odd number of quotes precedes it (a quote inside a quoted
    field is doubled, so it never changes the parity). Vectorised with numpy, a block at a time:
    the quotes before each newline are counted by a binary search in the quotes' positions
    (half the CPU of a running count over every byte; the load's COPYs need that CPU more).
    """
    import numpy as np

    pending: list[bytes] = []  # bytes after the last cut
    pending_records = 0
    quote_open = 0
    for block in blocks:
        if not block:
            continue
        data = np.frombuffer(block, dtype=np.uint8)
        quotes = np.flatnonzero(data == ord('"'))
        newlines = np.flatnonzero(data == ord("\n"))
        ends = newlines[((np.searchsorted(quotes, newlines) + quote_open) & 1) == 0]
        quote_open = (len(quotes) + quote_open) & 1
        start = 0
        needed = batch_size - pending_records
        while len(ends) >= needed:
            cut = int(ends[needed - 1]) + 1
            pending.append(block[start:cut])
            yield CsvBatch(b"".join(pending), batch_size)
            pending, pending_records, start = [], 0, cut
            ends = ends[needed:]
            needed = batch_size
        if start < len(block):
            pending.append(block[start:])
        pending_records += len(ends)
    tail = b"".join(pending)
    if tail.strip():
        # A last record without its newline still counts.
        yield CsvBatch(tail, pending_records + (0 if tail.endswith(b"\n") else 1))


def _hook_for(conn_id: str):
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    dialect = _DIALECT_BY_CONN_TYPE.get(connection.conn_type)
    if dialect is None:
        raise WarehouseError(
            f"Connection {conn_id!r} has type {connection.conn_type!r}; the warehouse must be "
            f"one of {', '.join(sorted(set(_DIALECT_BY_CONN_TYPE)))}"
        )
    if dialect == "sqlite":
        from airflow.providers.sqlite.hooks.sqlite import SqliteHook

        return SqliteHook(sqlite_conn_id=conn_id), dialect
    if dialect == "postgres":
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=conn_id), dialect
    from airflow.providers.microsoft.mssql.hooks.mssql import MsSqlHook

    return MsSqlHook(mssql_conn_id=conn_id), dialect


class Warehouse:
    """One warehouse connection id, with the dialect-specific parts of reading and writing."""

    def __init__(self, conn_id: str = WAREHOUSE_CONN_ID):
        self.conn_id = conn_id
        self.hook, self.dialect = _hook_for(conn_id)

    # -- connections -------------------------------------------------------------------------

    def connect(self):
        connection = self.hook.get_conn()
        if self.dialect == "sqlite":
            # Readers keep reading the last committed state while a load or restore writes.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA busy_timeout=30000")
        return connection

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A connection whose work is committed on success and rolled back on any error."""
        connection = self.connect()
        try:
            yield connection
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()

    # -- schema ------------------------------------------------------------------------------

    def ensure_tables(self, contracts: Iterable[TableContract] = CONTRACTS.values()) -> None:
        with self.transaction() as connection:
            cursor = connection.cursor()
            for contract in contracts:
                cursor.execute(ddl.create_table_if_missing(contract, self.dialect))

    # -- values ------------------------------------------------------------------------------

    def to_db_row(self, contract: TableContract, row: Sequence[Any]) -> tuple:
        """A typed row (int, str, naive-UTC datetime) as this dialect's driver wants it."""
        if self.dialect != "sqlite":
            return tuple(row)
        return tuple(
            format_stored_timestamp(value) if isinstance(value, datetime) else value
            for value in row
        )

    def from_db_row(self, contract: TableContract, row: Sequence[Any]) -> tuple:
        """A row as read from this dialect, back to typed values (naive-UTC datetimes)."""
        values = []
        for column, value in zip(contract.columns, row):
            if column.type is ColumnType.TIMESTAMP and value is not None:
                value = parse_stored_timestamp(value)
            values.append(value)
        return tuple(values)

    # -- per-table locks across processes -----------------------------------------------------

    @contextmanager
    def table_locks(self, exclusive: Iterable[str] = (), shared: Iterable[str] = (),
                    waiting_message: str = WAITING_MESSAGE) -> Iterator[None]:
        """Hold per-table locks, across processes (and machines), for the whole ``with`` body.

        ``exclusive``: tables this run changes (no other holder of any lock on them meanwhile);
        ``shared``: tables it only relies on (others may hold them shared too, nobody exclusive).
        A table named in both is locked exclusive. Table names are contract names only.

        Intended usage (every run that writes a table takes these, for its whole write):

        - a restore of T: ``exclusive=[T]``, ``shared=`` the tables T references (restore.py);
        - a load of T: ``exclusive=[T]``, ``shared=`` the tables T references, and inside the
          lock, before writing, re-check the references against what exists now (a restore of a
          referenced table may have run since validation; none can run during the load)::

              contract = get_contract(table)
              referenced = [c.references for c in contract.foreign_keys]
              with warehouse.table_locks(exclusive=[table], shared=referenced):
                  for column in contract.foreign_keys:
                      present = warehouse.existing_keys(column.references, ids_in_file[column.name])
                      ...  # reject, with reasons, the rows whose reference is not in ``present``
                  warehouse.load_batches(contract, batches)

          So a load of hired_employees excludes another load or a restore of hired_employees,
          and a restore of departments or jobs. It also excludes a load of departments or jobs
          (exclusive on those): stricter than needed, since an upsert never removes an id, but
          two lock modes cannot tell a load from a restore.

        The locks the warehouse gives, on a connection of their own, released at the end and,
        if the process dies, by the server or the OS (the session or the file closes):

        - PostgreSQL: session-level advisory locks, ``pg_advisory_lock(namespace, crc32(table))``
          (or ``_shared``). Needs a direct session: through PgBouncer in transaction pooling mode
          session locks do not hold.
        - SQLite (one file, one machine): ``flock`` of ``<database file>.lock-<table>``, a file
          beside the database, created on first use and left there (deleting it would let two
          runs lock two different files).
        - SQL Server: ``sp_getapplock @Resource = 'hr_pipeline:<table>', @LockOwner = 'Session'``.

        Locks are taken in one global order, sorted table names, so that two runs never each
        hold a lock the other waits for. Each is first asked for without waiting; if one is
        refused, ``waiting_message`` (``{tables}``: the busy tables) is logged once, then the run
        waits (without a time limit: the task's own timeout, if any, ends it) and logs how long
        it waited once it holds them all.

        The locks do not nest: a thread that holds a table's lock and asks for it again gets a
        ``WarehouseError`` (waiting would wait for itself).
        """
        plan = lock_plan(exclusive, shared)
        if not plan:
            yield
            return
        held_here = _held_in_this_thread()
        for table, _ in plan:
            if (self.conn_id, table) in held_here:
                raise WarehouseError(
                    f"This thread already holds the lock on {table} (warehouse {self.conn_id!r}): "
                    "table_locks does not nest on one table"
                )
        locker = self._table_locker()
        held: list[tuple[str, str]] = []
        try:
            refused: list[int] = []
            for index, (table, mode) in enumerate(plan):
                if locker.try_acquire(table, mode):
                    held.append((table, mode))
                else:
                    refused.append(index)
            if refused:
                # Keep only the locks before the first refused one: waiting while holding a lock
                # that comes later in the global order could deadlock with another waiter.
                first = refused[0]
                for table, mode in reversed(held[first:]):
                    locker.release(table, mode)
                del held[first:]
                busy = ", ".join(plan[index][0] for index in refused)
                log.info(waiting_message.format(tables=busy, table=busy))
                started = time.monotonic()
                for table, mode in plan[first:]:
                    locker.acquire(table, mode)
                    held.append((table, mode))
                log.info("got the lock on %s after waiting %.1f s", busy, time.monotonic() - started)
            held_here.update((self.conn_id, table) for table, _ in plan)
            try:
                yield
            finally:
                held_here.difference_update((self.conn_id, table) for table, _ in plan)
        finally:
            for table, mode in reversed(held):
                try:
                    locker.release(table, mode)
                except Exception as error:  # closing below releases it anyway
                    log.warning("releasing the lock on %s failed (%s: %s); closing its connection "
                                "releases it", table, type(error).__name__, error)
            locker.close()

    def _table_locker(self):
        if self.dialect == "sqlite":
            return _SqliteTableLocker(self.sqlite_path())
        connection = self.connect()
        try:
            if self.dialect == "postgres":
                connection.autocommit = True  # session locks; no transaction left open
                return _PostgresTableLocker(connection)
            if callable(getattr(connection, "autocommit", None)):
                connection.autocommit(True)  # pymssql
            return _MssqlTableLocker(connection)
        except BaseException:
            connection.close()
            raise

    def sqlite_path(self) -> str:
        """The file of a SQLite warehouse (as SQLite itself resolved the connection's URI)."""
        connection = self.hook.get_conn()
        try:
            rows = connection.execute("PRAGMA database_list").fetchall()
        finally:
            connection.close()
        path = next((row[2] for row in rows if row[1] == "main"), "")
        if not path:
            raise WarehouseError(
                f"Warehouse {self.conn_id!r} is an in-memory SQLite database: there is no file "
                "beside which to lock tables (and no other process could see it anyway)"
            )
        return path

    # -- reads -------------------------------------------------------------------------------

    def key_values(self, table_name: str) -> set[int]:
        contract = CONTRACTS[table_name]
        sql = f"SELECT {ddl.quote(contract.key, self.dialect)} FROM {ddl.quote(contract.name, self.dialect)}"
        with self.transaction() as connection:
            cursor = connection.cursor()
            cursor.execute(sql)
            return {row[0] for row in cursor.fetchall()}

    def existing_keys(self, table_name: str, ids: Iterable[int], connection=None) -> set[int]:
        """Which of ``ids`` are keys of ``table_name`` now: one query, the ids bound as one
        parameter (a JSON array read by ``json_each`` on SQLite and ``OPENJSON`` on SQL Server, an
        array on PostgreSQL); never SQL built from the values.

        For a load to re-check its references inside ``table_locks`` (see there). Runs on
        ``connection`` if given (the caller's transaction), else in a transaction of its own.
        Ids must be integers (``TypeError`` otherwise); ids outside 64 bits exist nowhere.
        """
        contract = get_contract(table_name)
        wanted = sorted({value for value in map(operator.index, ids) if _INT64_MIN <= value <= _INT64_MAX})
        if not wanted:
            return set()
        key, table = ddl.quote(contract.key, self.dialect), ddl.quote(contract.name, self.dialect)
        if self.dialect == "postgres":
            sql, params = f"SELECT {key} FROM {table} WHERE {key} = ANY(%s::bigint[])", (wanted,)
        elif self.dialect == "sqlite":
            sql = f"SELECT {key} FROM {table} WHERE {key} IN (SELECT value FROM json_each(?))"
            params = (json.dumps(wanted),)
        else:
            sql = (f"SELECT {key} FROM dbo.{table} WHERE {key} IN "
                   "(SELECT [value] FROM OPENJSON(%s) WITH ([value] BIGINT '$'))")
            params = (json.dumps(wanted),)

        def run(conn) -> set[int]:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            return {int(row[0]) for row in cursor.fetchall()}

        if connection is not None:
            return run(connection)
        with self.transaction() as own:
            return run(own)

    def row_count(self, table_name: str) -> int:
        contract = CONTRACTS[table_name]
        with self.transaction() as connection:
            cursor = connection.cursor()
            cursor.execute(f"SELECT COUNT(*) FROM {ddl.quote(contract.name, self.dialect)}")
            return int(cursor.fetchone()[0])

    # -- writes ------------------------------------------------------------------------------

    def from_text_row(self, contract: TableContract, row: Sequence[str]) -> tuple:
        """A validated row in canonical text form (see validation.py) as this driver wants it.

        SQLite stores the text as is (INTEGER affinity turns digits into integers, instants are
        already in the stored form); PostgreSQL's COPY parses text itself; pymssql gets values.
        """
        if self.dialect != "mssql":
            return tuple(row)
        values = []
        for column, text in zip(contract.columns, row):
            if column.type is ColumnType.INTEGER:
                values.append(int(text))
            elif column.type is ColumnType.TIMESTAMP:
                values.append(parse_stored_timestamp(text))
            else:
                values.append(text)
        return tuple(values)

    def load_connections(self) -> int:
        """How many connections a bulk load writes through at once. PostgreSQL: several (a
        COPY keeps one server process busy, the others idle); SQLite has one writer at a time;
        SQL Server is not measured here, so it stays at one."""
        return load_connections() if self.dialect == "postgres" else 1

    def load_batches(self, contract: TableContract, batches: Iterable[Sequence[Sequence[Any]]],
                     on_batch=None, connections: int | None = None) -> int:
        """Upsert each batch in its own transaction; returns rows written.

        A failure rolls back only the batches in flight: the batches before stay, and since every
        write is an upsert by key, running the same load again converges to the same table.
        Batches may commit out of order when several connections write, so they must not share
        keys (validation rejects every row of a key that occurs twice in a file).

        On PostgreSQL, ``CsvBatch`` batches go straight into the table by COPY as long as none
        meets a key already there (the common case: new rows); the first that does is rolled
        back and upserted through a staging table, as is every batch after it.
        """
        state = {"direct": self.dialect == "postgres"}

        def write(connection, batch) -> None:
            if state["direct"] and isinstance(batch, CsvBatch):
                from psycopg.errors import UniqueViolation

                try:
                    # On an autocommit connection the COPY is a transaction by itself: all of
                    # the batch or none of it, one round trip fewer than COPY then COMMIT.
                    self._copy_csv(connection, contract, contract.name, batch)
                    return
                except UniqueViolation:
                    if state["direct"]:
                        state["direct"] = False
                        log.info("%s already holds some of these keys: upserting through a "
                                 "staging table from here on", contract.name)
            if self.dialect == "postgres":
                with connection.transaction():
                    self.upsert_batch(connection, contract, batch)
                return
            try:
                self.upsert_batch(connection, contract, batch)
                connection.commit()
            except BaseException:
                connection.rollback()
                raise

        if self.dialect != "postgres":
            connections = 1  # see load_connections
        connections = connections or self.load_connections()
        report = on_batch or (lambda written: None)
        if connections <= 1:
            written = 0
            connection = self._load_connection()
            try:
                for batch in batches:
                    write(connection, batch)
                    written += len(batch)
                    report(written)
            finally:
                connection.close()
            return written
        return self._load_in_parallel(write, batches, connections, report)

    def _load_connection(self):
        """A connection for ``load_batches``: on PostgreSQL in autocommit mode, each batch
        making its own transaction (see ``write`` there)."""
        connection = self.connect()
        if self.dialect == "postgres":
            connection.autocommit = True
        return connection

    def _load_in_parallel(self, write, batches, connections: int, report) -> int:
        """``write`` each batch on one of ``connections`` connections, one writer thread per
        connection, fed through a queue. The queue holds batches up to ``IN_FLIGHT_BYTES`` (at
        least two per writer), so that the writers keep busy while the next block of the file is
        fetched, and memory stays bounded whatever the file. The first error stops the feeding
        and is raised once the writers have stopped (batches in flight are rolled back by
        ``write``; those already committed stay, as in a single-connection load)."""
        import queue
        import threading

        done = object()
        first = next(iter_batches := iter(batches), None)
        if first is None:
            return 0
        depth = max(2 * connections, IN_FLIGHT_BYTES // max(1, _size(first)))
        pending: queue.Queue = queue.Queue(maxsize=depth)
        progress = threading.Lock()
        errors: list[BaseException] = []
        written = 0
        opened = [self._load_connection() for _ in range(connections)]

        def writer(connection) -> None:
            nonlocal written
            while (batch := pending.get()) is not done:
                if errors:
                    continue  # drain without writing once something failed
                try:
                    write(connection, batch)
                except BaseException as error:  # noqa: BLE001 - re-raised by the feeding thread
                    errors.append(error)
                    continue
                with progress:
                    written += len(batch)
                    report(written)

        threads = [threading.Thread(target=writer, args=(c,), name=f"load-{i}", daemon=True)
                   for i, c in enumerate(opened)]
        try:
            for thread in threads:
                thread.start()
            try:
                pending.put(first)
                for batch in iter_batches:
                    if errors:
                        break
                    pending.put(batch)
            finally:
                for _ in threads:
                    pending.put(done)
                for thread in threads:
                    thread.join()
        finally:
            for connection in opened:
                connection.close()
        if errors:
            raise errors[0]
        return written

    def upsert_batch(self, connection, contract: TableContract, rows: Sequence[Sequence[Any]]) -> None:
        """Insert or replace ``rows`` (typed tuples in contract column order, or a ``CsvBatch``)
        by key.

        Runs on the caller's connection: the caller owns the transaction.
        """
        if not len(rows):
            return
        if isinstance(rows, CsvBatch):
            if self.dialect == "postgres":
                self._upsert_postgres(connection, contract, rows)
                return
            rows = [self.from_text_row(contract, row) for row in rows.parsed()]
        if self.dialect == "sqlite":
            connection.cursor().executemany(
                ddl.upsert_values(contract, "sqlite"), [self.to_db_row(contract, r) for r in rows]
            )
        elif self.dialect == "postgres":
            self._upsert_postgres(connection, contract, rows)
        else:
            self._upsert_mssql(connection, contract, rows)

    def _upsert_postgres(self, connection, contract: TableContract, rows) -> None:
        staging = f"staging_{contract.name}"
        cursor = connection.cursor()
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {ddl.quote(staging, 'postgres')} "
            f"(LIKE {ddl.quote(contract.name, 'postgres')} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        if isinstance(rows, CsvBatch):
            self._copy_csv(connection, contract, staging, rows)
        else:
            copy_rows(cursor, staging, contract, rows)
        cursor.execute(ddl.upsert_from_staging(contract, "postgres", staging))

    @staticmethod
    def _copy_csv(connection, contract: TableContract, table: str, batch: CsvBatch) -> None:
        sql = (f"COPY {ddl.quote(table, 'postgres')} ({ddl.column_list(contract, 'postgres')}) "
               "FROM STDIN (FORMAT csv)")
        with connection.cursor().copy(sql) as copy:
            copy.write(batch.data)

    def _upsert_mssql(self, connection, contract: TableContract, rows) -> None:
        staging = f"#staging_{contract.name}"
        cursor = connection.cursor()
        for statement in mssql_staging_statements(contract, staging):
            cursor.execute(statement)
        for sql, params in mssql_insert_chunks(contract, staging, rows):
            cursor.execute(sql, params)
        cursor.execute(ddl.upsert_from_staging(contract, "mssql", staging))
        cursor.execute(f"TRUNCATE TABLE {staging}")


IN_FLIGHT_BYTES = 16 << 20
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


# -- per-table locks (see Warehouse.table_locks) ---------------------------------------------------


def lock_plan(exclusive: Iterable[str] = (), shared: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(table, mode) in the one global order, sorted table names; exclusive wins over shared.

    Only contract tables (a user's string never reaches a lock file name or a lock resource).
    """
    if isinstance(exclusive, str) or isinstance(shared, str):
        raise TypeError("table_locks takes lists of table names, not a single string")
    exclusive_names = {get_contract(name).name for name in exclusive}
    shared_names = {get_contract(name).name for name in shared} - exclusive_names
    return sorted([(name, EXCLUSIVE) for name in exclusive_names]
                  + [(name, SHARED) for name in shared_names])


_THREAD_LOCKS = threading.local()


def _held_in_this_thread() -> set[tuple[str, str]]:
    held = getattr(_THREAD_LOCKS, "held", None)
    if held is None:
        held = _THREAD_LOCKS.held = set()
    return held


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


# The first key of every advisory lock the pipeline takes: other applications' advisory locks on
# the same database (which use other numbers) do not collide with these.
PG_LOCK_NAMESPACE = _signed32(zlib.crc32(b"hr_pipeline"))


def pg_lock_key(table: str) -> int:
    """The second key of a table's advisory lock: stable across processes, versions and machines
    (two tables with one crc32 would merely exclude each other, never lose their exclusion)."""
    return _signed32(zlib.crc32(table.encode("utf-8")))


class _PostgresTableLocker:
    """Session-level advisory locks on a dedicated autocommit connection."""

    _FUNCTIONS = {  # (try, wait, release) per mode
        EXCLUSIVE: ("pg_try_advisory_lock", "pg_advisory_lock", "pg_advisory_unlock"),
        SHARED: ("pg_try_advisory_lock_shared", "pg_advisory_lock_shared", "pg_advisory_unlock_shared"),
    }

    def __init__(self, connection):
        self.connection = connection
        if connection.info.server_version >= 140000:
            # The session idles while the load or restore works on other connections: a server
            # ending idle sessions would end it, and its locks, silently.
            connection.execute("SET idle_session_timeout = 0")

    def _call(self, function: str, table: str):
        cursor = self.connection.cursor()
        cursor.execute(f"SELECT {function}(%s::integer, %s::integer)",
                       (PG_LOCK_NAMESPACE, pg_lock_key(table)))
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


def sqlite_lock_file(database_path: str, table: str) -> str:
    return f"{database_path}.lock-{table}"


class _SqliteTableLocker:
    """``flock`` of one lock file per table beside the database file (one machine; the OS
    releases a dead process's locks when its files close)."""

    def __init__(self, database_path: str):
        self.database_path = database_path
        self.files: dict[str, int] = {}

    def _fd(self, table: str) -> int:
        if table not in self.files:
            self.files[table] = os.open(sqlite_lock_file(self.database_path, table),
                                        os.O_RDWR | os.O_CREAT, 0o666)
        return self.files[table]

    @staticmethod
    def _operation(mode: str) -> int:
        import fcntl

        return fcntl.LOCK_EX if mode == EXCLUSIVE else fcntl.LOCK_SH

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


def mssql_lock_resource(table: str) -> str:
    return f"hr_pipeline:{table}"


def mssql_getapplock_sql(timeout_ms: int) -> str:
    """``sp_getapplock`` owned by the session; returns its result (>= 0: granted, -1: timed out,
    -2: cancelled, -3: deadlock victim, -999: error). Parameters: resource, mode."""
    return ("DECLARE @result INT;\n"
            "EXEC @result = sp_getapplock @Resource = %s, @LockMode = %s, "
            f"@LockOwner = 'Session', @LockTimeout = {int(timeout_ms)};\n"
            "SELECT @result")


MSSQL_RELEASEAPPLOCK_SQL = "EXEC sp_releaseapplock @Resource = %s, @LockOwner = 'Session'"


class _MssqlTableLocker:
    """``sp_getapplock`` / ``sp_releaseapplock`` on a dedicated session."""

    _MODES = {EXCLUSIVE: "Exclusive", SHARED: "Shared"}

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


def _size(batch) -> int:
    return len(batch.data) if isinstance(batch, CsvBatch) else 100 * len(batch)


def copy_rows(cursor, table: str, contract: TableContract, rows: Iterable[Sequence[Any]]) -> None:
    """PostgreSQL ``COPY ... FROM STDIN`` of typed rows (psycopg 3)."""
    sql = (
        f"COPY {ddl.quote(table, 'postgres')} ({ddl.column_list(contract, 'postgres')}) FROM STDIN"
    )
    with cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)


def mssql_staging_statements(contract: TableContract, staging: str) -> list[str]:
    create = ddl.create_table(contract, "mssql", table_name="x").replace("[x]", staging, 1)
    return [f"IF OBJECT_ID(N'tempdb..{staging}') IS NULL\n{create}"]


def mssql_insert_chunks(contract: TableContract, staging: str, rows: Sequence[Sequence[Any]]):
    """Multi-row INSERT statements that stay under SQL Server's 2,100 parameters (and 1,000 rows)."""
    width = len(contract.columns)
    rows_per_statement = min(1000, (MSSQL_MAX_PARAMETERS - 1) // width)
    row_marker = "(" + ddl.placeholders(width, "mssql") + ")"
    for start in range(0, len(rows), rows_per_statement):
        chunk = rows[start : start + rows_per_statement]
        sql = (
            f"INSERT INTO {staging} ({ddl.column_list(contract, 'mssql')}) VALUES "
            + ", ".join([row_marker] * len(chunk))
        )
        yield sql, tuple(_mssql_value(value) for row in chunk for value in row)


def _mssql_value(value: Any) -> Any:
    """pymssql renders a ``datetime`` with milliseconds only, losing DATETIME2(6)'s microseconds:
    send timestamps as ISO 8601 text instead (converted by SQL Server whatever DATEFORMAT is)."""
    if isinstance(value, datetime):
        return value.isoformat(sep="T", timespec="microseconds")
    return value


def format_stored_timestamp(value: datetime) -> str:
    """A datetime (naive UTC, or aware) as SQLite stores it: fixed-width UTC text
    ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, the year zero-padded to 4 digits (``0001-01-01T00:00:00.000000Z``
    .. ``9999-12-31T23:59:59.999999Z``), which sorts as the instants do and which SQLite's date
    functions read.

    Written field by field: ``strftime('%Y')`` leaves years before 1000 unpadded on glibc
    ('1-01-01T...'), text that neither sorts nor reads back as an ISO date.
    """
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return (f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:"
            f"{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}Z")


_UNPADDED_YEAR = re.compile(r"^(\d{1,3})-")


def parse_stored_timestamp(value: Any) -> datetime:
    """A stored timestamp back to a naive UTC datetime: a driver's datetime, or SQLite's text.

    Also reads the unpadded years (``1-01-01T...``) that versions before the fix wrote into SQLite
    for years before 1000, so a table holding some can still be backed up (and, restored from that
    backup, is rewritten in the fixed-width form).
    """
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1]
    if (unpadded := _UNPADDED_YEAR.match(text)) is not None:
        text = unpadded[1].zfill(4) + text[unpadded.end(1):]
    return datetime.fromisoformat(text)
