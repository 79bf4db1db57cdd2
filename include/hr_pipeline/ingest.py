"""Ingestion of the CSV extracts waiting under ``incoming/<table>/``: validate, load, archive.

The DAG runs these three steps as separate tasks, so each can be retried alone and may run on a
different worker. They hand over through Blob Storage, never through a worker's disk:

- ``validate_incoming`` streams every waiting file (in name order) through the contract's Great
  Expectations suite, chunk by chunk, and writes two files per extract to
  ``processing/<table>/<run>/``: the valid rows in canonical text form (CSV, zstd-compressed),
  and the rejected rows with their reasons. An unreadable file (not UTF-8 text, binary) is
  moved whole to ``rejected/``. Names are in ``blob_layout``.
- ``load_validated`` upserts the valid rows, in transactions of ``batch_size`` rows, in file order.
- ``archive_ingested`` moves each extract to ``archive/`` and its rejects to ``rejected/``, and
  writes the ledger. It first records what it is about to finish (the run's validations and
  loads) in an archive manifest: a run that dies part way is finished by the next run of the
  table (``claims.adopt_leftovers``), so no rejects file and no ledger row is ever lost.

The load and the archive commit only while the run holds the table's ingest lock, checked inside
the warehouse's writer lock of the table (``claims``: fencing).

Every file satisfies: rows loaded + rows rejected = data rows in the file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hr_pipeline import blob_layout as layout
from hr_pipeline import ledger
from hr_pipeline.blob_store import BlobStore
from hr_pipeline.claims import (
    Claim,
    IngestLock,
    RunHasEnded,
    adopt_leftovers,
    claim_files,
    wait_for_referenced_ingests,
)
from hr_pipeline.contracts import get_contract
from hr_pipeline.csv_reader import (
    FileScan,
    UnreadableFileError,
    read_block_bytes,
    read_chunks,
    release_arrow_memory,
    scan,
    scan_blocks,
    use_system_allocator,
)
from hr_pipeline.settings import (
    ingest_lock_timeout_seconds,
    raw_container,
    reference_poll_seconds,
    reference_wait_seconds,
    validation_chunk_rows,
)
from hr_pipeline.streams import InBackground, read_ahead
from hr_pipeline.warehouse import Warehouse, csv_batches

log = logging.getLogger(__name__)


class IngestError(RuntimeError):
    """A failure the user has to act on (the message says what and where)."""


@dataclass
class FileValidation:
    """What validation found in one extract; passed between tasks as a dict (XCom)."""

    table: str
    source: str  # incoming/<table>/<path>: the name the file arrived under
    claimed_blob: str  # where the run holds it (processing/<table>/<run>/claimed/<path>)
    run_id: str
    rows: int
    valid: int
    rejected: int
    valid_blob: str
    rejects_blob: str  # the rejects while the run is in flight (processing/)
    archive_blob: str = ""  # where the file goes once ingested
    rejects_destination: str = ""  # where its rejects go (only written if a row was rejected)
    header_skipped: bool = False
    # referenced table -> the ids the valid rows point at (checked again when they are loaded)
    referenced_ids: dict[str, list[int]] = field(default_factory=dict)
    unreadable_reason: str | None = None
    sha256: str = ""
    bytes: int = 0
    same_as_run: str | None = None  # an earlier run that ingested a file with the same bytes
    # the rejected share is above the run's max_reject_ratio: the file is not loaded
    over_limit_reason: str | None = None

    @property
    def file_name(self) -> str:
        return self.source.rsplit("/", 1)[-1]

    def to_dict(self) -> dict:
        return asdict(self)


def validate_incoming(
    table: str,
    run_id: str,
    day: str,
    chunk_rows: int | None = None,
    store: BlobStore | None = None,
    warehouse: Warehouse | None = None,
    run_has_ended: RunHasEnded | None = None,
    max_reject_ratio: float = 1.0,
) -> list[dict]:
    """Claim and validate every file waiting for ``table``; returns one ``FileValidation`` dict
    per file, in the order they must be loaded.

    Takes the table's ingest lock (see ``claims``) and keeps it until ``archive_ingested``
    releases it, unless there is nothing to ingest. ``run_has_ended`` tells whether another run
    holding the lock has ended (then it takes the lock over, and adopts what that run left). A
    file whose rejected share is
    above ``max_reject_ratio`` (the DAG's param; here no limit by default) is not loaded.
    """
    contract = get_contract(table)
    store = store or BlobStore()
    warehouse = warehouse or Warehouse()
    container = raw_container()
    use_system_allocator()
    warehouse.ensure_tables()
    wait_for_referenced_ingests(
        store,
        container,
        table,
        [column.references for column in contract.foreign_keys],
        reference_wait_seconds(),
        poll_seconds=reference_poll_seconds(),
        run_has_ended=run_has_ended,
    )
    lock = ingest_lock(table, run_id, store, warehouse, run_has_ended)
    lock.acquire(ingest_lock_timeout_seconds())
    adopt_leftovers(
        store,
        container,
        table,
        run_id,
        finish_archive=lambda manifest: _finish_archive(manifest, store, warehouse, lock),
    )
    claims = claim_files(store, container, table, run_id)
    log.info(
        "%d file(s) to ingest for %s: %s",
        len(claims),
        table,
        ", ".join(claim.source for claim in claims) or "-",
    )
    if not claims:
        lock.release()
        return []
    reference_keys = {
        column.references: warehouse.key_values(column.references) for column in contract.foreign_keys
    }
    for referenced, keys in reference_keys.items():
        log.info("Foreign keys of %s checked against %d ids of %s", table, len(keys), referenced)
    results = []
    for claim in claims:
        result = validate_file(
            table,
            claim,
            run_id,
            day,
            reference_keys,
            chunk_rows or validation_chunk_rows(),
            store,
            max_reject_ratio,
        )
        _note_earlier_ingest(warehouse, result)
        results.append(result.to_dict())
    log.info(
        "Validated %d file(s) of %s:\n%s",
        len(results),
        table,
        "\n".join(
            f"  {r['source']}: {r['rows']} rows, {r['valid']} valid, {r['rejected']} rejected"
            + (f" (UNREADABLE: {r['unreadable_reason']})" if r["unreadable_reason"] else "")
            for r in results
        ),
    )
    return results


def validate_file(
    table: str,
    claim: Claim,
    run_id: str,
    day: str,
    reference_keys: dict[str, set[int]],
    chunk_rows: int,
    store: BlobStore,
    max_reject_ratio: float = 1.0,
) -> FileValidation:
    """Validate one claimed file, chunk by chunk: its valid rows (canonical CSV, zstd) and its
    rejects go to ``processing/`` for the load and archive steps. An unreadable file is moved
    whole to ``rejected/``."""
    from hr_pipeline.validation import ChunkValidator

    contract = get_contract(table)
    container = raw_container()
    source = claim.source
    result = FileValidation(
        table=table,
        source=source,
        claimed_blob=claim.blob,
        run_id=run_id,
        rows=0,
        valid=0,
        rejected=0,
        valid_blob=layout.valid_rows_name(table, run_id, source),
        rejects_blob=layout.pending_rejects_name(table, run_id, source),
        archive_blob=layout.archive_name(table, day, run_id, source),
        rejects_destination=layout.rejects_name(table, day, run_id, source),
    )
    with tempfile.TemporaryDirectory(prefix="hr-ingest-") as work:
        try:
            local, file_scan = _scan_claimed(store, result, Path(work), contract)
        except UnreadableFileError as error:
            return _reject_whole_file(store, result, day, run_id, str(error), Path(work))
        log.info(
            "%s: %d records; %d id(s) occur more than once",
            source,
            file_scan.records,
            len(file_scan.duplicate_ids),
        )

        validator = ChunkValidator(contract, reference_keys, file_scan.duplicate_ids)
        referenced: dict[str, set[int]] = {column.references: set() for column in contract.foreign_keys}
        broken_rules: Counter = Counter()
        rejects_path = Path(work) / "rejects.csv"
        # The valid rows go to Blob Storage as they are produced (uploaded by a background thread
        # while the next chunk is validated), compressed with zstd: a tenth of the bytes to send
        # and for the load to fetch, for a few milliseconds per chunk. The rejects, usually few,
        # are uploaded at the end.
        with (
            store.streaming_upload(container, result.valid_blob) as valid_upload,
            open(rejects_path, "w", newline="", encoding="utf-8") as rejects_file,
        ):
            valid_file = compressed_stream(valid_upload)
            valid_writer = None

            def write_valid(table) -> None:
                nonlocal valid_writer
                if valid_writer is None:
                    valid_writer = _canonical_csv_writer(valid_file, table.schema)
                valid_writer.write_table(table)

            rejects_writer = csv.writer(rejects_file, lineterminator="\n", quoting=csv.QUOTE_ALL)
            rejects_writer.writerow([*contract.column_names, "reason"])
            # The next chunk is parsed (by Arrow, outside the GIL) while this one is validated,
            # and the valid rows of the last one are written (CSV, zstd) by another thread.
            with InBackground(write_valid, waiting=1, name="write-valid-rows") as valid_rows:
                chunks = read_chunks(local, contract, chunk_rows, plain=file_scan.plain_reader)
                for chunk in read_ahead(chunks, 1, "read-chunks"):
                    checked = validator.validate(chunk)
                    valid_rows.put(checked.valid)
                    result.header_skipped |= chunk.header_skipped
                    _add_referenced_ids(referenced, contract, checked.valid)
                    _write_rejects(rejects_writer, checked.rejected, len(contract.columns), broken_rules)
                    result.rows += len(chunk)
                    result.valid += checked.valid_count
                    result.rejected += len(checked.rejected)
                    log.info(
                        "%s: %d rows read, %d valid, %d rejected so far",
                        source,
                        result.rows,
                        result.valid,
                        result.rejected,
                    )
                    del chunk, checked  # one chunk validated at a time (one more read ahead)
                    release_arrow_memory()
            if result.valid + result.rejected != result.rows:  # the SPEC's invariant, never relaxed
                # Raised inside the upload: the valid rows' blob is then never committed.
                raise IngestError(
                    f"{source}: {result.rows} rows read but {result.valid} valid + "
                    f"{result.rejected} rejected; refusing to continue"
                )
            if valid_writer is not None:
                valid_writer.close()
            valid_file.close()  # the last compressed bytes, then the blob's commit
        log.info(
            "%s: valid rows handed over in %s/%s (%d bytes, zstd)",
            source,
            container,
            result.valid_blob,
            valid_upload.bytes_written,
        )
        store.upload_file(container, result.rejects_blob, rejects_path)
    result.referenced_ids = {table: sorted(ids) for table, ids in referenced.items()}
    _judge_reject_share(result, broken_rules, max_reject_ratio)
    return result


def _scan_claimed(store: BlobStore, result: FileValidation, work: Path, contract) -> tuple[Path, FileScan]:
    """The first pass over the claimed file, on the blocks as they download, keeping a local copy
    for the second: (the copy, the scan); the file's sha256 and size go into ``result``. A file
    with a record longer than the read block is downloaded whole and scanned by the plain reader.
    Raises ``UnreadableFileError``."""
    container = raw_container()
    local = work / "extract.csv"
    digest = hashlib.sha256()
    with open(local, "wb") as copy:
        file_scan = scan_blocks(
            _copied(store.prefetched_blocks(container, result.claimed_blob), copy, digest), contract
        )
    if file_scan.plain_reader:
        log.info(
            "%s has a record longer than the read block (%d bytes): read by the plain CSV reader",
            result.source,
            read_block_bytes(),
        )
        local = work / "extract-whole.csv"  # the first copy stopped with the scan
        store.download_to_file(container, result.claimed_blob, local)
        file_scan = scan(local, contract)
        digest = _sha256_of(local)
    result.sha256, result.bytes = digest.hexdigest(), local.stat().st_size
    return local, file_scan


def _add_referenced_ids(referenced: dict[str, set[int]], contract, valid) -> None:
    """The ids the valid rows (an Arrow table) point at, added by referenced table."""
    import pyarrow.compute as pc

    for column in contract.foreign_keys:
        referenced[column.references].update(pc.unique(valid[column.name]).to_pylist())


def _write_rejects(writer, rejected: list, width: int, broken_rules: Counter) -> None:
    """Each rejected row as the rejects file holds it: its fields in the table's columns, made
    spreadsheet-safe, then its reason. Counts the rules it broke in ``broken_rules``."""
    for row in rejected:
        broken_rules.update(row.rules)
        writer.writerow([*map(spreadsheet_safe, _fit(row.fields, width)), row.reason])


def _judge_reject_share(result: FileValidation, broken_rules: Counter, max_reject_ratio: float) -> None:
    """Sets ``over_limit_reason`` (the file is not loaded) when the rejected share is above
    ``max_reject_ratio``, naming the rules broken most; warns when every row was rejected."""
    if not result.rows:
        return
    if result.rejected / result.rows > max_reject_ratio:
        top = ", ".join(f"{rule} ({count})" for rule, count in broken_rules.most_common(5))
        result.over_limit_reason = (
            f"{result.rejected} of {result.rows} rows rejected ({result.rejected / result.rows:.1%}), "
            f"above the run's max_reject_ratio of {max_reject_ratio:.1%}; most frequent: {top}"
        )
        log.error("%s is not loaded: %s", result.source, result.over_limit_reason)
    if result.valid == 0:
        log.warning(
            "%s: every one of its %d rows was rejected; is it the right table's file?",
            result.source,
            result.rows,
        )


def _copied(blocks, handle, digest):
    for block in blocks:
        handle.write(block)
        digest.update(block)
        yield block


def _sha256_of(path: Path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest


def _note_earlier_ingest(warehouse: Warehouse, result: FileValidation) -> None:
    if not result.sha256:
        return
    earlier = ledger.earlier_ingest(warehouse, result.sha256, result.run_id)
    if earlier:
        result.same_as_run = earlier[0]
        log.info(
            "%s has the same bytes (sha256 %s) as %s, ingested by run %s at %s: ingested "
            "again (loads are upserts, so the tables do not change)",
            result.source,
            result.sha256[:12],
            earlier[1],
            earlier[0],
            earlier[2],
        )


VALID_ROWS_COMPRESSION = "zstd"


def compressed_stream(upload):
    """The stream the valid rows are written through: compressed (``VALID_ROWS_COMPRESSION``)
    into ``upload``, as ``BlobStore.decompressed_blocks`` reads them back for the load."""
    import pyarrow as pa

    return pa.CompressedOutputStream(pa.PythonFile(upload, mode="w"), VALID_ROWS_COMPRESSION)


def _canonical_csv_writer(handle, schema):
    """Arrow's CSV writer: no header, LF line ends, every text value quoted (inner quotes
    doubled), which PostgreSQL's COPY, csv.reader and ``csv_batches`` all read back."""
    import pyarrow.csv as pacsv

    return pacsv.CSVWriter(handle, schema, write_options=pacsv.WriteOptions(include_header=False))


