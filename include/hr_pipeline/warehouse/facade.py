"""The warehouse behind the ``warehouse`` connection: SQLite, PostgreSQL or SQL Server.

Access goes through the common-sql provider hooks; which one is picked by the connection's type,
and with it the dialect's adapter (``hr_pipeline.warehouse.dialects``), which owns the bulk load path, the
table locks and everything else that differs between the databases.

Loads and restores of one table exclude each other through ``Warehouse.table_locks`` (per-table
locks the warehouse itself gives, across processes and machines; see there).
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from hr_pipeline.contract.tables import CONTRACTS, TableContract, get_contract
from hr_pipeline.runtime.settings import WAREHOUSE_CONN_ID
from hr_pipeline.runtime.streams import InBackground
from hr_pipeline.warehouse import journal
from hr_pipeline.warehouse.dialects import POSTGRES, Adapter, Dialect, adapter_for
from hr_pipeline.warehouse.dialects.base import (
    EXCLUSIVE_MODE,
    SHARED_MODE,
    CsvBatch,
    WarehouseError,
)

log = logging.getLogger(__name__)

_DIALECT_BY_CONN_TYPE: dict[str, Dialect] = {
    "sqlite": "sqlite",
    "postgres": "postgres",
    "postgresql": "postgres",
    "mssql": "mssql",
}

EXCLUSIVE, SHARED = EXCLUSIVE_MODE, SHARED_MODE
WAITING_MESSAGE = "waiting for the lock on {tables} (another load or restore of it is running)"


def csv_batches(blocks: Iterable[bytes], batch_size: int) -> Iterator[CsvBatch]:
    """CSV bytes arriving in arbitrary blocks, cut into batches of ``batch_size`` records.

    Cut on record boundaries without parsing: a newline ends a record unless a quoted field is
    open at that point, i.e. unless an odd number of quotes precedes it (a quote inside a quoted
    field is doubled, so it never changes the parity). Vectorised with numpy, a block at a time:
    the quotes before each newline are counted by a binary search in the quotes' positions
    (less CPU than a running count over every byte, CPU that the load's COPYs need more).
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
    return _HOOKS[dialect](conn_id), dialect


def _sqlite_hook(conn_id: str):
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    return SqliteHook(sqlite_conn_id=conn_id)


def _postgres_hook(conn_id: str):
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=conn_id)


def _mssql_hook(conn_id: str):
    from airflow.providers.microsoft.mssql.hooks.mssql import MsSqlHook

    return MsSqlHook(mssql_conn_id=conn_id)


_HOOKS = {"sqlite": _sqlite_hook, "postgres": _postgres_hook, "mssql": _mssql_hook}


