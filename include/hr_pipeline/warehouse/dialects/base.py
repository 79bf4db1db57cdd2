"""What every warehouse adapter offers, and the SQL the dialects share (ANSI, ``ON CONFLICT``).

Use cases (ingest, backup, restore, metrics, the ledger) call these operations and never ask which
database is behind them. Identifiers come only from contracts (never from a user's string) and
are quoted by the adapter. There are no database-level FOREIGN KEY constraints: SQL Server has no
deferrable constraints, so a restore that swaps a referenced table's rows inside one transaction
would be refused mid-way; the pipeline checks references itself.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hr_pipeline.contract.tables import (
    CONTRACTS,
    STRING_MAX_LENGTH,
    TABLE_NAMES,
    ColumnType,
    TableContract,
    referencing_columns,
)
from hr_pipeline.warehouse.errors import (
    DATA_SQLSTATE_CLASSES,
    WarehouseDataError,
    WarehouseError,
    WarehouseUnavailableError,
    first_line,
    sqlstate_of,
)

# Kinds of column: the contracts' types, and the ledger's and the metrics' own.
INTEGER, TEXT, BIGINT, TIMESTAMP, FLOAT = "integer", "text", "bigint", "timestamp", "float"
_CONTRACT_KINDS = {ColumnType.INTEGER: INTEGER, ColumnType.STRING: TEXT, ColumnType.TIMESTAMP: TIMESTAMP}


EXCLUSIVE_MODE, SHARED_MODE = "exclusive", "shared"


@dataclass(frozen=True)
class CsvBatch:
    """Validated rows as canonical CSV bytes (see ingest/expectations.py): PostgreSQL's COPY reads them
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


@dataclass(frozen=True)
class ReferenceCheck:
    """Rows of ``child.column`` whose value would be missing from ``parent``'s key."""

    child: str
    column: str
    parent: str
    sql: str  # returns (missing id, rows) ordered by id


@dataclass(frozen=True)
class Step:
    """One step of a replace-rows plan: ``execute`` a statement, ``count`` the rows before,
    ``load`` the backup's rows with ``sql``, or run a reference ``check``."""

    kind: str
    sql: str
    check: ReferenceCheck | None = None


@dataclass(frozen=True)
class ReplacePlan:
    """Every statement of one restore's replace-rows transaction, in order."""

    dialect: str
    steps: tuple[Step, ...]

    @property
    def statements(self) -> tuple[str, ...]:
        return tuple(step.sql for step in self.steps)


