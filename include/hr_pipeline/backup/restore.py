"""Restore of one warehouse table: a backup, or the table as it was at an instant, atomically.

``restore_table(table, backup="latest", as_of=None, dry_run=False)``:

1. plans what to apply (``backup.point_in_time``): the newest backup or a named one alone; or, with
   ``as_of``, the newest backup whose snapshot is at or before that instant plus the loads the
   table journal recorded after it up to that instant, in order (across restores in between).
   An instant that cannot be reached (before every backup, a rows file or a backup gone) is
   refused before anything is read;
2. downloads the backup and checks it: the sha256 in the blob's metadata, the table and contract
   version in the AVRO header, the writer schema against the contract's;
3. loads its rows (SQLite: a temporary staging table; SQL Server: a ``#temp`` table), then
   replays each journaled load over them, an upsert of exactly the rows it committed (its
   archived rows file, checked against the sha256 and row count the journal recorded), and
4. in ONE transaction: locks the table (readers go on) and the tables that reference it or that it
   references (so no writer slips in between the check and the swap), checks referential
   integrity against the restored rows, swaps them in (``DELETE`` + ``INSERT ... SELECT``) and
   writes the restore's own journal row (so a later ``as_of`` can cross it).
   PostgreSQL: the transaction itself is the staging area: locks, ``DELETE``, ``COPY`` of the
   rows into the table, the replays, the reference checks, the journal row, commit. Each
   dialect's adapter owns its plan (``Adapter.replace_plan``); ``_run_plan`` executes it.

A dry run does all of it but the swap and the journal row, on a staging table, and answers how the
restored rows differ from the table's now (added, removed, changed), then rolls back.

Steps 3 and 4 run under the warehouse's table locks (``Warehouse.table_locks``): exclusive on the
table, shared on the tables it references. A load holds the table's content lock shared (and its
writer lock), so loads and restores of one table never overlap, and a load of hired_employees
never overlaps a restore of departments or jobs; a restore that has to wait logs what it waits for.

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

from hr_pipeline.backup import point_in_time
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
from hr_pipeline.runtime.memory import return_large_buffers_to_the_system
from hr_pipeline.runtime.progress import Progress
from hr_pipeline.runtime.streams import read_ahead
from hr_pipeline.warehouse import journal
from hr_pipeline.warehouse.dialects import ReferenceCheck, ReplacePlan, adapter_for
from hr_pipeline.warehouse.dialects.base import related_tables  # noqa: F401  (part of this module's API)
from hr_pipeline.warehouse.errors import WarehouseDataError

log = logging.getLogger(__name__)

LATEST = "latest"
SAMPLE_IDS = 10  # ids named in a referential-integrity refusal
REPLAY_BATCH_ROWS = 50_000
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
REFUSALS = (
    BackupNotFoundError,
    BackupCorruptError,
    BackupSchemaError,
    ReferentialIntegrityError,
    point_in_time.PointInTimeError,
)


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
        instant = as_of_instant(as_of)
        candidates = [ref for ref in backups if ref.instant <= instant]
        if not candidates:
            raise BackupNotFoundError(
                f"No backup of {contract.name} was taken at or before {format_instant(instant)}. "
                f"Backups of {contract.name}: {_describe(backups)}"
            )
        return candidates[-1]
    return backups[-1]


def as_of_instant(as_of: str | datetime) -> datetime:
    """``as_of`` as an aware UTC instant, or a refusal saying what is expected."""
    try:
        return as_utc(as_of) if isinstance(as_of, datetime) else parse_instant(as_of)
    except ValueError:
        raise BackupNotFoundError(
            f"as_of={as_of!r} is not an ISO 8601 instant (e.g. 2026-01-31T23:59:59Z)"
        ) from None


def plan_restore(
    table_name: str, backup: str | None, as_of: str | datetime | None, store, warehouse
) -> point_in_time.RestorePlan:
    """What a restore applies: one backup (``latest`` or named), or, with ``as_of``, a backup and
    the journaled loads after it up to that instant (``point_in_time.plan_as_of``). A plan whose
    rows files are not all there is refused here, before anything is read."""
    contract = get_contract(table_name)
    if not as_of or (backup or LATEST).strip() != LATEST:
        return point_in_time.plan_backup(choose_backup(contract.name, backup, as_of, store))
    instant = as_of_instant(as_of)
    # Refuses an instant before every backup, listing them (or saying where it looked).
    choose_backup(contract.name, LATEST, instant, store)
    backups = list_backups(contract.name, store, settings.backups_container())
    plan = point_in_time.plan_as_of(
        contract.name, backups, journal.entries(warehouse, contract.name), instant
    )
    container = settings.raw_container()
    missing = point_in_time.missing_rows_files(plan, lambda name: store.exists(container, name))
    point_in_time.refuse_missing(plan, missing, container)
    return plan


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


def replace_plan(contract: TableContract, dialect, dry_run: bool = False) -> ReplacePlan:
    """Every statement of the replace-rows transaction of ``contract`` on ``dialect``."""
    return adapter_for(dialect).replace_plan(contract, dry_run=dry_run)


# -- loading -----------------------------------------------------------------------------------


def _avro_rows(path: Path, contract: TableContract, progress: dict, ref: BackupRef):
    """Tuples in contract column order from the AVRO file, timestamps as naive UTC datetimes (the
    warehouse's TIMESTAMP columns hold UTC without a zone)."""
    import fastavro

    getter = operator.itemgetter(*contract.column_names)
    timestamps = [i for i, c in enumerate(contract.columns) if c.type is ColumnType.TIMESTAMP]
    with open(path, "rb") as handle:
        try:
            for record in fastavro.reader(handle):
                row = getter(record)
                if timestamps:
                    row = list(row)
                    for i in timestamps:
                        row[i] = row[i].replace(tzinfo=None)
                progress["rows"] += 1
                if progress["rows"] % 10_000 == 0:
                    progress["line"].advance(10_000)
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


@dataclass
class RestoreJob:
    """One restore as ``_run_plan`` carries it out: the backup's file and header, the plan, the
    journaled loads to replay (their rows files read from ``store``), and whether it is a dry run."""

    contract: TableContract
    path: Path
    header: BackupHeader
    ref: BackupRef
    plan: point_in_time.RestorePlan | None = None
    store: Any = None
    dry_run: bool = False
    run_id: str = "manual"

    @property
    def replays(self) -> tuple:
        return self.plan.replays if self.plan else ()


@dataclass
class PlanOutcome:
    """What the restore's transaction found: the table's rows before, the restored rows, the
    rows replayed, and (a dry run) how the restored rows differ from the table's."""

    rows_before: int = 0
    rows: int = 0
    replayed_rows: int = 0
    journal_seq: int | None = None
    added: int | None = None
    removed: int | None = None
    changed: int | None = None


def _replay(adapter, connection, job: RestoreJob, target: str) -> int:
    """Upsert each journaled load's rows into ``target``, in order; returns the rows replayed.
    The next batch is downloaded, decompressed, checked and cut while the warehouse takes the
    current one."""
    replayed, state = 0, None
    progress = Progress(
        f"replay of {len(job.replays)} journaled load(s) into {job.contract.name}",
        total=sum(entry.rows for entry in job.replays),
        logger=log,
    )
    for entry, batch in read_ahead(_replay_batches(job), depth=1, name="replay-read"):
        if batch is None:  # the load's last batch has passed, and its rows file checked
            _log_replayed(job, entry)
            state = None
            continue
        if state is None:
            state = adapter.new_load()
        adapter.replay_batch(connection, job.contract, target, batch, state)
        replayed += batch.rows
        progress.advance(batch.rows)
    progress.finish()
    return replayed


def _replay_batches(job: RestoreJob):
    """(journal entry, batch) for every batch of every load to replay, in order, and (entry,
    None) once a load's rows file has passed whole and been checked against its journal row."""
    from hr_pipeline.warehouse.facade import csv_batches

    container = settings.raw_container()
    for entry in job.replays:
        blocks = job.store.decompressed_blocks(container, entry.rows_file, journal.ROWS_FILE_COMPRESSION)
        for batch in point_in_time.checked_batches(entry, csv_batches(blocks, REPLAY_BATCH_ROWS), container):
            yield entry, batch
        yield entry, None


def _log_replayed(job: RestoreJob, entry) -> None:
    log.info(
        "%s: journal %d replayed (load of %s by run %s, %d rows)",
        job.contract.name,
        entry.seq,
        entry.source,
        entry.run_id,
        entry.rows,
    )


def _run_plan(adapter, connection, plan: ReplacePlan, job: RestoreJob, rows, progress: dict) -> PlanOutcome:
    """Execute the plan's steps on ``connection``, inside the caller's transaction. The reference
    checks run one after the other: every problem is named, and a problem stops the plan before
    its next statement (the swap). A real restore then counts the table and writes its journal
    row, last in the transaction."""
    contract, cursor, outcome, problems = job.contract, connection.cursor(), PlanOutcome(), []
    for step in plan.steps:
        if step.kind != "check" and problems:
            break
        if step.kind == "load":
            adapter.load_restore_rows(cursor, contract, step.sql, rows)
            progress["line"].finish()
            _check_row_count(progress, job.header, job.ref)
            log.info("%s: %d rows of the backup loaded", contract.name, progress["rows"])
            continue
        if step.kind == "replay":
            outcome.replayed_rows = _replay(adapter, connection, job, step.sql) if job.replays else 0
            continue
        cursor.execute(step.sql)
        if step.kind == "count":
            outcome.rows_before = int(cursor.fetchone()[0])
        elif step.kind == "check" and (missing := cursor.fetchall()):
            problems.append(_reference_problem(step.check, missing, contract))
        elif step.kind == "diff":
            outcome.added, outcome.removed, outcome.changed, outcome.rows = map(int, cursor.fetchone())
    if problems:
        raise ReferentialIntegrityError(
            f"Refusing to restore {contract.name} from {job.ref.name}: "
            + "; ".join(problems)
            + f". {contract.name} is unchanged."
        )
    if not job.dry_run:
        cursor.execute(adapter.count_rows(contract.name))
        outcome.rows = int(cursor.fetchone()[0])
        outcome.journal_seq = _journal_restore(adapter, cursor, job, outcome.rows)
    return outcome


def _journal_restore(adapter, cursor, job: RestoreJob, rows: int) -> int:
    plan = job.plan or point_in_time.plan_backup(job.ref)
    return journal.write(
        cursor,
        adapter,
        table_name=job.contract.name,
        kind=journal.RESTORE,
        run_id=job.run_id,
        source=plan.base.name,
        rows=rows,
        backup_position=plan.base_position,
        through_seq=plan.through_seq,
    )


@dataclass(frozen=True)
class RestoreResult:
    table: str
    blob_name: str
    backup_instant: str
    rows: int  # the table's rows after the restore (a dry run: it would hold)
    rows_before: int
    seconds: float
    as_of: str | None = None
    plan: str = ""
    replayed: tuple[int, ...] = ()  # the journal seqs of the loads replayed
    replayed_rows: int = 0
    journal_seq: int | None = None  # the restore's own journal row (None for a dry run)
    dry_run: bool = False
    rows_added: int | None = None  # a dry run's comparison with the table now
    rows_removed: int | None = None
    rows_changed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types (an XCom shows a tuple as a tagged object)."""
        return {**asdict(self), "replayed": list(self.replayed)}


def restore_table(
    table_name: str,
    backup: str | None = LATEST,
    as_of: str | datetime | None = None,
    warehouse=None,
    store=None,
    work_dir: Path | None = None,
    dry_run: bool = False,
    run_id: str = "manual",
) -> RestoreResult:
    """Replace the table's rows with a backup's, or with the table as it was at ``as_of``, in one
    transaction (see the module's doc); a dry run changes nothing and says what would change."""
    contract = get_contract(table_name)
    return_large_buffers_to_the_system()
    store = store or default_blob_store()
    warehouse = warehouse or default_warehouse()
    warehouse.ensure_tables()
    started = time.perf_counter()
    plan = plan_restore(contract.name, backup, as_of, store, warehouse)
    ref = plan.base
    log.info(
        "%s: %s %s (backup taken %s, %d bytes)",
        contract.name,
        "DRY RUN, nothing will change: would restore" if dry_run else "restoring",
        plan.describe(),
        format_instant(ref.instant),
        ref.size,
    )
    with tempfile.TemporaryDirectory(prefix=f"restore-{table_name}-", dir=work_dir) as tmp:
        path = Path(tmp) / "backup.avro"
        store.download_to_file(ref.container, ref.name, path)
        header = check_backup_file(path, ref, contract)
        job = RestoreJob(contract, path, header, ref, plan, store, dry_run, run_id)
        outcome = _replace_rows(warehouse, contract, path, header, ref, job=job)
    result = RestoreResult(
        contract.name,
        ref.name,
        header.instant,
        outcome.rows,
        outcome.rows_before,
        round(time.perf_counter() - started, 3),
        as_of=format_instant(plan.as_of) if plan.as_of else None,
        plan=plan.describe(),
        replayed=tuple(entry.seq for entry in plan.replays),
        replayed_rows=outcome.replayed_rows,
        journal_seq=outcome.journal_seq,
        dry_run=dry_run,
        rows_added=outcome.added,
        rows_removed=outcome.removed,
        rows_changed=outcome.changed,
    )
    _log_result(result)
    return result


def _log_result(result: RestoreResult) -> None:
    if result.dry_run:
        log.info(
            "%s: DRY RUN, nothing changed. Restoring %s would leave %d rows (the table holds %d): "
            "%d added, %d removed, %d changed",
            result.table,
            result.plan,
            result.rows,
            result.rows_before,
            result.rows_added,
            result.rows_removed,
            result.rows_changed,
        )
        return
    log.info(
        "%s: restored %s: %d rows (the table held %d), journal %s, %.1f s",
        result.table,
        result.plan,
        result.rows,
        result.rows_before,
        result.journal_seq,
        result.seconds,
    )


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
    warehouse,
    contract: TableContract,
    path: Path,
    header: BackupHeader,
    ref: BackupRef,
    job: RestoreJob | None = None,
) -> PlanOutcome:
    """Stage, replay, check and swap, holding the table locks (see ``restore_locks``) throughout."""
    job = job or RestoreJob(contract, path, header, ref)
    with warehouse.table_locks(**restore_locks(contract), waiting_message=RESTORE_WAITING_MESSAGE):
        return _replace_rows_locked(warehouse, job)


def _replace_rows_locked(warehouse, job: RestoreJob) -> PlanOutcome:
    adapter, contract, ref = warehouse.adapter, job.contract, job.ref
    progress = {
        "rows": 0,
        "total": job.header.rows,
        "line": Progress(f"restore {contract.name} from {ref.name}", total=job.header.rows, logger=log),
    }
    rows = _avro_rows(job.path, contract, progress=progress, ref=ref)
    plan = adapter.replace_plan(contract, dry_run=job.dry_run)
    connection = warehouse.connect()
    try:
        with adapter.write_transaction(connection):
            outcome = _run_plan(adapter, connection, plan, job, rows, progress)
            if job.dry_run:
                raise _DryRunDone(outcome)
            return outcome
    except _DryRunDone as done:
        return done.outcome  # rolled back: nothing changed
    except BaseException as error:
        if isinstance(error, BackupError) or not isinstance(error, Exception):
            raise
        raise BackupError(
            f"Restore of {contract.name} from {ref.name} failed, the table is unchanged: "
            f"{type(error).__name__}: {error}"
        ) from error
    finally:
        connection.close()


class _DryRunDone(Exception):
    """Ends a dry run's transaction by rolling it back, carrying what it found."""

    def __init__(self, outcome: PlanOutcome):
        super().__init__("dry run")
        self.outcome = outcome


class RestoreRefused(RuntimeError):
    """A restore that cannot succeed as asked (no such backup, a corrupted or foreign file,
    broken references, rows the warehouse refuses): the table is unchanged, and trying again
    fails the same way. The message is the whole story, for the log and the alert."""


def restore_or_refuse(
    table_name: str,
    backup: str | None = LATEST,
    as_of: str | None = None,
    dry_run: bool = False,
    run_id: str = "manual",
) -> RestoreResult:
    """``restore_table``, with every refusal raised as ``RestoreRefused``; passing faults (the
    warehouse or Blob Storage unreachable) propagate unchanged, to be retried."""
    try:
        return restore_table(table_name, backup=backup, as_of=as_of, dry_run=dry_run, run_id=run_id)
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