# A spreadsheet reads a cell starting with one of these as a formula (or, for ', as text).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def spreadsheet_safe(value: str) -> str:
    """A rejected field as the rejects file writes it: with a leading apostrophe when it starts
    like a formula, so an operator opening the file in a spreadsheet never runs one. Recoverable:
    a value starting with an apostrophe always had one added (drop the first character)."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _fit(fields: list[str], width: int) -> list[str]:
    """A rejected row's original fields in the table's columns: missing ones empty, extra ones
    kept in the last column (joined by commas, as they were in the file)."""
    if len(fields) <= width:
        return fields + [""] * (width - len(fields))
    return fields[: width - 1] + [",".join(fields[width - 1 :])]


def _reject_whole_file(
    store: BlobStore, result: FileValidation, day: str, run_id: str, reason: str, work: Path
) -> FileValidation:
    """An unreadable file: measured and hashed whole (the scan stopped part way); the archive step
    sets it aside whole in rejected/ with a ``.reason.txt``."""
    container = raw_container()
    whole = work / "unreadable"
    store.download_to_file(container, result.claimed_blob, whole)
    result.sha256, result.bytes = _sha256_of(whole).hexdigest(), whole.stat().st_size
    destination = layout.unreadable_file_name(result.table, day, run_id, result.source)
    log.error("%s cannot be read: %s. It is set aside whole in %s", result.source, reason, destination)
    result.unreadable_reason = (
        f"{result.source} cannot be read ({reason}); set aside whole in {container}/{destination}"
    )
    return result


def _progress_logger(source: str, total: int, batch_size: int):
    """Logs loaded rows about every 100,000 rows (every batch when batches are larger)."""
    every = max(batch_size, 100_000)

    def log_progress(loaded: int) -> None:
        if loaded % every < batch_size or loaded == total:
            log.info("%s: %d of %d rows loaded", source, loaded, total)

    return log_progress


def load_validated(
    table: str,
    validations: list[dict],
    batch_size: int,
    store: BlobStore | None = None,
    warehouse: Warehouse | None = None,
) -> list[dict]:
    """Upsert the valid rows of each file, in claim order; returns, per file in that order, its
    ``source``, the rows ``loaded``, the rows ``rejected`` at load, and the ``error`` that stopped
    its load, if any (a list: file names are data, never keys Airflow turns into XComs or URLs).

    Holds the table's writer lock, and its content and the referenced tables' shared (a restore
    of any of them waits, and none runs meanwhile), for the whole load. Within it, it checks that
    the run still holds the table's ingest lock (``LockLostError`` if another run took over) and
    again that the ids the rows reference exist: a row whose reference was removed since
    validation (a restore of departments, say) is rejected, with its reason, not loaded.

    A file whose load the database refuses for something in its data (a constraint, a value it
    cannot store) does not stop the others: the error is recorded against that file, which the
    archive step then sets aside whole. Any other error (connection, timeout) fails the task, to
    be retried: every write is an upsert by key, so a retry converges.
    """
    if batch_size < 1:
        raise IngestError(f"batch_size must be at least 1, got {batch_size}")
    contract = get_contract(table)
    store = store or BlobStore()
    warehouse = warehouse or Warehouse()
    warehouse.ensure_tables()
    referenced = [column.references for column in contract.foreign_keys]
    loads: list[dict] = []
    if not validations:
        return loads
    lock = ingest_lock(table, validations[0]["run_id"], store, warehouse)
    # The content shared: an upsert removes no id, so a load of departments need not wait for a
    # load of hires; the writer lock keeps two loads of one table apart.
    with warehouse.table_locks(writers=[table], shared=[table, *referenced]):
        lock.ensure_held()
        for item in map(lambda d: FileValidation(**d), validations):
            load = {"source": item.source, "loaded": 0, "rejected": 0, "error": None}
            if not (item.unreadable_reason or item.over_limit_reason or item.valid == 0):
                load.update(_load_file(contract, item, batch_size, store, warehouse))
            loads.append(load)
    log.info(
        "Loaded %s:\n%s",
        table,
        "\n".join(
            f"  {load['source']}: {load['loaded']} rows"
            + (f", {load['rejected']} rejected at load" if load["rejected"] else "")
            + (f", REFUSED: {load['error']}" if load["error"] else "")
            for load in loads
        )
        or "  nothing to load",
    )
    return loads


def ingest_lock(
    table: str,
    run_id: str,
    store: BlobStore,
    warehouse: Warehouse,
    run_has_ended: RunHasEnded | None = None,
) -> IngestLock:
    """The table's ingest lock for ``run_id``, fenced by the warehouse's writer lock of the table."""
    return IngestLock(
        store,
        raw_container(),
        table,
        run_id,
        run_has_ended,
        fence=lambda: warehouse.table_locks(writers=[table]),
    )


def loads_by_source(loads: list[dict] | None) -> dict[str, dict]:
    """The load step's result, by file."""
    return {load["source"]: load for load in loads or []}


