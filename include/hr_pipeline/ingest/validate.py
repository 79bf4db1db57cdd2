"""The validate task: claim the waiting files and check each against the contract's Great Expectations suite, chunk by chunk; the valid rows (canonical CSV, zstd) and the rejects go to ``processing/`` for the next tasks."""

from __future__ import annotations

import csv
import hashlib
import logging
import tempfile
from collections import Counter
from pathlib import Path

from hr_pipeline.contract.tables import TableContract, get_contract
from hr_pipeline.ingest.archive import finish_archive
from hr_pipeline.ingest.reader import (
    FileScan,
    UnreadableFileError,
    read_chunks,
    release_arrow_memory,
    scan,
    scan_blocks,
    use_system_allocator,
)
from hr_pipeline.ingest.run import (
    VALID_ROWS_COMPRESSION,
    FileValidation,
    IngestError,
    ingest_lock,
    spreadsheet_safe,
)
from hr_pipeline.runtime.memory import return_large_buffers_to_the_system
from hr_pipeline.runtime.progress import Progress
from hr_pipeline.runtime.settings import (
    ingest_lock_timeout_seconds,
    raw_container,
    read_block_bytes,
    reference_poll_seconds,
    reference_wait_seconds,
    validation_chunk_rows,
)
from hr_pipeline.runtime.streams import InBackground, read_ahead
from hr_pipeline.storage import layout
from hr_pipeline.storage.blob_store import BlobStore
from hr_pipeline.storage.claims import (
    Claim,
    IngestLock,
    RunHasEnded,
    adopt_leftovers,
    claim_files,
    wait_for_referenced_ingests,
)
from hr_pipeline.warehouse import ledger
from hr_pipeline.warehouse.facade import Warehouse

log = logging.getLogger(__name__)


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

    Takes the table's ingest lock (see ``hr_pipeline.storage.claims``) and keeps it until
    ``archive_ingested`` releases it, unless there is nothing to ingest. ``run_has_ended`` tells
    whether another run holding the lock has ended (then it takes the lock over, and adopts what
    that run left). A file whose rejected share is above ``max_reject_ratio`` (the DAG's param;
    here no limit by default) is not loaded.
    """
    contract = get_contract(table)
    store = store or BlobStore()
    warehouse = warehouse or Warehouse()
    container = raw_container()
    use_system_allocator()
    return_large_buffers_to_the_system()
    warehouse.ensure_tables()
    lock = _take_ingest_lock(contract, run_id, store, warehouse, container, run_has_ended)
    claims = claim_files(store, container, contract.name, run_id)
    log.info(
        "%d file(s) to ingest for %s: %s",
        len(claims),
        contract.name,
        ", ".join(claim.source for claim in claims) or "-",
    )
    if not claims:
        lock.release()
        return []
    reference_keys = _reference_keys(contract, warehouse)
    results = []
    for claim in claims:
        result = validate_file(
            contract,
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
    _log_validated(contract, results)
    return results


def _take_ingest_lock(
    contract: TableContract,
    run_id: str,
    store: BlobStore,
    warehouse: Warehouse,
    container: str,
    run_has_ended: RunHasEnded | None,
) -> IngestLock:
    """The table's ingest lock, taken once the ingests of the tables it references are done (or
    the wait ran out); what ended runs of the table left is adopted under it."""
    wait_for_referenced_ingests(
        store,
        container,
        contract.name,
        [column.references for column in contract.foreign_keys],
        reference_wait_seconds(),
        poll_seconds=reference_poll_seconds(),
        run_has_ended=run_has_ended,
    )
    lock = ingest_lock(contract, run_id, store, warehouse, run_has_ended)
    lock.acquire(ingest_lock_timeout_seconds())
    adopt_leftovers(
        store,
        container,
        contract.name,
        run_id,
        finish_archive=lambda manifest: finish_archive(contract, manifest, store, warehouse, lock),
    )
    return lock


def _reference_keys(contract: TableContract, warehouse: Warehouse) -> dict[str, set[int]]:
    """The ids in the warehouse of each table ``contract``'s foreign keys reference."""
    reference_keys = {
        column.references: warehouse.key_values(column.references) for column in contract.foreign_keys
    }
    for referenced, keys in reference_keys.items():
        log.info("Foreign keys of %s checked against %d ids of %s", contract.name, len(keys), referenced)
    return reference_keys


def _log_validated(contract: TableContract, results: list[dict]) -> None:
    log.info(
        "Validated %d file(s) of %s:\n%s",
        len(results),
        contract.name,
        "\n".join(
            f"  {r['source']}: {r['rows']} rows, {r['valid']} valid, {r['rejected']} rejected"
            + (f" (UNREADABLE: {r['unreadable_reason']})" if r["unreadable_reason"] else "")
            for r in results
        ),
    )


