"""AVRO backups of the warehouse tables on Blob Storage.

One backup is one table read as of one instant, written to
``<backups container>/<table>/<table>-<YYYYMMDDTHHMMSS.ffffffZ>.avro``, that instant in UTC to the
microsecond (names to the second, which older versions wrote, are still listed). A backup never
replaces another: one whose name is taken is refused.

- The table is read inside one snapshot: PostgreSQL ``REPEATABLE READ, READ ONLY`` with a
  server-side (named) cursor, SQLite one read transaction (WAL: writers go on, the reader keeps its
  snapshot), SQL Server ``SNAPSHOT`` isolation. The row count is taken first in the same snapshot,
  so it can go into the AVRO header before the rows are streamed (fastavro writes its header first).
- Rows are streamed in chunks (``chunk_rows``) from the cursor through a generator into
  ``fastavro.writer`` (deflate) writing a local temporary file: memory stays bounded whatever the
  table's size.
- The backup's instant is the warehouse's clock read inside the snapshot, after the statement that
  fixed it, with the table's journal position: every change the backup holds (journal rows up to
  that position) committed before that instant, by the clock the journal stamps its rows with
  (``backup.point_in_time``). SQLite's clock counts milliseconds.
- The AVRO header carries the table, the row count, the instant, the contract version and the
  journal position; the blob's metadata carries the same plus the sha256 of the file.
- After the upload the blob is read back: its sha256 and its record count (summed from the AVRO
  blocks, without decoding the records) must match what was written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hr_pipeline.contract.instants import (
    NAME_STAMP_PATTERN,
    as_utc,
    format_instant,
    format_name_stamp,
    parse_instant,
    parse_name_stamp,
    parse_stored_timestamp,
)
from hr_pipeline.contract.tables import ColumnType, TableContract, avro_schema, get_contract
from hr_pipeline.runtime import settings
from hr_pipeline.runtime.memory import return_large_buffers_to_the_system
from hr_pipeline.runtime.progress import Progress
from hr_pipeline.warehouse import journal

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 50_000
CODEC = "deflate"
# Header metadata keys (AVRO file) and blob metadata keys (Azure: C# identifiers, no dots).
META_TABLE = "hr.table"
META_ROWS = "hr.rows"
META_INSTANT = "hr.instant"
META_CONTRACT_VERSION = "hr.contract_version"
BLOB_META_SHA256 = "sha256"
# The table journal position a backup holds (warehouse.journal), in its header and blob metadata:
# the changes it holds are exactly those up to that position (``backup.point_in_time``).
META_JOURNAL_POSITION = "hr.journal_position"
BLOB_META_POSITION = "journal_position"
_NAME_PATTERN = re.compile(rf"^(?P<table>[a-z_]+)/(?P=table)-(?P<stamp>{NAME_STAMP_PATTERN})\.avro$")


class BackupError(RuntimeError):
    """A backup or restore that cannot go on; the message says what to do about it."""


# -- names and instants --------------------------------------------------------------------------


def backup_prefix(table_name: str) -> str:
    return f"{table_name}/"


def backup_blob_name(table_name: str, instant: datetime) -> str:
    return f"{table_name}/{table_name}-{format_name_stamp(instant)}.avro"


@dataclass(frozen=True)
class BackupRef:
    """One backup blob of one table, as listed in the backups container."""

    container: str
    name: str
    table: str
    instant: datetime  # aware UTC
    size: int
    metadata: dict[str, str]


def backup_ref(container: str, name: str, size: int, metadata: dict[str, str] | None) -> BackupRef | None:
    """A listed blob as a backup, or None when its name is not a backup's."""
    match = _NAME_PATTERN.match(name)
    if not match:
        return None
    metadata = dict(metadata or {})
    instant = parse_name_stamp(match["stamp"])
    if metadata.get("instant"):
        try:  # the instant as written; an older backup's name only has its seconds
            instant = parse_instant(metadata["instant"])
        except ValueError:
            pass
    return BackupRef(container, name, match["table"], instant, size, metadata)