def _load_file(
    contract, item: FileValidation, batch_size: int, store: BlobStore, warehouse: Warehouse
) -> dict:
    vanished = {}
    for column in contract.foreign_keys:
        wanted = item.referenced_ids.get(column.references, [])
        missing = set(wanted) - warehouse.existing_keys(column.references, wanted)
        if missing:
            vanished[column.name] = (column.references, missing)
            log.warning(
                "%s: %d id(s) of %s its rows point at were removed since validation "
                "(first: %s): those rows are rejected",
                item.source,
                len(missing),
                column.references,
                ", ".join(map(str, sorted(missing)[:5])),
            )
    progress = _progress_logger(item.source, item.valid, batch_size)
    written = 0

    def count(rows: int) -> None:
        nonlocal written
        written = rows
        progress(rows)

    batches = csv_batches(
        store.decompressed_blocks(raw_container(), item.valid_blob, VALID_ROWS_COMPRESSION), batch_size
    )
    dropped: list[list[str]] = []
    if vanished:
        batches = _without_vanished_references(batches, contract, vanished, dropped)
    try:
        # Streamed from the blob straight into the load: batches are cut as the bytes arrive.
        warehouse.load_batches(contract, batches, on_batch=count)
    except Exception as error:
        if not is_data_error(error):
            raise
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        log.error(
            "%s: the warehouse refused its rows (%s) after %d of %d were loaded; the "
            "other files go on, and this one is set aside whole by the archive step",
            item.source,
            first_line,
            written,
            item.valid,
        )
        return {"loaded": written, "rejected": 0, "error": f"{type(error).__name__}: {first_line}"}
    if dropped:
        _upload_load_rejects(store, item, contract, dropped)
    if written + len(dropped) != item.valid:
        raise IngestError(
            f"{item.source}: {item.valid} valid rows but {written} loaded and {len(dropped)} rejected at load"
        )
    log.info("%s: %d rows loaded into %s (%s)", item.source, written, contract.name, warehouse.dialect)
    return {"loaded": written, "rejected": len(dropped), "error": None}


