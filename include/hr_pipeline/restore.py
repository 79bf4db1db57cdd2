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
   rows into the table, the reference checks, commit (see ``_replace_rows_postgres``).

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

from hr_pipeline import ddl, settings
from hr_pipeline.backup import (
    BLOB_META_SHA256,
    BackupError,
    BackupHeader,
    BackupRef,
    _blob_store,
    _warehouse,
    backup_prefix,
    format_instant,
    list_backups,
    parse_instant,
    read_header,
    sha256_of,
)
from hr_pipeline.contracts import (
    CONTRACTS,
    TABLE_NAMES,
    ColumnType,
    TableContract,
    avro_schema,
    get_contract,
    referencing_columns,
)

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
    store = store or _blob_store()
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
        hint = (f" (it names table {other!r}; this restore is of {contract.name})"
                if other != contract.name and other in TABLE_NAMES else "")
        raise BackupNotFoundError(
            f"Backup {backup!r} of {contract.name} not found in {where}{hint}. "
            f"Backups of {contract.name}: {_describe(backups)}"
        )
    if as_of:
        try:
            instant = as_of if isinstance(as_of, datetime) else parse_instant(as_of)
        except ValueError:
            raise BackupNotFoundError(
                f"as_of={as_of!r} is not an ISO 8601 instant (e.g. 2026-01-31T23:59:59Z)"
            ) from None
        if instant.tzinfo is None:
            instant = parse_instant(instant.isoformat())
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


# -- SQL (identifiers only from contracts) -----------------------------------------------------


def staging_table_name(contract: TableContract, dialect: ddl.Dialect) -> str:
    return f"#restore_{contract.name}" if dialect == "mssql" else f"restore_{contract.name}"


def _table(name: str, dialect: ddl.Dialect) -> str:
    if name.startswith("#"):
        return name
    return f"dbo.{ddl.quote(name, dialect)}" if dialect == "mssql" else ddl.quote(name, dialect)


def create_staging_sql(contract: TableContract, dialect: ddl.Dialect) -> list[str]:
    """SQLite and SQL Server stage the rows in a temporary table (PostgreSQL: see _replace_rows)."""
    if dialect == "postgres":
        raise ValueError("PostgreSQL restores load the table itself inside the swap transaction")
    staging = staging_table_name(contract, dialect)
    create = ddl.create_table(contract, dialect, table_name="x")
    if dialect == "sqlite":
        return [
            f"DROP TABLE IF EXISTS temp.{ddl.quote(staging, dialect)}",
            create.replace('CREATE TABLE "x"', f"CREATE TEMP TABLE {ddl.quote(staging, dialect)}", 1),
        ]
    return [
        f"DROP TABLE IF EXISTS {staging}",  # SQL Server 2016+ and Azure SQL
        create.replace("CREATE TABLE [x]", f"CREATE TABLE {staging}", 1),
    ]


@dataclass(frozen=True)
class ReferenceCheck:
    """Rows of ``child.column`` whose value would be missing from ``parent``'s key."""

    child: str
    column: str
    parent: str
    sql: str  # returns (missing id, rows) ordered by id


def reference_checks(
    contract: TableContract, dialect: ddl.Dialect, restored_rows_in: str | None = None
) -> list[ReferenceCheck]:
    """Both directions: current rows pointing at the restored table, restored rows pointing out.

    ``restored_rows_in``: the table holding the restored rows (default: the staging table).
    """
    staging = _table(restored_rows_in or staging_table_name(contract, dialect), dialect)
    q = lambda name: ddl.quote(name, dialect)  # noqa: E731
    pairs = [  # (child table or staging, child name, column, parent table or staging, parent name, parent key)
        (_table(child.name, dialect), child.name, column.name, staging, contract.name, contract.key)
        for child, column in referencing_columns(contract.name)
    ] + [
        (staging, contract.name, column.name, _table(column.references, dialect), column.references,
         CONTRACTS[column.references].key)
        for column in contract.foreign_keys
    ]
    checks = []
    for child_sql, child_name, column, parent_sql, parent_name, key in pairs:
        sql = (
            f"SELECT c.{q(column)}, COUNT(*) FROM {child_sql} c "
            f"WHERE NOT EXISTS (SELECT 1 FROM {parent_sql} p WHERE p.{q(key)} = c.{q(column)}) "
            f"GROUP BY c.{q(column)} ORDER BY c.{q(column)}"
        )
        checks.append(ReferenceCheck(child_name, column, parent_name, sql))
    return checks


