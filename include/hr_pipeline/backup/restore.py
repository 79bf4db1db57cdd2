"""Point-in-time restore of one warehouse table from its AVRO backups.

``restore_table(table, backup="latest", as_of=None)``:

1. picks the backup: the newest, a named one, or the newest taken at or before ``as_of``;
2. downloads it and checks it: the sha256 in the blob's metadata, the table and contract version
   in the AVRO header, the writer schema against the contract's;
3. loads its rows (SQLite: a temporary staging table; SQL Server: a ``#temp`` table) and
4. in ONE transaction: locks the table (readers go on) and the tables that reference it or that it
   references (so no writer slips in between the check and the swap), checks referential
   integrity against the staged rows, then ``DELETE`` + ``INSERT ... SELECT`` from staging.
   PostgreSQL: the transaction itself is the staging area: locks, ``DELETE``, ``COPY`` of the
   rows into the table, the reference checks, commit. Each dialect's adapter owns its plan
   (``Adapter.replace_plan``); ``_run_plan`` executes it.

Steps 3 and 4 run under the warehouse's table locks (``Warehouse.table_locks``): exclusive on the
table, shared on the tables it references. A load takes the same kind of locks (exclusive on
the table it loads, shared on the tables that one references; see ``Warehouse.table_locks``), so
loads and restores of one table never overlap, and a load of hired_employees never overlaps a
restore of departments or jobs; a restore that has to wait logs what it waits for.

Readers see the old rows or the new ones, never a mix nor an empty table: PostgreSQL's MVCC and
SQLite's WAL show them the last committed state; on Azure SQL (READ_COMMITTED_SNAPSHOT on) readers
read row versions too. Any error rolls the whole transaction back: the table is left as it was.
"""

from __future__ import annotations

import logging
import operator
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hr_pipeline.backup.backups import (
    BLOB_META_SHA256,
    BackupError,
    BackupHeader,
    BackupRef,
    backup_prefix,
    default_blob_store,
    default_warehouse,
    list_backups,
    read_header,
    sha256_of,
)
from hr_pipeline.contract.instants import as_utc, format_instant, parse_instant
from hr_pipeline.contract.tables import (
    TABLE_NAMES,
    ColumnType,
    TableContract,
    avro_schema,
    get_contract,
)
from hr_pipeline.runtime import settings
from hr_pipeline.warehouse.dialects import ReferenceCheck, ReplacePlan, adapter_for
from hr_pipeline.warehouse.dialects.base import related_tables  # noqa: F401  (part of this module's API)
from hr_pipeline.warehouse.errors import WarehouseDataError

log = logging.getLogger(__name__)

LATEST = "latest"
SAMPLE_IDS = 10  # ids named in a referential-integrity refusal
LOAD_CHUNK_ROWS = 50_000
MAX_LISTED = 20  # backups named in a "not found" message


class BackupNotFoundError(BackupError):
    pass


class BackupCorruptError(BackupError):
    pass


class BackupSchemaError(BackupError):
    pass


class ReferentialIntegrityError(BackupError):
    pass


# Refusals: the same restore would be refused again, so a retry is pointless. Other errors (a lost
# connection, a lock timeout: a plain BackupError wrapping the driver's) may pass.
REFUSALS = (BackupNotFoundError, BackupCorruptError, BackupSchemaError, ReferentialIntegrityError)


# -- choosing the backup -----------------------------------------------------------------------


def _describe(backups: list[BackupRef]) -> str:
    if not backups:
        return "none"
    shown = backups[-MAX_LISTED:]
    text = ", ".join(f"{ref.name} (taken {format_instant(ref.instant)})" for ref in shown)
    if len(backups) > len(shown):
        text = f"{len(backups)} backups, the newest {len(shown)}: " + text
    return text