def load_rejects_name(item: FileValidation) -> str:
    return layout.load_rejects_name(item.table, item.run_id, item.source)


def _without_vanished_references(batches, contract, vanished: dict, dropped: list):
    """The batches without the rows that point at an id removed since validation; those rows go
    to ``dropped`` with their reason. Parses the batches: only for a file that needs it."""
    from hr_pipeline.warehouse import CsvBatch

    positions = {name: contract.column_names.index(name) for name in vanished}
    key = contract.column_names.index(contract.key)
    for batch in batches:
        kept = io.StringIO()
        writer = csv.writer(kept, lineterminator="\n", quoting=csv.QUOTE_ALL)  # a lone CR stays in its field
        rows = 0
        for row in batch.parsed():
            reasons = [
                f"{name}: {row[position]} does not exist in {vanished[name][0]} (removed "
                "after this file was validated)"
                for name, position in positions.items()
                if int(row[position]) in vanished[name][1]
            ]
            if reasons:
                dropped.append([*row, f"id {row[key]}: " + "; ".join(reasons)])
            else:
                writer.writerow(row)
                rows += 1
        if rows:
            yield CsvBatch(kept.getvalue().encode(), rows)


def _upload_load_rejects(store: BlobStore, item: FileValidation, contract, dropped: list) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerows([*map(spreadsheet_safe, row[:-1]), row[-1]] for row in dropped)
    store.upload_bytes(raw_container(), load_rejects_name(item), text.getvalue().encode())