def related_tables(contract: TableContract) -> list[str]:
    related = {child.name for child, _ in referencing_columns(contract.name)}
    related |= {column.references for column in contract.foreign_keys}
    related.discard(contract.name)
    return [name for name in TABLE_NAMES if name in related]


def lock_sql(contract: TableContract, dialect: ddl.Dialect) -> list[str]:
    """Keep writers out of the table and its related tables until commit; readers go on."""
    if dialect == "sqlite":
        return []  # BEGIN IMMEDIATE already holds the database's only write lock
    statements = []
    for name in TABLE_NAMES:  # one order everywhere: no lock-order deadlocks
        if name == contract.name:
            mode = "pg:EXCLUSIVE", "TABLOCKX, HOLDLOCK"
        elif name in related_tables(contract):
            mode = "pg:SHARE", "TABLOCK, HOLDLOCK"
        else:
            continue
        if dialect == "postgres":
            statements.append(f"LOCK TABLE {ddl.quote(name, dialect)} IN {mode[0][3:]} MODE")
        else:
            statements.append(f"SELECT TOP (0) 1 FROM {_table(name, dialect)} WITH ({mode[1]})")
    return statements


def swap_sql(contract: TableContract, dialect: ddl.Dialect) -> list[str]:
    target = _table(contract.name, dialect)
    staging = _table(staging_table_name(contract, dialect), dialect)
    columns = ddl.column_list(contract, dialect)
    return [
        f"DELETE FROM {target}",
        f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {staging}",
    ]


def swap_statements(contract: TableContract, dialect: ddl.Dialect) -> list[str]:
    """What runs in the swap transaction once the rows are staged: locks, reference checks, swap.

    PostgreSQL: locks, ``DELETE``, then ``COPY`` into the table itself, then the reference checks.
    """
    if dialect == "postgres":
        return [
            *lock_sql(contract, dialect),
            swap_sql(contract, dialect)[0],
            f"COPY {ddl.quote(contract.name, dialect)} ({ddl.column_list(contract, dialect)}) FROM STDIN",
            *[check.sql for check in reference_checks(contract, dialect, restored_rows_in=contract.name)],
        ]
    return [
        *lock_sql(contract, dialect),
        *[check.sql for check in reference_checks(contract, dialect)],
        *swap_sql(contract, dialect),
    ]


def render_mssql_restore(table_name: str) -> str:
    """The T-SQL a restore runs on SQL Server, as one script (rows go in as parameters)."""
    from hr_pipeline.warehouse import mssql_insert_chunks

    contract = get_contract(table_name)
    staging = staging_table_name(contract, "mssql")
    example_row = tuple(0 if c.type is ColumnType.INTEGER else "x" for c in contract.columns)
    insert_sql, _ = next(mssql_insert_chunks(contract, staging, [example_row]))
    statements = [
        *create_staging_sql(contract, "mssql"),
        insert_sql.replace("%s", "NULL"),
        "SET XACT_ABORT ON",
        "BEGIN TRANSACTION",
        *swap_statements(contract, "mssql"),
        "COMMIT TRANSACTION",
        f"DROP TABLE {staging}",
    ]
    return ";\n".join(statements) + ";\n"


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
        except Exception as error:  # raised by the reader only: database errors surface in the consumer
            raise BackupCorruptError(
                f"Backup {ref.container}/{ref.name} is corrupted: reading record "
                f"{progress['rows'] + 1} failed ({type(error).__name__}: {error})"
            ) from None