def choose_backup(
    table_name: str, backup: str | None = LATEST, as_of: str | datetime | None = None, store=None
) -> BackupRef:
    """The backup to restore: ``latest``, a blob name, or the newest at or before ``as_of``."""
    contract = get_contract(table_name)
    store = store or default_blob_store()
    container = settings.backups_container()
    backup = (backup or LATEST).strip()
    backups = list_backups(contract.name, store, container)
    where = f"container {container!r} under {backup_prefix(contract.name)}"
    if not backups:
        raise BackupNotFoundError(
            f"No backup of {contract.name} exists ({where} is empty). Run the backup_tables DAG first."
        )
    if backup != LATEST:
        if as_of:
            raise BackupNotFoundError(
                f"Give either backup={backup!r} or as_of={as_of!r}, not both: as_of picks a backup "
                "only when backup is 'latest'"
            )
        name = backup if "/" in backup else f"{contract.name}/{backup}"
        for ref in backups:
            if ref.name == name:
                return ref
        other = name.split("/", 1)[0]
        hint = (
            f" (it names table {other!r}; this restore is of {contract.name})"
            if other != contract.name and other in TABLE_NAMES
            else ""
        )
        raise BackupNotFoundError(
            f"Backup {backup!r} of {contract.name} not found in {where}{hint}. "
            f"Backups of {contract.name}: {_describe(backups)}"
        )
    if as_of:
        try:
            instant = as_utc(as_of) if isinstance(as_of, datetime) else parse_instant(as_of)
        except ValueError:
            raise BackupNotFoundError(
                f"as_of={as_of!r} is not an ISO 8601 instant (e.g. 2026-01-31T23:59:59Z)"
            ) from None
        candidates = [ref for ref in backups if ref.instant <= instant]
        if not candidates:
            raise BackupNotFoundError(
                f"No backup of {contract.name} was taken at or before {format_instant(instant)}. "
                f"Backups of {contract.name}: {_describe(backups)}"
            )
        return candidates[-1]
    return backups[-1]


# -- checking the file -------------------------------------------------------------------------


def _field_signature(schema: dict) -> list[tuple[str, str]]:
    def type_of(value: Any) -> str:
        if isinstance(value, dict):
            logical = value.get("logicalType")
            return f"{value.get('type')}/{logical}" if logical else str(value.get("type"))
        return str(value)

    return [(field["name"], type_of(field["type"])) for field in schema.get("fields", [])]


def check_backup_file(path: Path, ref: BackupRef, contract: TableContract) -> BackupHeader:
    """Checksum, header and schema of a downloaded backup; raises a BackupError saying what is wrong."""
    expected = ref.metadata.get(BLOB_META_SHA256)
    if not expected:
        raise BackupCorruptError(
            f"Backup {ref.container}/{ref.name} has no sha256 in its blob metadata: it was not "
            "written by backup_tables, or its metadata was lost; refusing to restore it"
        )
    actual = sha256_of(path)
    if actual != expected:
        raise BackupCorruptError(
            f"Backup {ref.container}/{ref.name} is corrupted or truncated: its sha256 is {actual}, "
            f"the backup recorded {expected} ({path.stat().st_size} bytes downloaded)"
        )
    with open(path, "rb") as handle:
        try:
            header = read_header(handle)
        except BackupError as error:
            raise BackupCorruptError(f"Backup {ref.container}/{ref.name}: {error}") from None
    if header.table != contract.name:
        raise BackupSchemaError(
            f"Backup {ref.container}/{ref.name} holds table {header.table!r}, not {contract.name!r}; "
            "refusing to restore it"
        )
    if header.contract_version != contract.version:
        raise BackupSchemaError(
            f"Backup {ref.container}/{ref.name} was written under contract version "
            f"{header.contract_version} of {contract.name}; the current one is {contract.version}"
        )
    found, wanted = _field_signature(header.schema), _field_signature(avro_schema(contract))
    if found != wanted:
        raise BackupSchemaError(
            f"Backup {ref.container}/{ref.name} has columns {found}; the contract of "
            f"{contract.name} wants {wanted}"
        )
    return header


# -- the replace-rows plan (the adapter's; identifiers only from contracts) ---------------------


def replace_plan(contract: TableContract, dialect) -> ReplacePlan:
    """Every statement of the replace-rows transaction of ``contract`` on ``dialect``."""
    return adapter_for(dialect).replace_plan(contract)


# -- loading -----------------------------------------------------------------------------------