def validate_file(
    contract: TableContract,
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
    result = _file_validation(contract, claim, run_id, day)
    with tempfile.TemporaryDirectory(prefix="hr-ingest-") as work:
        try:
            local, file_scan = _scan_claimed(store, result, Path(work), contract)
        except UnreadableFileError as error:
            return _reject_whole_file(store, result, day, run_id, str(error), Path(work))
        log.info(
            "%s: %d records; %d id(s) occur more than once",
            claim.source,
            file_scan.records,
            len(file_scan.duplicate_ids),
        )
        rejects_path = Path(work) / "rejects.csv"
        referenced, broken_rules = _validate_rows(
            store, result, local, file_scan, contract, reference_keys, chunk_rows, rejects_path
        )
        store.upload_file(raw_container(), result.rejects_blob, rejects_path)
    result.referenced_ids = {table: sorted(ids) for table, ids in referenced.items()}
    _judge_reject_share(result, broken_rules, max_reject_ratio)
    return result


def _file_validation(contract: TableContract, claim: Claim, run_id: str, day: str) -> FileValidation:
    """A claimed file's validation before any row is read: where its outputs go, nothing counted."""
    table, source = contract.name, claim.source
    return FileValidation(
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


def _validate_rows(
    store: BlobStore,
    result: FileValidation,
    local: Path,
    file_scan: FileScan,
    contract: TableContract,
    reference_keys: dict[str, set[int]],
    chunk_rows: int,
    rejects_path: Path,
) -> tuple[dict[str, set[int]], Counter]:
    """The second pass over the scanned file: each chunk validated, its valid rows streamed to
    ``result.valid_blob`` and its rejects written to ``rejects_path``, the counts into ``result``.
    Returns (the ids the valid rows reference, by table; how often each rule was broken)."""
    from hr_pipeline.ingest.expectations import ChunkValidator

    container = raw_container()
    validator = ChunkValidator(contract, reference_keys, file_scan.duplicate_ids)
    referenced: dict[str, set[int]] = {column.references: set() for column in contract.foreign_keys}
    broken_rules: Counter = Counter()
    # The scan counted the records: the line can say how far along the file is and when it ends.
    progress = Progress(f"validate {result.source}", total=file_scan.records, logger=log)
    # The valid rows go to Blob Storage as they are produced (uploaded by a background thread
    # while the next chunk is validated), compressed with zstd: far fewer bytes to send and for
    # the load to fetch, for little time per chunk. The rejects, usually few, are uploaded at the
    # end.
    with (
        store.streaming_upload(container, result.valid_blob) as valid_upload,
        open(rejects_path, "w", newline="", encoding="utf-8") as rejects_file,
    ):
        valid_out = _ValidRowsOut(valid_upload)
        rejects_writer = csv.writer(rejects_file, lineterminator="\n", quoting=csv.QUOTE_ALL)
        rejects_writer.writerow([*contract.column_names, "reason"])
        # The next chunk is parsed (by Arrow, outside the GIL) while this one is validated,
        # and the valid rows of the last one are written (CSV, zstd) by another thread.
        with InBackground(valid_out.write, waiting=1, name="write-valid-rows") as valid_rows:
            chunks = read_chunks(local, contract, chunk_rows, plain=file_scan.plain_reader)
            for chunk in read_ahead(chunks, 1, "read-chunks"):
                checked = validator.validate(chunk)
                valid_rows.put(checked.valid)
                result.header_skipped |= chunk.header_skipped
                _add_referenced_ids(referenced, contract, checked.valid)
                _write_rejects(rejects_writer, checked.rejected, len(contract.columns), broken_rules)
                _count_chunk(result, len(chunk), checked)
                progress.advance(len(chunk))
                del chunk, checked  # one chunk validated at a time (one more read ahead)
                release_arrow_memory()
        # Raised inside the upload: the valid rows' blob is then never committed.
        _check_every_row_counted(result)
        valid_out.close()
    progress.finish()
    log.info(
        "%s: valid rows handed over in %s/%s (%d bytes, zstd)",
        result.source,
        container,
        result.valid_blob,
        valid_upload.bytes_written,
    )
    return referenced, broken_rules


class _ValidRowsOut:
    """The valid rows written as canonical CSV, compressed, into an upload; the CSV writer is
    made for the first table written, as it needs its schema."""

    def __init__(self, upload):
        self._stream = compressed_stream(upload)
        self._writer = None

    def write(self, table) -> None:
        if self._writer is None:
            self._writer = _canonical_csv_writer(self._stream, table.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        """The last compressed bytes, then the blob's commit."""
        if self._writer is not None:
            self._writer.close()
        self._stream.close()


def _count_chunk(result: FileValidation, rows: int, checked) -> None:
    """A validated chunk's rows added to the file's counts, logged."""
    result.rows += rows
    result.valid += checked.valid_count
    result.rejected += len(checked.rejected)
    log.info(
        "%s: %d rows read, %d valid, %d rejected so far",
        result.source,
        result.rows,
        result.valid,
        result.rejected,
    )


def _check_every_row_counted(result: FileValidation) -> None:
    """docs/CONTRACT.md's invariant, never relaxed: every row read is either valid or rejected."""
    if result.valid + result.rejected != result.rows:
        raise IngestError(
            f"{result.source}: {result.rows} rows read but {result.valid} valid + "
            f"{result.rejected} rejected; refusing to continue"
        )


def _scan_claimed(
    store: BlobStore, result: FileValidation, work: Path, contract: TableContract
) -> tuple[Path, FileScan]:
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


def _add_referenced_ids(referenced: dict[str, set[int]], contract: TableContract, valid) -> None:
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