def _stage_rows(warehouse, connection, contract: TableContract, rows) -> None:
    dialect = warehouse.dialect
    cursor = connection.cursor()
    for statement in create_staging_sql(contract, dialect):
        cursor.execute(statement)
    staging = staging_table_name(contract, dialect)
    batch: list = []
    for row in rows:
        batch.append(row)
        if len(batch) >= LOAD_CHUNK_ROWS:
            _insert_batch(warehouse, cursor, contract, staging, batch)
            batch = []
    _insert_batch(warehouse, cursor, contract, staging, batch)


def _insert_batch(warehouse, cursor, contract, staging, batch) -> None:
    if not batch:
        return
    if warehouse.dialect == "sqlite":
        sql = (f"INSERT INTO temp.{ddl.quote(staging, 'sqlite')} ({ddl.column_list(contract, 'sqlite')}) "
               f"VALUES ({ddl.placeholders(len(contract.columns), 'sqlite')})")
        cursor.executemany(sql, [warehouse.to_db_row(contract, row) for row in batch])
    else:
        from hr_pipeline.warehouse import mssql_insert_chunks

        for sql, params in mssql_insert_chunks(contract, staging, batch):
            cursor.execute(sql, params)


def _check_references(cursor, contract: TableContract, dialect, ref: BackupRef,
                      restored_rows_in: str | None = None) -> None:
    problems = []
    for check in reference_checks(contract, dialect, restored_rows_in):
        cursor.execute(check.sql)
        missing = cursor.fetchall()
        if not missing:
            continue
        rows = sum(int(count) for _, count in missing)
        ids = ", ".join(str(value) for value, _ in missing[:SAMPLE_IDS])
        more = f" (first {SAMPLE_IDS} of {len(missing)})" if len(missing) > SAMPLE_IDS else ""
        if check.child == contract.name:
            problems.append(
                f"{rows} rows of the backup's {check.child}.{check.column} point at {check.parent} "
                f"ids that do not exist now: {ids}{more}"
            )
        else:
            problems.append(
                f"{rows} current rows of {check.child}.{check.column} point at {check.parent} ids "
                f"missing from the backup: {ids}{more}"
            )
    if problems:
        raise ReferentialIntegrityError(
            f"Refusing to restore {contract.name} from {ref.name}: " + "; ".join(problems)
            + f". {contract.name} is unchanged."
        )


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
    store = store or _blob_store()
    warehouse = warehouse or _warehouse()
    started = time.perf_counter()
    ref = choose_backup(contract.name, backup, as_of, store)
    log.info("%s: restoring from %s/%s (taken %s, %d bytes)", contract.name, ref.container,
             ref.name, format_instant(ref.instant), ref.size)
    with tempfile.TemporaryDirectory(prefix=f"restore-{table_name}-", dir=work_dir) as tmp:
        path = Path(tmp) / "backup.avro"
        store.download_to_file(ref.container, ref.name, path)
        header = check_backup_file(path, ref, contract)
        rows_before = _replace_rows(warehouse, contract, path, header, ref)
    seconds = time.perf_counter() - started
    log.info("%s: restored %d rows from %s (the table held %d), %.1f s", contract.name,
             header.rows, ref.name, rows_before, seconds)
    return RestoreResult(contract.name, ref.name, header.instant, header.rows, rows_before,
                         round(seconds, 3))


def _check_row_count(progress: dict, header: BackupHeader, ref: BackupRef) -> None:
    if progress["rows"] != header.rows:
        raise BackupCorruptError(
            f"Backup {ref.container}/{ref.name} holds {progress['rows']} rows but its header "
            f"says {header.rows}: it is truncated; refusing to restore it"
        )