def is_data_error(error: BaseException) -> bool:
    """Whether a database error is about the rows sent (a constraint, a value out of range), not
    about the connection: SQLSTATE classes 21, 22 and 23, or the DB-API's IntegrityError and
    DataError, whichever driver raised it, on the error or on what caused it."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        sqlstate = getattr(error, "sqlstate", None) or getattr(getattr(error, "diag", None), "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate[:2] in ("21", "22", "23"):
            return True
        if any(kind.__name__ in ("IntegrityError", "DataError") for kind in type(error).__mro__):
            return True
        error = error.__cause__ or error.__context__
    return False


def what_changed(validations: list[dict], loads: list[dict]) -> dict:
    """What a run changed in its table, for the table's asset event."""
    loads = loads_by_source(loads)
    files = [
        {
            "file": v["source"],
            "rows": v["rows"],
            "loaded": loads.get(v["source"], {}).get("loaded", 0),
            "rejected": v["rejected"] + loads.get(v["source"], {}).get("rejected", 0),
        }
        for v in validations
    ]
    return {
        "files": files,
        "rows_loaded": sum(f["loaded"] for f in files),
        "rows_rejected": sum(f["rejected"] for f in files),
    }


def archive_ingested(
    table: str,
    validations: list[dict],
    day: str,
    store: BlobStore | None = None,
    run_id: str | None = None,
    loads: list[dict] | None = None,
    warehouse: Warehouse | None = None,
) -> list[str]:
    """Move each file to archive/ and its rejects to rejected/, record it in the ingest ledger,
    then release the table's ingest lock; returns one summary line per file.

    A file that was not loaded (unreadable, its rejected share above the run's limit, or its
    rows refused by the warehouse) goes whole to rejected/ with a ``.reason.txt``, beside its
    rejects file. Fenced (only while the run holds the ingest lock) and safe to repeat from any
    point: a retry, or the run that takes the lock over, finishes it from its manifest.
    """
    if not validations:
        return []
    store = store or BlobStore()
    warehouse = warehouse or Warehouse()
    lock = ingest_lock(table, run_id or validations[0]["run_id"], store, warehouse)
    manifest = {
        "table": table,
        "run_id": validations[0]["run_id"],
        "day": day,
        "validations": validations,
        "loads": loads or [],
    }
    with warehouse.table_locks(writers=[table]):
        lock.ensure_held()
        summary = _archive_run(store, warehouse, manifest)
        lock.release()
    log.info("Ingest of %s, per file:\n%s", table, "\n".join(f"  {line}" for line in summary))
    return summary


