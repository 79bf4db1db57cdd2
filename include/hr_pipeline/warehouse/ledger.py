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

from hr_pipeline.warehouse.dialects import adapter_for

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


def fit_text(value: str | None, column: str) -> str | None:
    """``value`` cut to ``column``'s length as SQL Server's NVARCHAR counts it, in UTF-16 code
    units (an emoji counts two; PostgreSQL's VARCHAR counts it one); None for no text."""
    length, units = COLUMNS[column][1], 0
    for end, char in enumerate(value or ""):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > length:
            return value[:end]
    return value or None


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


def create_table_if_missing(dialect) -> str:
    return adapter_for(dialect).create_described_if_missing(TABLE, COLUMNS, KEY)


def upsert(dialect) -> str:
    """One ledger row, as parameters in ``COLUMNS`` order, inserted or replacing the row of the
    same run and file."""
    return adapter_for(dialect).upsert_values(TABLE, list(COLUMNS), KEY)


def earlier_ingest_sql(dialect) -> str:
    """The newest earlier ledger row of a file with the same bytes (sha256), from another run."""
    adapter = adapter_for(dialect)
    q, marker = adapter.quote, adapter.marker
    return adapter.select_first(
        columns=f"{q('run_id')}, {q('file')}, {q('ingested_at')}",
        table_name=TABLE,
        where=f"{q('sha256')} = {marker} AND {q('run_id')} <> {marker}",
        order=f"ORDER BY {q('ingested_at')} DESC",
    )


def record(warehouse, rows: list[LedgerRow]) -> None:
    """Write ``rows`` (one transaction)."""
    if not rows:
        return
    adapter = warehouse.adapter
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    sql = upsert(adapter)
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute(create_table_if_missing(adapter))
        for row in rows:
            values = [getattr(row, name) for name in COLUMNS]
            values[list(COLUMNS).index("ingested_at")] = row.ingested_at or now
            cursor.execute(sql, [adapter.parameter(value) for value in values])


def earlier_ingest(warehouse, sha256: str, run_id: str) -> tuple[str, str, object] | None:
    """(run id, file, when) of the newest earlier ingest of a file with these bytes, if any."""
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute(create_table_if_missing(warehouse.adapter))
        cursor.execute(earlier_ingest_sql(warehouse.adapter), (sha256, run_id))
        found = cursor.fetchone()
    return tuple(found) if found else None
