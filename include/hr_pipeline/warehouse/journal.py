"""The table journal: one row per committed change of a contract table, in the warehouse table
``table_journal``, so that a table can be rebuilt as it was at any instant (``backup.point_in_time``).

A row says which table changed (``table_name``), its place in that table's order of changes
(``seq``: 1, 2, ... per table), when the change committed by the warehouse's clock
(``committed_at``), which run made it, and what to replay:

- ``kind = 'load'``: one file's load; ``rows_file`` is the archived file of exactly the rows the
  load committed (zstd-compressed CSV in contract order, in the raw container), ``rows_sha256`` the sha256 of
  its decompressed bytes and ``rows`` their count; ``source`` the extract they came from.
- ``kind = 'restore'``: a restore; ``source`` the backup it restored, and the table it left is
  that backup's rows plus the changes after ``backup_position`` up to ``through_seq``.

Every writer of a table writes its journal row while it holds that table's write locks (a load
its writer lock, a restore its exclusive lock: ``Warehouse.table_locks``), so the rows of one
table are written one at a time, ``seq`` is ``MAX(seq) + 1`` and the order of ``seq`` is the order
of commits. A backup reads ``MAX(seq)`` in the snapshot it reads the rows in (``position_sql``):
the changes it holds are exactly those up to that position.

The table's DDL for SQLite, PostgreSQL and SQL Server comes from ``COLUMNS`` below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hr_pipeline.contract.instants import parse_stored_timestamp
from hr_pipeline.warehouse.dialects import adapter_for

TABLE = "table_journal"
LOAD, RESTORE = "load", "restore"
# A load's rows file: CSV in contract order, compressed so (the validate task writes it so).
ROWS_FILE_COMPRESSION = "zstd"

# name -> (kind, length, optional)
COLUMNS: dict[str, tuple[str, int | None, bool]] = {
    "table_name": ("text", 64, False),
    "seq": ("bigint", None, False),
    "kind": ("text", 16, False),
    "committed_at": ("timestamp", None, False),
    "run_id": ("text", 250, False),
    "source": ("text", 1024, False),
    "rows_file": ("text", 1024, True),
    "rows_sha256": ("text", 64, True),
    "rows": ("bigint", None, False),
    "backup_position": ("bigint", None, True),
    "through_seq": ("bigint", None, True),
}
KEY = ("table_name", "seq")

# The warehouse's clock, as each dialect reads it to the microsecond (SQLite: the millisecond),
# in UTC: the instant a change commits is the instant its journal row is written, last in its
# transaction.
_NOW = {
    "sqlite": "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    "postgres": "(clock_timestamp() AT TIME ZONE 'UTC')",
    "mssql": "SYSUTCDATETIME()",
}


@dataclass(frozen=True)
class JournalEntry:
    table_name: str
    seq: int
    kind: str
    committed_at: datetime  # naive UTC
    run_id: str
    source: str
    rows_file: str | None
    rows_sha256: str | None
    rows: int
    backup_position: int | None
    through_seq: int | None


def now_sql(dialect) -> str:
    return _NOW[adapter_for(dialect).name]


def create_table_if_missing(dialect) -> str:
    return adapter_for(dialect).create_described_if_missing(TABLE, COLUMNS, KEY)


def position_sql(dialect) -> str:
    """The table's last ``seq`` (0 for none): one parameter, the table's name."""
    adapter = adapter_for(dialect)
    q = adapter.quote
    return (
        f"SELECT COALESCE(MAX({q('seq')}), 0) FROM {adapter.table(TABLE)} "
        f"WHERE {q('table_name')} = {adapter.marker}"
    )


def snapshot_sql(dialect) -> str:
    """The table's last ``seq`` and the warehouse's clock (naive UTC), read together in a
    backup's snapshot: one parameter, the table's name."""
    adapter = adapter_for(dialect)
    q = adapter.quote
    return (
        f"SELECT COALESCE(MAX({q('seq')}), 0), {now_sql(adapter)} FROM {adapter.table(TABLE)} "
        f"WHERE {q('table_name')} = {adapter.marker}"
    )


def insert_sql(dialect) -> str:
    """A journal row committed now: parameters ``COLUMNS`` but ``committed_at``, in order."""
    adapter = adapter_for(dialect)
    given = [name for name in COLUMNS if name != "committed_at"]
    return (
        f"INSERT INTO {adapter.table(TABLE)} ({', '.join(adapter.quote(n) for n in given)}, "
        f"{adapter.quote('committed_at')}) VALUES ({adapter.placeholders(len(given))}, {now_sql(adapter)})"
    )


def entries_sql(dialect) -> str:
    """The table's journal rows after a ``seq``, in order: parameters table name, seq."""
    adapter = adapter_for(dialect)
    q, marker = adapter.quote, adapter.marker
    return (
        f"SELECT {', '.join(q(n) for n in COLUMNS)} FROM {adapter.table(TABLE)} "
        f"WHERE {q('table_name')} = {marker} AND {q('seq')} > {marker} ORDER BY {q('seq')}"
    )