def _avro_rows(path: Path, contract: TableContract, naive: bool, progress: dict, ref: BackupRef):
    """Tuples in contract column order from the AVRO file (timestamps UTC)."""
    import fastavro

    getter = operator.itemgetter(*contract.column_names)
    timestamps = [i for i, c in enumerate(contract.columns) if c.type is ColumnType.TIMESTAMP]
    with open(path, "rb") as handle:
        try:
            for record in fastavro.reader(handle):
                row = getter(record)
                if naive and timestamps:
                    row = list(row)
                    for i in timestamps:
                        row[i] = row[i].replace(tzinfo=None)
                progress["rows"] += 1
                if progress["rows"] % LOAD_CHUNK_ROWS == 0:
                    log.info("%s: %d of %d rows staged", contract.name, progress["rows"], progress["total"])
                yield row
        except Exception as error:  # noqa: BLE001 - the reader's only: database errors surface in the consumer
            raise BackupCorruptError(
                f"Backup {ref.container}/{ref.name} is corrupted: reading record "
                f"{progress['rows'] + 1} failed ({type(error).__name__}: {error})"
            ) from None


def _reference_problem(check: ReferenceCheck, missing: list, contract: TableContract) -> str:
    rows = sum(int(count) for _, count in missing)
    ids = ", ".join(str(value) for value, _ in missing[:SAMPLE_IDS])
    more = f" (first {SAMPLE_IDS} of {len(missing)})" if len(missing) > SAMPLE_IDS else ""
    if check.child == contract.name:
        return (
            f"{rows} rows of the backup's {check.child}.{check.column} point at {check.parent} "
            f"ids that do not exist now: {ids}{more}"
        )
    return (
        f"{rows} current rows of {check.child}.{check.column} point at {check.parent} ids "
        f"missing from the backup: {ids}{more}"
    )


def _run_plan(
    adapter,
    connection,
    plan: ReplacePlan,
    contract: TableContract,
    rows,
    progress: dict,
    header: BackupHeader,
    ref: BackupRef,
) -> int:
    """Execute the plan's steps on ``connection``, inside the caller's transaction; returns the
    table's row count before the swap. The reference checks run one after the other: every
    problem is named, and a problem stops the plan before its next statement (the swap)."""
    cursor = connection.cursor()
    rows_before, problems = 0, []
    for step in plan.steps:
        if step.kind != "check" and problems:
            break
        if step.kind == "load":
            adapter.load_restore_rows(cursor, contract, step.sql, rows)
            _check_row_count(progress, header, ref)
            log.info("%s: %d rows loaded; checking references", contract.name, progress["rows"])
            continue
        cursor.execute(step.sql)
        if step.kind == "count":
            rows_before = int(cursor.fetchone()[0])
        elif step.kind == "check" and (missing := cursor.fetchall()):
            problems.append(_reference_problem(step.check, missing, contract))
    if problems:
        raise ReferentialIntegrityError(
            f"Refusing to restore {contract.name} from {ref.name}: "
            + "; ".join(problems)
            + f". {contract.name} is unchanged."
        )
    return rows_before


@dataclass(frozen=True)
class RestoreResult:
    table: str
    blob_name: str
    backup_instant: str
    rows: int
    rows_before: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def restore_table(
    table_name: str,
    backup: str | None = LATEST,
    as_of: str | datetime | None = None,
    warehouse=None,
    store=None,
    work_dir: Path | None = None,
) -> RestoreResult:
    """Replace the table's rows with a backup's, in one transaction (see the module's doc)."""
    contract = get_contract(table_name)
    store = store or default_blob_store()
    warehouse = warehouse or default_warehouse()
    started = time.perf_counter()
    ref = choose_backup(contract.name, backup, as_of, store)
    log.info(
        "%s: restoring from %s/%s (taken %s, %d bytes)",
        contract.name,
        ref.container,
        ref.name,
        format_instant(ref.instant),
        ref.size,
    )
    with tempfile.TemporaryDirectory(prefix=f"restore-{table_name}-", dir=work_dir) as tmp:
        path = Path(tmp) / "backup.avro"
        store.download_to_file(ref.container, ref.name, path)
        header = check_backup_file(path, ref, contract)
        rows_before = _replace_rows(warehouse, contract, path, header, ref)
    seconds = time.perf_counter() - started
    log.info(
        "%s: restored %d rows from %s (the table held %d), %.1f s",
        contract.name,
        header.rows,
        ref.name,
        rows_before,
        seconds,
    )
    return RestoreResult(contract.name, ref.name, header.instant, header.rows, rows_before, round(seconds, 3))