def list_backups(table_name: str, store=None, container: str | None = None) -> list[BackupRef]:
    """The table's backups, oldest first."""
    get_contract(table_name)
    store = store or default_blob_store()
    container = container or settings.backups_container()
    refs = []
    for blob in store.list(container, backup_prefix(table_name)):
        ref = backup_ref(container, blob.name, blob.size, blob.metadata)
        if ref is not None and ref.table == table_name:
            refs.append(ref)
    return sorted(refs, key=lambda ref: (ref.instant, ref.name))


# -- files -------------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class BackupHeader:
    table: str
    rows: int
    instant: str
    contract_version: int
    schema: dict


def read_header(handle) -> BackupHeader:
    """The header of an open AVRO backup; raises BackupError on anything but a backup."""
    import fastavro

    try:
        reader = fastavro.reader(handle)
        metadata = {
            key: value.decode() if isinstance(value, bytes) else value
            for key, value in reader.metadata.items()
        }
        return BackupHeader(
            table=metadata[META_TABLE],
            rows=int(metadata[META_ROWS]),
            instant=metadata[META_INSTANT],
            contract_version=int(metadata[META_CONTRACT_VERSION]),
            schema=reader.writer_schema,
        )
    except KeyError as error:
        raise BackupError(f"not a backup of this pipeline: header metadata {error} is missing") from None
    except Exception as error:  # noqa: BLE001 - whatever fastavro raises, said as a bad header
        raise BackupError(f"unreadable AVRO header ({type(error).__name__}: {error})") from None


def count_records(path: Path) -> int:
    """Records in an AVRO file, summed from its blocks' counts (blocks are not decoded)."""
    import fastavro

    with open(path, "rb") as handle:
        return sum(block.num_records for block in fastavro.block_reader(handle))


# -- reading the table in one snapshot ----------------------------------------------------------


class _Snapshot:
    """A read of one table as of one instant (the adapter's snapshot read): ``instant``,
    ``row_count`` and ``chunks()``."""

    def __init__(self, warehouse, contract: TableContract, chunk_rows: int):
        self.warehouse = warehouse
        self.adapter = warehouse.adapter
        self.contract = contract
        self.chunk_rows = chunk_rows
        self.connection = None
        self.instant: datetime | None = None
        self.row_count = 0
        self.journal_position = 0

    def __enter__(self) -> _Snapshot:
        self.connection = self.warehouse.connect()
        try:
            self.adapter.begin_snapshot(self.connection)
            cursor = self.connection.cursor()
            cursor.execute(self.adapter.count_rows(self.contract.name))
            self.row_count = int(cursor.fetchone()[0])
            # After the statement that fixed the snapshot (the first of the transaction): the
            # clock is at or after it, so every change the snapshot holds committed before it.
            cursor.execute(journal.snapshot_sql(self.adapter), (self.contract.name,))
            position, clock = cursor.fetchone()
            self.journal_position = int(position)
            self.instant = as_utc(parse_stored_timestamp(clock))
            cursor.close()
        except BaseException:
            self.connection.close()
            raise
        return self

    def chunks(self) -> Iterator[list[tuple]]:
        cursor = self.adapter.snapshot_cursor(self.connection, self.contract, self.chunk_rows)
        cursor.execute(self.adapter.select_all(self.contract))
        try:
            while True:
                rows = cursor.fetchmany(self.chunk_rows)
                if not rows:
                    return
                yield rows
        finally:
            cursor.close()

    def __exit__(self, *exc_info) -> None:
        try:
            self.adapter.end_snapshot(self.connection, ok=exc_info[0] is None)
        finally:
            self.connection.close()