def _replace_rows_postgres(connection, contract, rows, progress, header, ref) -> int:
    """PostgreSQL: the open transaction is the staging area.

    Locks, ``DELETE``, ``COPY`` of the backup's rows into the table itself, reference checks, and
    the caller commits. Under MVCC no other session sees any of it before the commit (readers keep
    reading the old rows, never a mix nor an empty table), and a refusal rolls it all back. This
    spares the copy through a temporary table (COPY into it, then INSERT ... SELECT), which doubled
    the server's work for nothing (benchmark, 1M rows on a loaded machine: 2.68x the
    fastavro-to-COPY baseline with the temporary table, 1.36x without).
    The price: writers of the table (and of the tables it references or that reference it) wait
    for the whole load instead of the swap alone; readers never wait.
    """
    from hr_pipeline.warehouse import copy_rows

    cursor = connection.cursor()
    for statement in lock_sql(contract, "postgres"):
        cursor.execute(statement)
    cursor.execute(f"SELECT COUNT(*) FROM {ddl.quote(contract.name, 'postgres')}")
    rows_before = int(cursor.fetchone()[0])
    cursor.execute(swap_sql(contract, "postgres")[0])  # DELETE
    copy_rows(cursor, contract.name, contract, rows)
    _check_row_count(progress, header, ref)
    log.info("%s: %d rows loaded; checking references", contract.name, progress["rows"])
    _check_references(cursor, contract, "postgres", ref, restored_rows_in=contract.name)
    return rows_before


RESTORE_WAITING_MESSAGE = (
    "waiting for the lock on {tables} (a load or restore of it, or a load of a table that "
    "references it, is running); the restore starts once it is released"
)


def restore_locks(contract: TableContract) -> dict[str, list[str]]:
    """The table locks a restore of ``contract`` holds: exclusive on it, shared on the tables it
    references (``table_locks`` arguments)."""
    referenced = sorted({column.references for column in contract.foreign_keys} - {contract.name})
    return {"exclusive": [contract.name], "shared": referenced}


def _replace_rows(warehouse, contract: TableContract, path: Path, header: BackupHeader, ref: BackupRef) -> int:
    """Stage, check and swap, holding the table locks (see ``restore_locks``) throughout."""
    with warehouse.table_locks(**restore_locks(contract), waiting_message=RESTORE_WAITING_MESSAGE):
        return _replace_rows_locked(warehouse, contract, path, header, ref)


def _replace_rows_locked(warehouse, contract: TableContract, path: Path, header: BackupHeader,
                         ref: BackupRef) -> int:
    dialect = warehouse.dialect
    progress = {"rows": 0, "total": header.rows}
    # PostgreSQL reads the UTC-aware datetimes into TIMESTAMP ignoring the (+00:00) offset;
    # the other drivers get naive UTC datetimes.
    rows = _avro_rows(path, contract, naive=dialect != "postgres", progress=progress, ref=ref)
    connection = warehouse.connect()
    try:
        if dialect == "postgres":
            rows_before = _replace_rows_postgres(connection, contract, rows, progress, header, ref)
            connection.commit()
            return rows_before
        if dialect == "sqlite":
            connection.isolation_level = None
            connection.execute("BEGIN IMMEDIATE")
        cursor = connection.cursor()
        _stage_rows(warehouse, connection, contract, rows)
        _check_row_count(progress, header, ref)
        log.info("%s: %d rows staged; checking references and swapping", contract.name, progress["rows"])
        if dialect == "mssql":
            cursor.execute("SET XACT_ABORT ON")
        for statement in lock_sql(contract, dialect):
            cursor.execute(statement)
        cursor.execute(f"SELECT COUNT(*) FROM {_table(contract.name, dialect)}")
        rows_before = int(cursor.fetchone()[0])
        _check_references(cursor, contract, dialect, ref)
        for statement in swap_sql(contract, dialect):
            cursor.execute(statement)
        if dialect == "sqlite":
            connection.execute("COMMIT")
        else:
            connection.commit()
        return rows_before
    except BaseException as error:
        if dialect == "sqlite":
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        else:
            connection.rollback()
        if isinstance(error, BackupError) or not isinstance(error, Exception):
            raise
        raise BackupError(
            f"Restore of {contract.name} from {ref.name} failed, the table is unchanged: "
            f"{type(error).__name__}: {error}"
        ) from error
    finally:
        connection.close()