def forget_sql(dialect) -> str:
    """Drop the table's journal rows up to a ``seq``: parameters table name, seq."""
    adapter = adapter_for(dialect)
    q, marker = adapter.quote, adapter.marker
    return f"DELETE FROM {adapter.table(TABLE)} WHERE {q('table_name')} = {marker} AND {q('seq')} <= {marker}"


def write(
    cursor,
    dialect,
    *,
    table_name: str,
    kind: str,
    run_id: str,
    source: str,
    rows: int,
    rows_file: str | None = None,
    rows_sha256: str | None = None,
    backup_position: int | None = None,
    through_seq: int | None = None,
) -> int:
    """Write one journal row on ``cursor``, in the caller's transaction (last in it, so that
    ``committed_at`` is as near the commit as it can be); returns its ``seq``."""
    cursor.execute(create_table_if_missing(dialect))
    seq = position(cursor, dialect, table_name) + 1  # the table's writers take turns
    values = {
        "table_name": table_name,
        "seq": seq,
        "kind": kind,
        "run_id": run_id,
        "source": source,
        "rows_file": rows_file,
        "rows_sha256": rows_sha256,
        "rows": rows,
        "backup_position": backup_position,
        "through_seq": through_seq,
    }
    cursor.execute(insert_sql(dialect), list(values.values()))
    return seq


def record(warehouse, **row) -> int:
    """``write`` in a transaction of its own; returns the row's ``seq``."""
    with warehouse.transaction() as connection:
        return write(connection.cursor(), warehouse.adapter, **row)


def last_entry(warehouse, table_name: str) -> JournalEntry | None:
    """The table's newest journal row, if any."""
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute(create_table_if_missing(warehouse.adapter))
        last = position(cursor, warehouse.adapter, table_name)
        if not last:
            return None
        cursor.execute(entries_sql(warehouse.adapter), (table_name, last - 1))
        return _entry(cursor.fetchone())


def position(cursor, dialect, table_name: str) -> int:
    """The table's last ``seq`` as ``cursor``'s transaction sees it (0: no change journaled)."""
    cursor.execute(position_sql(dialect), (table_name,))
    return int(cursor.fetchone()[0])


def entries(warehouse, table_name: str, after: int = 0) -> list[JournalEntry]:
    """The table's journal rows with ``seq`` above ``after``, in order."""
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute(create_table_if_missing(warehouse.adapter))
        cursor.execute(entries_sql(warehouse.adapter), (table_name, after))
        found = cursor.fetchall()
    return [_entry(row) for row in found]


def forget(warehouse, table_name: str, through: int) -> None:
    """Drop the table's journal rows up to ``through`` (retention)."""
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute(create_table_if_missing(warehouse.adapter))
        cursor.execute(forget_sql(warehouse.adapter), (table_name, through))


def _entry(row) -> JournalEntry:
    values = dict(zip(COLUMNS, row, strict=True))
    values["committed_at"] = parse_stored_timestamp(values["committed_at"])
    for name in ("seq", "rows", "backup_position", "through_seq"):
        if values[name] is not None:
            values[name] = int(values[name])
    return JournalEntry(**values)