def _records(
    contract: TableContract, adapter, chunks: Iterator[list[tuple]], progress: dict
) -> Iterator[dict]:
    """Typed AVRO records from the cursor's chunks, counting rows as they pass."""
    names = contract.column_names
    timestamp_positions = [
        position for position, column in enumerate(contract.columns) if column.type is ColumnType.TIMESTAMP
    ]
    # Drivers return datetimes (naive UTC, which fastavro takes as UTC), or ISO text (SQLite).
    convert = adapter.timestamps_as_text and bool(timestamp_positions)
    for rows in chunks:
        if convert:
            for row in rows:
                row = list(row)
                for position in timestamp_positions:
                    row[position] = parse_stored_timestamp(row[position])
                yield dict(zip(names, row))
        else:
            for row in rows:
                yield dict(zip(names, row))
        progress["rows"] += len(rows)
        progress["line"].advance(len(rows))


# -- backup ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupResult:
    table: str
    container: str
    blob_name: str
    rows: int
    bytes: int
    sha256: str
    instant: str
    contract_version: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_blob_store():
    """The pipeline's Blob Storage (imported when first needed: DAG files import this module)."""
    from hr_pipeline.storage.blob_store import BlobStore

    return BlobStore()


def default_warehouse():
    """The pipeline's warehouse (imported when first needed)."""
    from hr_pipeline.warehouse.facade import Warehouse

    return Warehouse()


def write_backup_file(
    table_name: str, path: Path, warehouse=None, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> SnapshotRead:
    """Write the table, read as of one instant, to an AVRO file."""
    import fastavro

    contract = get_contract(table_name)
    warehouse = warehouse or default_warehouse()
    warehouse.ensure_tables([contract])  # the journal too: a snapshot is read-only
    schema = fastavro.parse_schema(avro_schema(contract))
    with _Snapshot(warehouse, contract, chunk_rows) as snapshot:
        metadata = {
            META_TABLE: contract.name,
            META_ROWS: str(snapshot.row_count),
            META_INSTANT: format_instant(snapshot.instant),
            META_CONTRACT_VERSION: str(contract.version),
            META_JOURNAL_POSITION: str(snapshot.journal_position),
        }
        progress = {
            "rows": 0,
            "total": snapshot.row_count,
            "line": Progress(f"backup {contract.name}", total=snapshot.row_count, logger=log),
        }
        with open(path, "wb") as handle:
            fastavro.writer(
                handle,
                schema,
                _records(contract, warehouse.adapter, snapshot.chunks(), progress),
                codec=CODEC,
                metadata=metadata,
            )
        progress["line"].finish()
        if progress["rows"] != snapshot.row_count:  # cannot happen inside one snapshot
            raise BackupError(
                f"{table_name}: counted {snapshot.row_count} rows but read {progress['rows']} "
                "in the same snapshot; the backup is not kept"
            )
        return SnapshotRead(snapshot.row_count, snapshot.instant, snapshot.journal_position)


@dataclass(frozen=True)
class SnapshotRead:
    """What ``write_backup_file`` read: its rows, its instant and the journal's position."""

    rows: int
    instant: datetime
    journal_position: int


def backup_table(
    table_name: str,
    warehouse=None,
    store=None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    work_dir: Path | None = None,
) -> BackupResult:
    """Back ``table_name`` up to the backups container, then verify the uploaded blob."""
    contract = get_contract(table_name)
    return_large_buffers_to_the_system()
    store = store or default_blob_store()
    container = settings.backups_container()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"backup-{table_name}-", dir=work_dir) as tmp:
        path = Path(tmp) / f"{table_name}.avro"
        read = write_backup_file(table_name, path, warehouse, chunk_rows)
        rows, instant = read.rows, read.instant
        size = path.stat().st_size
        digest = sha256_of(path)
        name = backup_blob_name(table_name, instant)
        log.info(
            "%s: %d rows, %d bytes written to a local file; uploading to %s/%s",
            table_name,
            rows,
            size,
            container,
            name,
        )
        metadata = _backup_metadata(contract, read, digest)
        _upload_new_backup(store, container, name, path, metadata, table_name)
        os.unlink(path)
        _verify_or_delete(store, container, name, rows, digest, Path(tmp))
    seconds = time.perf_counter() - started
    log.info(
        "%s: backup %s/%s verified: %d rows, %d bytes, sha256 %s, %.1f s",
        table_name,
        container,
        name,
        rows,
        size,
        digest,
        seconds,
    )
    return BackupResult(
        contract.name,
        container,
        name,
        rows,
        size,
        digest,
        format_instant(instant),
        contract.version,
        round(seconds, 3),
    )