def _archive_run(store: BlobStore, warehouse: Warehouse, manifest: dict) -> list[str]:
    """Archive one run's files as the manifest says: the manifest first (what a take-over
    finishes), then each file and its rejects, the ledger rows, and the manifest removed."""
    table, run_id = manifest["table"], manifest["run_id"]
    container = raw_container()
    manifest_name = layout.archive_manifest_name(table, run_id)
    if not store.exists(container, manifest_name):
        store.upload_bytes(container, manifest_name, json.dumps(manifest).encode())
        log.info("%s: archive manifest of run %s written (%s)", table, run_id, manifest_name)
    loads = loads_by_source(manifest["loads"])
    summary, ledger_rows = [], []
    for item in map(lambda d: FileValidation(**d), manifest["validations"]):
        line, ledger_row = _archive_file(store, table, manifest["day"], item, loads.get(item.source, {}))
        summary.append(line)
        ledger_rows.append(ledger_row)
    ledger.record(warehouse, ledger_rows)
    log.info("%s: %d ledger row(s) of run %s written", table, len(ledger_rows), run_id)
    store.delete(container, manifest_name)
    log.info("%s: archive of run %s complete", table, run_id)
    return summary


def _finish_archive(manifest: dict, store: BlobStore, warehouse: Warehouse, lock: IngestLock) -> None:
    """An ended run's archive, finished by the run that took the ingest lock over (fenced)."""
    with warehouse.table_locks(writers=[manifest["table"]]):
        lock.ensure_held()
        for line in _archive_run(store, warehouse, manifest):
            log.warning("Archived for run %s, which ended part way: %s", manifest["run_id"], line)