class Adapter:
    """One warehouse dialect: SQL types and quoting, staging tables, the bulk load path, snapshot
    reads, the replace-rows transaction, table locks and create-if-missing."""

    name: str
    sqlglot_dialect: str
    marker = "%s"
    types: dict[str, str]
    publish_isolation: str | None = None
    timestamps_as_text = False  # SQLite: timestamps are ISO text, not datetimes

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- identifiers and types ---------------------------------------------------------------

    def quote(self, identifier: str) -> str:
        if not identifier.replace("_", "").isalnum():
            raise ValueError(f"Refusing identifier {identifier!r}: contracts use [A-Za-z0-9_] only")
        return f'"{identifier}"'

    def table(self, name: str) -> str:
        """A table as statements name it (a ``#temp`` name as is)."""
        return name if name.startswith("#") else self.quote(name)

    def column_list(self, contract: TableContract) -> str:
        return ", ".join(self.quote(name) for name in contract.column_names)

    def placeholders(self, count: int) -> str:
        return ", ".join([self.marker] * count)

    def sql_type(self, kind: str, length: int | None = STRING_MAX_LENGTH) -> str:
        return self.types[kind].format(n=length)

    def column_type(self, column) -> str:
        return self.sql_type(_CONTRACT_KINDS[column.type])

    # -- DDL ---------------------------------------------------------------------------------

    @staticmethod
    def create_statement(head: str, definitions: Sequence[str]) -> str:
        return f"{head} (\n    " + ",\n    ".join(definitions) + "\n)"

    def column_definitions(self, contract: TableContract) -> list[str]:
        definitions = [f"{self.quote(c.name)} {self.column_type(c)} NOT NULL" for c in contract.columns]
        definitions.append(f"PRIMARY KEY ({self.quote(contract.key)})")
        return definitions

    def create_table(self, contract: TableContract, table_name: str | None = None) -> str:
        return self.create_statement(
            f"CREATE TABLE {self.quote(table_name or contract.name)}", self.column_definitions(contract)
        )

    def create_if_missing(self, table_name: str, definitions: Sequence[str]) -> str:
        """CREATE TABLE that does nothing when the table exists (contracts, ledger, metrics)."""
        return self.create_statement(f"CREATE TABLE IF NOT EXISTS {self.quote(table_name)}", definitions)

    def create_described_if_missing(
        self, table_name: str, columns: dict[str, tuple[str, int | None, bool]], key: Sequence[str]
    ) -> str:
        """CREATE TABLE if missing for one of the pipeline's own tables (the ledger, the journal),
        described as ``{column: (kind, length, optional)}`` with its primary ``key``."""
        definitions = [
            f"{self.quote(name)} {self.sql_type(kind, length)}{'' if optional else ' NOT NULL'}"
            for name, (kind, length, optional) in columns.items()
        ]
        definitions.append(f"PRIMARY KEY ({', '.join(self.quote(k) for k in key)})")
        return self.create_if_missing(table_name, definitions)

    def create_contract_table_if_missing(self, contract: TableContract) -> str:
        return self.create_if_missing(contract.name, self.column_definitions(contract))

    # -- values ------------------------------------------------------------------------------

    def parameter(self, value: Any) -> Any:
        """A typed value (int, str, naive-UTC datetime) as this driver takes it as a parameter."""
        return value

    def to_db_row(self, contract: TableContract, row: Sequence[Any]) -> tuple:
        return tuple(row)

    def from_text_row(self, contract: TableContract, row: Sequence[str]) -> tuple:
        """A validated row in canonical text form (see ingest/expectations.py) as this driver wants it."""
        return tuple(row)

    # -- plain statements --------------------------------------------------------------------

    def upsert_values(self, table_name: str, columns: Sequence[str], keys: Sequence[str]) -> str:
        """Insert-or-replace one row given as parameters, by ``keys``."""
        names = [self.quote(name) for name in columns]
        key_names = [self.quote(name) for name in keys]
        updates = ", ".join(f"{c} = excluded.{c}" for c in names if c not in key_names)
        return (
            f"INSERT INTO {self.quote(table_name)} ({', '.join(names)}) "
            f"VALUES ({self.placeholders(len(names))}) "
            f"ON CONFLICT ({', '.join(key_names)}) DO UPDATE SET {updates}"
        )

    def upsert_from_staging(self, contract: TableContract, staging: str, target: str | None = None) -> str:
        """Insert-or-replace every row of ``staging`` by key into ``target`` (both as statements
        name them; the contract's table by default)."""
        columns = self.column_list(contract)
        updates = ", ".join(
            f"{c} = excluded.{c}" for c in (self.quote(n) for n in contract.column_names if n != contract.key)
        )
        # "WHERE true" lets SQLite's parser tell ON CONFLICT from a join constraint.
        return (
            f"INSERT INTO {target or self.quote(contract.name)} ({columns})\n"
            f"SELECT {columns} FROM {staging} WHERE true\n"
            f"ON CONFLICT ({self.quote(contract.key)}) DO UPDATE SET {updates}"
        )

    def select_first(self, columns: str, table_name: str, where: str, order: str) -> str:
        return f"SELECT {columns} FROM {self.table(table_name)} WHERE {where} {order} LIMIT 1"

    def select_all(self, contract: TableContract) -> str:
        # No ORDER BY: a restore does not need the rows in key order, and a sequential scan is
        # the cheapest read of the whole table.
        return f"SELECT {self.column_list(contract)} FROM {self.quote(contract.name)}"

    def count_rows(self, table_name: str) -> str:
        return f"SELECT COUNT(*) FROM {self.quote(table_name)}"

    def key_values_sql(self, contract: TableContract) -> str:
        return f"SELECT {self.quote(contract.key)} FROM {self.quote(contract.name)}"

    def existing_keys_query(self, contract: TableContract, wanted: list[int]) -> tuple[str, tuple]:
        raise NotImplementedError

    def begin_statements(self, isolation: str | None) -> list[str]:
        """Opening statements of a transaction that holds DDL and DML together (``hook.run``)."""
        return [] if isolation is None else [f"SET TRANSACTION ISOLATION LEVEL {isolation}"]

    # -- connections and transactions --------------------------------------------------------

    def prepare(self, connection) -> None:
        """Settings every new connection gets."""

    @contextmanager
    def write_transaction(self, connection) -> Iterator[None]:
        """An explicit transaction on ``connection``: committed on success, else rolled back."""
        try:
            yield
            connection.commit()
        except BaseException:
            connection.rollback()
            raise

    # -- bulk load ---------------------------------------------------------------------------

    def load_connections(self, requested: int | None = None) -> int:
        """How many connections a bulk load writes through at once (one writer by default)."""
        return 1

    def open_load_connection(self, warehouse):
        return warehouse.connect()

    def new_load(self) -> dict:
        """State shared by the writers of one load."""
        return {}

    def finish_load(self, connection) -> None:
        """Once every batch of a load is committed, on one of its connections: make them durable
        (each batch's commit already is, unless the dialect commits them asynchronously)."""

    def write_batch(self, connection, contract: TableContract, batch, state: dict) -> None:
        """One batch of a load, in a transaction of its own."""
        try:
            self.upsert_batch(connection, contract, batch)
            connection.commit()
        except BaseException:
            connection.rollback()
            raise

    def upsert_batch(self, connection, contract: TableContract, rows) -> None:
        """Insert or replace ``rows`` (typed tuples or a ``CsvBatch``) by key, on the caller's
        transaction."""
        if not len(rows):
            return
        if isinstance(rows, CsvBatch):
            rows = [self.from_text_row(contract, row) for row in rows.parsed()]
        self._upsert_rows(connection, contract, rows)

    def _upsert_rows(self, connection, contract: TableContract, rows) -> None:
        raise NotImplementedError

    # -- snapshot reads (backup) -------------------------------------------------------------

    def begin_snapshot(self, connection) -> None:
        raise NotImplementedError

    def snapshot_cursor(self, connection, contract: TableContract, chunk_rows: int):
        return connection.cursor()

    def end_snapshot(self, connection, ok: bool) -> None:
        connection.rollback()  # read only: nothing to keep

    # -- replace-rows transaction (restore) --------------------------------------------------

    def restore_staging(self, contract: TableContract) -> str:
        return f"restore_{contract.name}"

    def restore_staging_sql(self, contract: TableContract) -> list[str]:
        raise ValueError(f"{self.name} restores load the table itself inside the swap transaction")

    def reference_checks(
        self, contract: TableContract, restored_rows_in: str | None = None
    ) -> list[ReferenceCheck]:
        """Both directions: current rows pointing at the restored table, restored rows pointing out.

        ``restored_rows_in``: the table holding the restored rows (default: the staging table).
        """
        staging = self.qualified(restored_rows_in or self.restore_staging(contract))
        q = self.quote
        pairs = [  # (child sql, child name, column, parent sql, parent name, parent key)
            (self.qualified(child.name), child.name, column.name, staging, contract.name, contract.key)
            for child, column in referencing_columns(contract.name)
        ] + [
            (
                staging,
                contract.name,
                column.name,
                self.qualified(column.references),
                column.references,
                CONTRACTS[column.references].key,
            )
            for column in contract.foreign_keys
        ]
        return [
            ReferenceCheck(
                child_name,
                column,
                parent_name,
                (
                    f"SELECT c.{q(column)}, COUNT(*) FROM {child_sql} c "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {parent_sql} p WHERE p.{q(key)} = c.{q(column)}) "
                    f"GROUP BY c.{q(column)} ORDER BY c.{q(column)}"
                ),
            )
            for child_sql, child_name, column, parent_sql, parent_name, key in pairs
        ]

    def qualified(self, name: str) -> str:
        """A table name as the restore's statements write it (SQL Server: in ``dbo``)."""
        return self.table(name)

    def restore_lock_sql(self, contract: TableContract) -> list[str]:
        """Keep writers out of the table and its related tables until commit; readers go on."""
        related = related_tables(contract)
        statements = []
        for name in TABLE_NAMES:  # one order everywhere: no lock-order deadlocks
            if name == contract.name:
                statements.append(self.lock_table_sql(name, exclusive=True))
            elif name in related:
                statements.append(self.lock_table_sql(name, exclusive=False))
        return statements

    def lock_table_sql(self, name: str, exclusive: bool) -> str:
        raise NotImplementedError

    def swap_sql(self, contract: TableContract) -> list[str]:
        target = self.qualified(contract.name)
        staging = self.qualified(self.restore_staging(contract))
        columns = self.column_list(contract)
        return [
            f"DELETE FROM {target}",
            f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {staging}",
        ]

    def restore_insert_sql(self, contract: TableContract) -> str:
        """The statement that loads the backup's rows into the staging table."""
        raise NotImplementedError

    def replace_plan(self, contract: TableContract, dry_run: bool = False) -> ReplacePlan:
        """Stage the backup's rows, replay the journaled loads over them, lock, count, check
        references, swap: one transaction. A dry run compares instead of swapping (``diff_sql``)."""
        staging = self.restore_staging(contract)
        return ReplacePlan(
            self.name,
            (
                *[Step("execute", sql) for sql in self.restore_staging_sql(contract)],
                Step("load", self.restore_insert_sql(contract)),
                Step("replay", staging),
                *[Step("execute", sql) for sql in self.after_staging_sql()],
                *[Step("execute", sql) for sql in self.restore_lock_sql(contract)],
                Step("count", f"SELECT COUNT(*) FROM {self.qualified(contract.name)}"),
                *[Step("check", check.sql, check) for check in self.reference_checks(contract)],
                *(
                    [Step("diff", self.diff_sql(contract, staging))]
                    if dry_run
                    else [Step("execute", sql) for sql in self.swap_sql(contract)]
                ),
            ),
        )

    def diff_sql(self, contract: TableContract, restored_in: str) -> str:
        """How the restored rows (in table ``restored_in``) differ from the table's: rows added,
        removed, changed (same key, another value), and the restored rows' count."""
        q, key = self.quote, self.quote(contract.key)
        table, restored = self.qualified(contract.name), self.qualified(restored_in)
        differs = " OR ".join(
            f"r.{q(name)} <> t.{q(name)}" for name in contract.column_names if name != contract.key
        )
        return (
            f"SELECT (SELECT COUNT(*) FROM {restored} r WHERE NOT EXISTS "
            f"(SELECT 1 FROM {table} t WHERE t.{key} = r.{key})), "
            f"(SELECT COUNT(*) FROM {table} t WHERE NOT EXISTS "
            f"(SELECT 1 FROM {restored} r WHERE r.{key} = t.{key})), "
            f"(SELECT COUNT(*) FROM {restored} r JOIN {table} t ON t.{key} = r.{key} WHERE {differs}), "
            f"(SELECT COUNT(*) FROM {restored})"
        )

    def replay_batch(
        self, connection, contract: TableContract, target: str, batch: CsvBatch, state: dict | None = None
    ) -> None:
        """Upsert one batch of a journaled load's rows into table ``target`` (the one holding the
        restored rows), in the restore's transaction. ``state``: ``new_load()``'s, one per
        replayed load, for a dialect that adapts its path to what the batches meet."""
        connection.cursor().executemany(
            self.upsert_values(target, contract.column_names, [contract.key]),
            [self.to_db_row(contract, self.from_text_row(contract, row)) for row in batch.parsed()],
        )

    def after_staging_sql(self) -> list[str]:
        return []

    def load_restore_rows(self, cursor, contract: TableContract, sql: str, rows: Iterable) -> None:
        """Run the plan's ``load`` step: ``sql`` for every row of ``rows``."""
        raise NotImplementedError

    # -- errors ------------------------------------------------------------------------------

    def driver_errors(self) -> tuple[tuple[type, ...], tuple[type, ...]]:
        """(the driver's exceptions for refused data, those for an unreachable server); the
        DB-API's IntegrityError/DataError and OperationalError/InterfaceError of the driver."""
        return (), ()

    def typed_error(self, error: BaseException) -> WarehouseError | None:
        """``error`` (or what caused it) as a ``WarehouseDataError`` or
        ``WarehouseUnavailableError``; None when it is neither."""
        data_types, unavailable_types = self.driver_errors()
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            if isinstance(current, WarehouseError):
                return current
            sqlstate = sqlstate_of(current)
            if isinstance(current, data_types) or (sqlstate or "")[:2] in DATA_SQLSTATE_CLASSES:
                return WarehouseDataError(f"{type(current).__name__}: {first_line(current)}")
            if isinstance(current, unavailable_types):
                return WarehouseUnavailableError(f"{type(current).__name__}: {first_line(current)}")
            current = current.__cause__ or current.__context__
        return None

    @contextmanager
    def errors_typed(self) -> Iterator[None]:
        """Raise the driver's errors of the ``with`` body as the warehouse's typed errors."""
        try:
            yield
        except WarehouseError:
            raise
        except Exception as error:
            typed = self.typed_error(error)
            if typed is None:
                raise
            raise typed from error

    # -- table locks -------------------------------------------------------------------------

    def table_locker(self, warehouse):
        raise NotImplementedError


def related_tables(contract: TableContract) -> list[str]:
    related = {child.name for child, _ in referencing_columns(contract.name)}
    related |= {column.references for column in contract.foreign_keys}
    related.discard(contract.name)
    return [name for name in TABLE_NAMES if name in related]