def _backup_metadata(contract: TableContract, read: SnapshotRead, digest: str) -> dict[str, str]:
    """The metadata a backup blob carries: its table, rows, instant, contract version, journal
    position, sha256."""
    return {
        "table": contract.name,
        "rows": str(read.rows),
        "instant": format_instant(read.instant),
        "contract_version": str(contract.version),
        BLOB_META_POSITION: str(read.journal_position),
        BLOB_META_SHA256: digest,
    }


def _upload_new_backup(
    store, container: str, name: str, path: Path, metadata: dict[str, str], table_name: str
) -> None:
    """Upload the backup file ``path`` of ``table_name`` as ``container/name``, refusing to replace
    a blob there."""
    from hr_pipeline.storage.blob_store import BlobExistsError

    try:
        # Never replace a backup: the read-back after it would delete it if this one failed.
        store.upload_file(container, name, path, metadata=metadata, overwrite=False)
    except BlobExistsError as error:
        raise BackupError(
            f"Backup {container}/{name} already exists (a backup of {table_name} taken at the same "
            "instant); refusing to overwrite it"
        ) from error


def _verify_or_delete(store, container: str, name: str, rows: int, digest: str, work_dir: Path) -> None:
    """``verify_backup`` the uploaded blob; one that fails its read-back is deleted."""
    try:
        verify_backup(store, container, name, expected_rows=rows, expected_sha256=digest, work_dir=work_dir)
    except BackupError:
        # A blob that failed its read-back is no backup: never leave it for a restore to pick.
        store.delete(container, name)
        raise


def verify_backup(
    store, container: str, name: str, expected_rows: int, expected_sha256: str, work_dir: Path
) -> None:
    """Read an uploaded backup back: same sha256, same record count as written."""
    path = work_dir / "verify.avro"
    store.download_to_file(container, name, path)
    try:
        digest = sha256_of(path)
        if digest != expected_sha256:
            raise BackupError(
                f"Backup {container}/{name} failed verification: sha256 of the uploaded blob is "
                f"{digest}, the written file's was {expected_sha256}"
            )
        counted = count_records(path)
        with open(path, "rb") as handle:
            header = read_header(handle)
        if counted != expected_rows or header.rows != expected_rows:
            raise BackupError(
                f"Backup {container}/{name} failed verification: {counted} records in the blob, "
                f"header says {header.rows}, {expected_rows} were written"
            )
    finally:
        path.unlink(missing_ok=True)


# -- retention ---------------------------------------------------------------------------------


def prune_backups(
    table_name: str, store=None, now: datetime | None = None, retention_days: int | None = None
) -> list[str]:
    """Delete the table's backups older than the retention, never its newest; returns their names."""
    store = store or default_blob_store()
    retention_days = settings.backup_retention_days() if retention_days is None else retention_days
    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(days=retention_days)
    backups = list_backups(table_name, store)
    deleted = []
    for ref in backups[:-1]:  # the newest is kept, however old
        if ref.instant < cutoff:
            store.delete(ref.container, ref.name)
            deleted.append(ref.name)
    log.info(
        "%s: retention %d days: deleted %d of %d backups%s",
        table_name,
        retention_days,
        len(deleted),
        len(backups),
        f" ({', '.join(deleted)})" if deleted else "",
    )
    return deleted