@dataclass(frozen=True)
class _Outcome:
    """What became of one file, as the ingest ledger records it."""

    status: str
    loaded: int
    rejected: int
    set_aside: str | None  # why the file went whole to rejected/ instead of being loaded


def _outcome(item: FileValidation, load: dict, rejected_at_load: int) -> _Outcome:
    if item.unreadable_reason:
        return _Outcome("unreadable", 0, 0, item.unreadable_reason)
    if item.over_limit_reason:
        return _Outcome("over_reject_limit", 0, item.rejected, item.over_limit_reason)
    rejected = item.rejected + rejected_at_load
    if load.get("error"):
        loaded = load.get("loaded", 0)
        reason = (
            f"the warehouse refused its rows: {load['error']}; {loaded} of its "
            f"{item.valid} valid rows were loaded before that"
        )
        return _Outcome("refused_by_warehouse", loaded, rejected, reason)
    return _Outcome("loaded", item.valid - rejected_at_load, rejected, None)


def _archive_file(
    store: BlobStore, table: str, day: str, item: FileValidation, load: dict
) -> tuple[str, ledger.LedgerRow]:
    """Archive one file as ``archive_ingested`` says: its summary line and ledger row. Each step
    is done once: a repeat finds it done (moved, written) and goes on."""
    container = raw_container()
    late_rejects = _bytes_if_any(store, load_rejects_name(item))
    # Rejected at load: as the load said, or (a caller that kept no result) as its file says.
    outcome = _outcome(item, load, load.get("rejected") or _csv_records(late_rejects))
    if outcome.set_aside:
        destination = layout.unreadable_file_name(table, day, item.run_id, item.source)
    else:
        destination = item.archive_blob
    if store.exists(container, item.claimed_blob):  # not moved yet by an earlier try
        store.move(container, item.claimed_blob, destination)
        log.info("%s: moved to %s", item.source, destination)
    if outcome.set_aside:
        reason_name = layout.set_aside_reason_name(table, day, item.run_id, item.source)
        store.upload_bytes(container, reason_name, f"{item.source}: {outcome.set_aside}\n".encode())
        log.info("%s: why it was set aside written to %s", item.source, reason_name)
    _move_rejects(store, item, late_rejects)
    # The load's rejects first: while they exist, a repeat rebuilds the whole rejects file.
    for leftover in (load_rejects_name(item), item.rejects_blob, item.valid_blob):
        if store.exists(container, leftover):
            store.delete(container, leftover)
    log.info("%s: hand-over files removed", item.source)
    line = _summary_line(item, outcome, destination)
    log.info(line)
    return line, _ledger_row(table, item, outcome, destination)