class Warehouse:
    """One warehouse connection id, with the dialect-specific parts of reading and writing."""

    def __init__(self, conn_id: str = WAREHOUSE_CONN_ID):
        self.conn_id = conn_id
        self.hook, self.dialect = _hook_for(conn_id)
        self.adapter: Adapter = adapter_for(self.dialect)

    # -- connections -------------------------------------------------------------------------

    def connect(self):
        connection = self.hook.get_conn()
        self.adapter.prepare(connection)
        return connection

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A connection whose work is committed on success and rolled back on any error; the
        driver's errors are raised as the warehouse's typed errors (``warehouse.errors``)."""
        with self.adapter.errors_typed():
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
                cursor.execute(self.adapter.create_contract_table_if_missing(contract))
            cursor.execute(journal.create_table_if_missing(self.adapter))

    # -- per-table locks across processes -----------------------------------------------------

    @contextmanager
    def table_locks(
        self,
        exclusive: Iterable[str] = (),
        shared: Iterable[str] = (),
        waiting_message: str = WAITING_MESSAGE,
        writers: Iterable[str] = (),
    ) -> Iterator[None]:
        """Hold per-table locks, across processes (and machines), for the whole ``with`` body.

        ``exclusive``: tables this run changes (no other holder of any lock on them meanwhile);
        ``shared``: tables it only relies on (others may hold them shared too, nobody exclusive).
        A table named in both is locked exclusive. ``writers``: the *writer* lock of each table,
        apart from its content lock and always exclusive: an ingest holds it while it loads,
        archives or hands over the table's ingest lock, so two ingests of one table never write
        at once while each still takes the content shared. Table names are contract names only.

        Intended usage (every run that writes a table takes these, for its whole write):

        - a restore of T: ``exclusive=[T]``, ``shared=`` the tables T references (restore.py);
        - a load of T: ``writers=[T]``, ``shared=`` T and the tables T references, and inside
          the lock, before writing, check that the run still holds T's ingest lock (fencing) and
          re-check the references against what exists now (a restore of a referenced table may
          have run since validation; none can run during the load)::

              with warehouse.table_locks(writers=[table], shared=[table, *referenced]):
                  ingest_lock.ensure_held()
                  ...  # reject, with reasons, the rows whose reference no longer exists
                  warehouse.load_batches(contract, batches)

          So a load of hired_employees excludes another load or a restore of hired_employees,
          and a restore of departments or jobs, while a load of departments (an upsert never
          removes an id) runs beside it.

        The locks the warehouse gives (the adapter's ``table_locker``), on a connection of their
        own, released at the end and, if the process dies, by the server or the OS (the session or
        the file closes): advisory locks on PostgreSQL, ``flock`` of a file beside the database on
        SQLite, ``sp_getapplock`` owned by the session on SQL Server.

        Locks are taken in one global order, sorted table names, so that two runs never each
        hold a lock the other waits for. Each is first asked for without waiting; if one is
        refused, ``waiting_message`` (``{tables}``: the busy tables) is logged once, then the run
        waits (without a time limit: the task's own timeout, if any, ends it) and logs how long
        it waited once it holds them all.

        The locks do not nest: a thread that holds a table's lock and asks for it again gets a
        ``WarehouseError`` (waiting would wait for itself).
        """
        plan = lock_plan(exclusive, shared, writers)
        if not plan:
            yield
            return
        with self._holding(plan, waiting_message):
            yield

    @contextmanager
    def _holding(self, plan: list[tuple[str, str]], waiting_message: str) -> Iterator[None]:
        """Hold the locks of ``plan`` (from ``lock_plan``) on a locker of their own for the
        ``with`` body, then release them and close the locker (see ``table_locks``)."""
        held_here = _held_in_this_thread()
        _refuse_nested(self.conn_id, plan, held_here)
        locker = self._table_locker()
        held: list[tuple[str, str]] = []
        try:
            _acquire_in_order(locker, plan, held, waiting_message)
            held_here.update((self.conn_id, table) for table, _ in plan)
            try:
                yield
            finally:
                held_here.difference_update((self.conn_id, table) for table, _ in plan)
        finally:
            _release_all(locker, held)

    def _table_locker(self):
        return self.adapter.table_locker(self)

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
        sql = self.adapter.key_values_sql(contract)
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
        sql, params = self.adapter.existing_keys_query(contract, wanted)

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
            cursor.execute(self.adapter.count_rows(contract.name))
            return int(cursor.fetchone()[0])

    # -- writes ------------------------------------------------------------------------------

    def load_connections(self) -> int:
        """How many connections a bulk load writes through at once (PostgreSQL: several, a COPY
        keeping one server process busy; SQLite has one writer at a time; SQL Server is not
        measured here, so it stays at one)."""
        return self.adapter.load_connections()

    def load_batches(
        self,
        contract: TableContract,
        batches: Iterable[Sequence[Sequence[Any]]],
        on_batch=None,
        connections: int | None = None,
    ) -> int:
        """Upsert each batch in its own transaction; returns rows written.

        A failure rolls back only the batches in flight: the batches before stay, and since every
        write is an upsert by key, running the same load again converges to the same table.
        Batches may commit out of order when several connections write, so they must not share
        keys (validation rejects every row of a key that occurs twice in a file).

        On PostgreSQL, ``CsvBatch`` batches go straight into the table by COPY as long as none
        meets a key already there (the common case: new rows); the first that does is rolled
        back and upserted through a staging table, as is every batch after it.

        The batches are durable when it returns (``Adapter.finish_load``): a dialect may commit
        each one asynchronously before that.

        Rows the warehouse refuses raise ``WarehouseDataError``; an unreachable warehouse
        ``WarehouseUnavailableError`` (``warehouse.errors``).
        """
        with self.adapter.errors_typed():
            return self._load_batches(contract, batches, on_batch, connections)

    def _load_batches(self, contract: TableContract, batches, on_batch, connections: int | None) -> int:
        state = self.adapter.new_load()

        def write(connection, batch) -> None:
            self.adapter.write_batch(connection, contract, batch, state)

        connections = self.adapter.load_connections(connections)
        report = on_batch or (lambda written: None)
        if connections <= 1:
            written = 0
            connection = self._load_connection()
            try:
                for batch in batches:
                    write(connection, batch)
                    written += len(batch)
                    report(written)
                self.adapter.finish_load(connection)
            finally:
                connection.close()
            return written
        return self._load_in_parallel(write, batches, connections, report)

    def _load_connection(self):
        return self.adapter.open_load_connection(self)

    def _load_in_parallel(self, write, batches, connections: int, report) -> int:
        """``write`` each batch on one of ``connections`` connections, one per writer thread.
        Batches wait up to ``IN_FLIGHT_BYTES`` (at least two per writer), so that the writers
        keep busy while the next block of the file is fetched, and memory stays bounded whatever
        the file. The first error stops the feeding and is raised once the writers have stopped
        (batches in flight are rolled back by ``write``; those already committed stay, as in a
        single-connection load)."""
        first = next(iter_batches := iter(batches), None)
        if first is None:
            return 0
        own = threading.local()
        opened = []
        progress = threading.Lock()
        written = 0

        def write_on_own_connection(batch) -> None:
            nonlocal written
            if not hasattr(own, "connection"):
                own.connection = self._load_connection()
                with progress:
                    opened.append(own.connection)
            write(own.connection, batch)
            with progress:
                written += len(batch)
                report(written)

        waiting = max(2 * connections, IN_FLIGHT_BYTES // max(1, _size(first)))
        try:
            with InBackground(
                write_on_own_connection, waiting=waiting, name="load", threads=connections
            ) as writers:
                writers.put(first)
                for batch in iter_batches:
                    writers.put(batch)
            self.adapter.finish_load(opened[0])
        finally:
            for connection in opened:
                connection.close()
        return written

    def upsert_batch(self, connection, contract: TableContract, rows: Sequence[Sequence[Any]]) -> None:
        """Insert or replace ``rows`` (typed tuples in contract column order, or a ``CsvBatch``)
        by key. Runs on the caller's connection: the caller owns the transaction."""
        self.adapter.upsert_batch(connection, contract, rows)


IN_FLIGHT_BYTES = 16 << 20
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


# -- per-table locks (see Warehouse.table_locks) ---------------------------------------------------


def writer_lock_name(table: str) -> str:
    """The resource of a table's writer lock (see ``Warehouse.table_locks``)."""
    return f"{get_contract(table).name}.writer"


def lock_plan(
    exclusive: Iterable[str] = (), shared: Iterable[str] = (), writers: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """(resource, mode) in the one global order, sorted names; exclusive wins over shared.

    Only contract tables (a user's string never reaches a lock file name or a lock resource).
    """
    if any(isinstance(names, str) for names in (exclusive, shared, writers)):
        raise TypeError("table_locks takes lists of table names, not a single string")
    exclusive_names = {get_contract(name).name for name in exclusive}
    exclusive_names |= {writer_lock_name(name) for name in writers}
    shared_names = {get_contract(name).name for name in shared} - exclusive_names
    return sorted([(name, EXCLUSIVE) for name in exclusive_names] + [(name, SHARED) for name in shared_names])


_THREAD_LOCKS = threading.local()


def _held_in_this_thread() -> set[tuple[str, str]]:
    held = getattr(_THREAD_LOCKS, "held", None)
    if held is None:
        held = _THREAD_LOCKS.held = set()
    return held


def _refuse_nested(conn_id: str, plan: list[tuple[str, str]], held_here: set[tuple[str, str]]) -> None:
    """``WarehouseError`` if this thread already holds a lock of ``plan`` (waiting would wait for itself)."""
    for table, _ in plan:
        if (conn_id, table) in held_here:
            raise WarehouseError(
                f"This thread already holds the lock on {table} (warehouse {conn_id!r}): "
                "table_locks does not nest on one table"
            )


def _acquire_in_order(
    locker, plan: list[tuple[str, str]], held: list[tuple[str, str]], waiting_message: str
) -> None:
    """Take every lock of ``plan``, appending each to ``held`` as it is taken: first each without
    waiting; if any is refused, log ``waiting_message`` once and wait for the rest in order."""
    refused: list[int] = []
    for index, (table, mode) in enumerate(plan):
        if locker.try_acquire(table, mode):
            held.append((table, mode))
        else:
            refused.append(index)
    if not refused:
        return
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


def _release_all(locker, held: list[tuple[str, str]]) -> None:
    """Release ``held`` in reverse order, then close the locker (which releases any left)."""
    for table, mode in reversed(held):
        try:
            locker.release(table, mode)
        except Exception as error:  # noqa: BLE001 - closing below releases it anyway
            log.warning(
                "releasing the lock on %s failed (%s: %s); closing its connection releases it",
                table,
                type(error).__name__,
                error,
            )
    locker.close()


def _size(batch) -> int:
    return len(batch.data) if isinstance(batch, CsvBatch) else 100 * len(batch)


def copy_rows(cursor, table: str, contract: TableContract, rows: Iterable[Sequence[Any]]) -> None:
    """PostgreSQL ``COPY ... FROM STDIN`` of typed rows (psycopg 3)."""
    POSTGRES.copy_rows(cursor, table, contract, rows)