def _check_row_count(progress: dict, header: BackupHeader, ref: BackupRef) -> None:
    if progress["rows"] != header.rows:
        raise BackupCorruptError(
            f"Backup {ref.container}/{ref.name} holds {progress['rows']} rows but its header "
            f"says {header.rows}: it is truncated; refusing to restore it"
        )


RESTORE_WAITING_MESSAGE = (
    "waiting for the lock on {tables} (a load or restore of it, or a load of a table that "
    "references it, is running); the restore starts once it is released"
)


def restore_locks(contract: TableContract) -> dict[str, list[str]]:
    """The table locks a restore of ``contract`` holds: exclusive on it, shared on the tables it
    references (``table_locks`` arguments)."""
    referenced = sorted({column.references for column in contract.foreign_keys} - {contract.name})
    return {"exclusive": [contract.name], "shared": referenced}


def _replace_rows(
    warehouse, contract: TableContract, path: Path, header: BackupHeader, ref: BackupRef
) -> int:
    """Stage, check and swap, holding the table locks (see ``restore_locks``) throughout."""
    with warehouse.table_locks(**restore_locks(contract), waiting_message=RESTORE_WAITING_MESSAGE):
        return _replace_rows_locked(warehouse, contract, path, header, ref)


def _replace_rows_locked(
    warehouse, contract: TableContract, path: Path, header: BackupHeader, ref: BackupRef
) -> int:
    adapter = warehouse.adapter
    progress = {"rows": 0, "total": header.rows}
    # PostgreSQL reads the UTC-aware datetimes into TIMESTAMP ignoring the (+00:00) offset;
    # the other drivers get naive UTC datetimes.
    rows = _avro_rows(path, contract, naive=not adapter.takes_aware_timestamps, progress=progress, ref=ref)
    plan = adapter.replace_plan(contract)
    connection = warehouse.connect()
    try:
        with adapter.write_transaction(connection):
            return _run_plan(adapter, connection, plan, contract, rows, progress, header, ref)
    except BaseException as error:
        if isinstance(error, BackupError) or not isinstance(error, Exception):
            raise
        raise BackupError(
            f"Restore of {contract.name} from {ref.name} failed, the table is unchanged: "
            f"{type(error).__name__}: {error}"
        ) from error
    finally:
        connection.close()


class RestoreRefused(RuntimeError):
    """A restore that cannot succeed as asked (no such backup, a corrupted or foreign file,
    broken references, rows the warehouse refuses): the table is unchanged, and trying again
    fails the same way. The message is the whole story, for the log and the alert."""


def restore_or_refuse(
    table_name: str, backup: str | None = LATEST, as_of: str | None = None
) -> RestoreResult:
    """``restore_table``, with every refusal raised as ``RestoreRefused``; passing faults (the
    warehouse or Blob Storage unreachable) propagate unchanged, to be retried."""
    try:
        return restore_table(table_name, backup=backup, as_of=as_of)
    except REFUSALS as refusal:
        message = f"Restore refused: {refusal}"
    except Exception as error:
        refused = _refused_data(error)
        if refused is None:
            raise  # a passing fault: retried
        message = (
            f"Restore refused: the warehouse refused the backup's rows for {table_name} ({refused}); "
            "the table is unchanged"
        )
    log.error(message)
    raise RestoreRefused(message)


def _refused_data(error: BaseException) -> WarehouseDataError | None:
    """What in ``error``'s chain of causes says the warehouse refused the rows, if anything."""
    typed = default_warehouse().adapter.typed_error(error)
    return typed if isinstance(typed, WarehouseDataError) else None