def _bytes_if_any(store: BlobStore, name: str) -> bytes:
    """The blob's bytes; none when it does not exist."""
    container = raw_container()
    return store.download_bytes(container, name) if store.exists(container, name) else b""


def _move_rejects(store: BlobStore, item: FileValidation, late_rejects: bytes) -> None:
    """The file's rejects to rejected/: those of validation, then those of the load, as one file,
    written whole once (a repeat finds it there and leaves it)."""
    container = raw_container()
    if not (item.rejected or late_rejects) or store.exists(container, item.rejects_destination):
        return
    if not late_rejects and store.exists(container, item.rejects_blob):
        store.move(container, item.rejects_blob, item.rejects_destination)
    elif late_rejects:
        head = _bytes_if_any(store, item.rejects_blob)
        if item.rejected and not head:
            raise IngestError(f"{item.source}: its rejects file {item.rejects_blob} is missing")
        store.upload_bytes(container, item.rejects_destination, head + late_rejects)
    else:
        raise IngestError(
            f"{item.source}: {item.rejected} rows were rejected, but neither {item.rejects_blob} "
            f"nor {item.rejects_destination} exists"
        )
    log.info("%s: rejects moved to %s", item.source, item.rejects_destination)


def _summary_line(item: FileValidation, outcome: _Outcome, destination: str) -> str:
    if outcome.set_aside:
        line = (
            f"{item.source}: NOT LOADED ({outcome.set_aside}); set aside whole in "
            f"{raw_container()}/{destination}"
        )
    else:
        line = (
            f"{item.source}: {item.rows} rows, {outcome.loaded} loaded, {outcome.rejected} rejected"
            f" -> {destination}"
        )
    if outcome.rejected:
        line += f", rejects in {item.rejects_destination}"
    return line


def _ledger_row(table: str, item: FileValidation, outcome: _Outcome, archived_as: str) -> ledger.LedgerRow:
    return ledger.LedgerRow(
        run_id=item.run_id,
        file=item.source,
        table_name=table,
        status=outcome.status,
        sha256=item.sha256,
        bytes=item.bytes,
        rows=item.rows,
        loaded=outcome.loaded,
        rejected=outcome.rejected,
        archived_as=archived_as,
        rejects_file=item.rejects_destination if outcome.rejected else None,
        same_as_run=item.same_as_run,
        detail=(outcome.set_aside or "")[:1024] or None,
    )


def _csv_records(data: bytes) -> int:
    return sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8"), newline=""))) if data else 0


def failed_files_message(validations: list[dict], loads: list[dict] | None = None) -> str | None:
    """Why the run must fail once every file is archived: files that could not be read, and
    files whose load the warehouse refused."""
    loads = loads_by_source(loads)
    reasons = [v["unreadable_reason"] for v in validations if v.get("unreadable_reason")]
    reasons += [
        f"{v['source']}: not loaded: {v['over_limit_reason']}"
        for v in validations
        if v.get("over_limit_reason")
    ]
    reasons += [
        f"{source}: the warehouse refused its rows ({load['error']}); set aside whole in rejected/"
        for source, load in loads.items()
        if load.get("error")
    ]
    if not reasons:
        return None
    return f"{len(reasons)} file(s) were not ingested: " + " | ".join(reasons)
