"""The warehouse behind the ``warehouse`` connection: SQLite, PostgreSQL or SQL Server.

Access goes through the common-sql provider hooks; which one is picked by the connection's type.
Bulk paths, chosen per dialect:

- SQLite: ``executemany`` of an ``INSERT ... ON CONFLICT DO UPDATE`` (in-process, already fast).
- PostgreSQL: ``COPY`` of the batch into a temporary staging table, then one
  ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``.
- SQL Server: the hook's driver is pymssql, which has no ``fast_executemany``; rows go into a
  ``#staging`` temp table as multi-row ``INSERT ... VALUES`` statements (bounded by SQL Server's
  2,100 parameters per statement), then one ``MERGE``. See the README's "Azure SQL" section.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from hr_pipeline import ddl
from hr_pipeline.contracts import CONTRACTS, ColumnType, TableContract
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

    # -- reads -------------------------------------------------------------------------------

    def key_values(self, table_name: str) -> set[int]:
        contract = CONTRACTS[table_name]
        sql = f"SELECT {ddl.quote(contract.key, self.dialect)} FROM {ddl.quote(contract.name, self.dialect)}"
        with self.transaction() as connection:
            cursor = connection.cursor()
            cursor.execute(sql)
            return {row[0] for row in cursor.fetchall()}

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
